"""Default outputs go under work_dirs/ and the demo survives the documented commands
(issue 26 item 3)."""
import importlib.util
import json
import os
import os.path as osp
from conftest import run_python
from mmengine.config import Config

DFSS_SYNTH = 'configs/synthetic/dfss_r18-tiny_to_mbv2-tiny_synthetic.py'


def test_label_free_config_default_goes_under_work_dirs(tmp_path, repo_root):
    """Without --out the variant is written under ./work_dirs, not next to the shipped config."""
    source = osp.join(repo_root, DFSS_SYNTH)
    before = sorted(os.listdir(osp.dirname(source)))
    proc = run_python('tools/label_free_config.py', source, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / 'work_dirs' / 'label_free_config' / (
        'dfss_r18-tiny_to_mbv2-tiny_synthetic_label-free.py')
    stray = sorted(set(os.listdir(osp.dirname(source))) - set(before))
    for name in stray:  # written by this test's run: leave the source tree as it was
        os.remove(osp.join(osp.dirname(source), name))
    assert stray == []
    cfg = Config.fromfile(str(out))
    assert cfg.val_dataloader.dataset.type == 'TeacherLabeledDataset'


def _demo_module(repo_root):
    spec = importlib.util.spec_from_file_location('demo_tool', osp.join(repo_root, 'tools/demo.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_demo_recomputes_a_compare_summary_another_tool_wrote(tmp_path, repo_root):
    """A compare_predictions summary.json in the demo's compare/ once crashed the demo
    (KeyError 'eps'); it is now recognised as not compare_pools's and recomputed."""
    demo = _demo_module(repo_root)
    ours = tmp_path / 'pools.json'
    ours.write_text(json.dumps(dict(eps=600, ranking=['a'], pools={'a': {}})))
    theirs = tmp_path / 'predictions.json'
    theirs.write_text(json.dumps(dict(agreement_miou=35.6, num_images=100)))
    (tmp_path / 'broken.json').write_text('{"eps": 6')
    assert demo.is_compare_pools_summary(str(ours))
    assert not demo.is_compare_pools_summary(str(theirs))
    assert not demo.is_compare_pools_summary(str(tmp_path / 'broken.json'))


def test_pool_entropy_creates_the_work_dirs_folders_the_docs_name(tmp_path, repo_root):
    """datasets.md/recipes.md send the histogram and CSV to work_dirs/entropy/, which a
    fresh clone does not have."""
    import numpy as np
    from PIL import Image
    images = tmp_path / 'images'
    images.mkdir()
    for k in range(3):
        Image.fromarray(np.full((8, 8, 3), 40 * k, np.uint8)).save(images / f'{k}.png')
    proc = run_python('tools/pool_entropy.py', images, '--out-png', 'work_dirs/entropy/e.png',
                      '--out-csv', 'work_dirs/entropy/e.csv', cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len((tmp_path / 'work_dirs' / 'entropy' / 'e.csv').read_text().splitlines()) == 4
    assert (tmp_path / 'work_dirs' / 'entropy' / 'e.png').stat().st_size > 0
