"""A user's round trip: train a tiny MMSeg segmentor on the synthetic scenes with
tools/train.py, resume it, evaluate it with tools/test.py."""
import json
import os.path as osp
import re

import numpy as np
from PIL import Image

CONFIG = 'configs/synthetic/deeplabv3_r18-tiny_synthetic.py'


def _shrink(root, max_iters):
    return [
        '--cfg-options', f'train_dataloader.dataset.data_root={root}/scenes',
        f'val_dataloader.dataset.data_root={root}/scenes',
        f'test_dataloader.dataset.data_root={root}/scenes',
        f'train_cfg.max_iters={max_iters}', f'train_cfg.val_interval={max_iters}',
        'default_hooks.checkpoint.interval=40', 'default_hooks.logger.interval=10',
        'param_scheduler.0.end=120', 'optim_wrapper.optimizer.lr=0.05',
        'default_hooks.visualization.draw=False'
    ]


def _chance_miou(root, num_classes):
    """Expected mIoU of a uniformly random prediction on the test labels."""
    counts = np.zeros(num_classes)
    for i in range(8):
        lab = np.array(Image.open(f'{root}/scenes/ann_dir/test/{i:05d}.png'))
        counts += np.bincount(lab.ravel(), minlength=num_classes)
    p = counts / counts.sum()
    q = 1.0 / num_classes
    iou = p * q / (p + q - p * q)
    return float(iou[p > 0].mean())


def test_train_resume_and_evaluate(tmp_path, synthetic_root, tool):
    work = str(tmp_path / 'work')
    tool('tools/train.py', CONFIG, '--work-dir', work, *_shrink(synthetic_root, 80))
    assert osp.isfile(osp.join(work, 'iter_80.pth'))

    # resume from iter_80 and continue to 120: the run must start at iteration 80
    proc = tool('tools/train.py', CONFIG, '--work-dir', work, '--resume',
                *_shrink(synthetic_root, 120))
    out = proc.stdout + proc.stderr
    assert re.search(r'resumed (epoch|from).*|Load checkpoint from .*iter_80\.pth', out), out[-3000:]
    assert 'Iter(train) [ 90/120]' in out or 'Iter(train) [90/120]' in out
    assert 'Iter(train) [ 10/120]' not in out and 'Iter(train) [10/120]' not in out
    ckpt = osp.join(work, 'iter_120.pth')
    assert osp.isfile(ckpt)

    test_dir = str(tmp_path / 'test')
    tool('tools/test.py', CONFIG, ckpt, '--work-dir', test_dir, *_shrink(synthetic_root, 120))
    results = [json.load(open(p)) for p in sorted(
        __import__('glob').glob(osp.join(test_dir, '*', '*.json')))]
    assert results, 'tools/test.py wrote no metrics json'
    miou = results[-1]['mIoU'] / 100.0
    chance = _chance_miou(synthetic_root, 7)
    assert miou > 2 * chance, (miou, chance)
