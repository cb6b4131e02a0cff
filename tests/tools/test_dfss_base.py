"""The DFSS base: a short config that inherits configs/_base_/dfss/dfss_label_free.py,
names the teacher once and sets only the pool, eps, a loop and the work dir trains
with tools/train.py and validates on teacher labels."""
import glob
import json
import os.path as osp

import pytest

SHORT_CONFIG = '''_base_ = [{base!r}]
model = dict(
    teacher=dict(cfg_path={teacher!r}),
    student=dict(cfg_path={student!r}),
    data_preprocessor=dict(type='SegDataPreProcessor', mean=[127.5] * 3, std=[127.5] * 3,
                           bgr_to_rgb=True, size=(64, 64)))
train_dataloader = dict(
    batch_size=2,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        num_samples=4,
        cache_dir={ads_cache!r},
        dataset=dict(type='UnlabeledImageDataset', data_root={pool!r},
                     pipeline=[dict(type='LoadImageFromFile'), dict(type='PackSegInputs')])))
val_dataloader = dict(
    dataset=dict(dataset=dict(num_samples=2), cache_dir={label_cache!r}))
train_cfg = dict(type='IterBasedTrainLoop', max_iters=2, val_interval=2)
optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.01))
work_dir = {work!r}
'''


@pytest.mark.slow
def test_a_short_config_on_the_label_free_base_trains(tmp_path, repo_root, synthetic_root,
                                                       tool):
    work = str(tmp_path / 'work')
    path = tmp_path / 'dfss_config.py'
    path.write_text(SHORT_CONFIG.format(
        base=osp.join(repo_root, 'configs/_base_/dfss/dfss_label_free.py'),
        teacher=osp.join(repo_root, 'configs/synthetic/deeplabv3_r18-tiny_synthetic.py'),
        student=osp.join(repo_root, 'configs/students/deeplabv3_mbv2-tiny_synthetic.py'),
        ads_cache=str(tmp_path / 'ads_cache'), label_cache=str(tmp_path / 'labels'),
        pool=osp.join(synthetic_root, 'pool'), work=work))
    assert len([ln for ln in path.read_text().splitlines() if ln.strip()]) <= 22
    tool('tools/train.py', str(path), '--allow-random-teacher')
    scalars = glob.glob(osp.join(work, '*', 'vis_data', 'scalars.json'))
    vals = [r for p in scalars for r in map(json.loads, open(p)) if 'mIoU' in r]
    assert [r['step'] for r in vals] == [2] and 0 <= vals[0]['mIoU'] <= 100
    assert glob.glob(osp.join(work, 'best_mIoU_iter_2.pth'))
    # the held-out images are labelled once, in the teacher's 7 classes
    labels = glob.glob(str(tmp_path / 'labels' / 'teacher-*' / '*.png'))
    assert len(labels) == 2
    assert osp.isfile(osp.join(work, 'student', 'student_config.py'))
