"""benchmarks/agreement_vs_accuracy.py reads the demo's folder and writes only under its
--work-dir (issue 26: no tool writes into another tool's output folder)."""
import json
import os
import os.path as osp
import shutil

import pytest
import torch

DFSS = 'configs/synthetic/dfss_r18-tiny_to_mbv2-tiny_synthetic.py'
STUDENT = 'configs/synthetic/deeplabv3_mbv2-tiny_synthetic.py'


def _snapshot(root):
    return {osp.relpath(osp.join(d, f), root): os.stat(osp.join(d, f)).st_mtime_ns
            for d, _, files in os.walk(root) for f in files}


@pytest.mark.slow
def test_the_demo_folder_is_only_read(tmp_path, repo_root, synthetic_root, teacher_ckpt, tool):
    from mmengine.config import Config

    from mmseg_dfss.core import build_frozen_segmentor
    from mmseg_dfss.models.student_export import student_config
    demo = tmp_path / 'demo'
    shutil.copytree(osp.join(synthetic_root, 'scenes'), demo / 'data' / 'scenes')
    (demo / 'teacher').mkdir()
    shutil.copy(teacher_ckpt, demo / 'teacher' / 'iter_1500.pth')
    torch.manual_seed(1)
    student = build_frozen_segmentor(osp.join(repo_root, STUDENT), allow_random_teacher=True)
    (demo / 'student_labels').mkdir()
    torch.save({'state_dict': student.state_dict()}, demo / 'student_labels' / 'iter_1500.pth')
    dfss_student = build_frozen_segmentor(
        student_config(Config.fromfile(osp.join(repo_root, DFSS))).model, allow_random_teacher=True)
    state = {'state_dict': {f'student.{k}': v for k, v in dfss_student.state_dict().items()}}
    # the demo's DFSS run: tools/compress.py's training folder, named by its report
    train_dir = demo / 'compress' / 'train' / '0123abcd'
    train_dir.mkdir(parents=True)
    for it in (1000, 500):
        torch.save(state, train_dir / f'iter_{it}.pth')
    (demo / 'compress' / 'report.json').write_text(
        json.dumps({'train': {'work_dir': str(train_dir)}}))
    (demo / 'dfss' / 'random_vanilla_seed0').mkdir(parents=True)  # --full's: the last only
    for it in (500, 1500):
        torch.save(state, demo / 'dfss' / 'random_vanilla_seed0' / f'iter_{it}.pth')
    before = _snapshot(demo)
    work = tmp_path / 'agreement'
    tool('benchmarks/agreement_vs_accuracy.py', '--demo-dir', demo, '--work-dir', work,
         '--num-pool', 3, '--num-rooms', 3)
    assert _snapshot(demo) == before
    result = json.loads((work / 'agreement.json').read_text())
    assert [r['model'] for r in result['rows']] == [
        'reference (rooms + labels)', 'DFSS compress @ 500 it', 'DFSS compress @ 1000 it',
        'DFSS random_vanilla_seed0 @ 1500 it']
    assert result['num_pool'] == result['num_rooms'] == 3
    assert (work / 'agreement_data' / 'pool').is_dir() and (work / 'teacher_labels').is_dir()
