"""A user's round trip: train a tiny MMSeg segmentor on the synthetic scenes with
tools/train.py, resume it, evaluate it with tools/test.py."""
import os.path as osp

import numpy as np
from log_utils import read_scalars, read_test_metrics, train_steps
from PIL import Image

CONFIG = 'configs/synthetic/deeplabv3_r18-tiny_synthetic.py'


def _shrink(root, max_iters):
    return [
        '--cfg-options', f'train_dataloader.dataset.data_root={root}/scenes',
        f'val_dataloader.dataset.data_root={root}/scenes',
        f'test_dataloader.dataset.data_root={root}/scenes',
        f'train_cfg.max_iters={max_iters}', f'train_cfg.val_interval={max_iters}',
        'default_hooks.checkpoint.interval=20', 'default_hooks.logger.interval=10',
        'param_scheduler.0.end=120', 'optim_wrapper.optimizer.lr=0.05',
        'default_hooks.visualization.draw=False', 'randomness.seed=0'
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
    tool('tools/train.py', CONFIG, '--work-dir', work, *_shrink(synthetic_root, 40))
    assert osp.isfile(osp.join(work, 'iter_40.pth'))

    # resume from iter_40 and continue to 60: the run must start at iteration 40
    proc = tool('tools/train.py', CONFIG, '--work-dir', work, '--resume',
                *_shrink(synthetic_root, 60))
    out = proc.stdout + proc.stderr
    steps = train_steps(read_scalars(work)[0], 'lr', 'loss')  # the resumed run's log
    assert sorted(steps) == [50, 60], out[-3000:]
    ckpt = osp.join(work, 'iter_60.pth')
    assert osp.isfile(ckpt)

    test_dir = str(tmp_path / 'test')
    tool('tools/test.py', CONFIG, ckpt, '--work-dir', test_dir, *_shrink(synthetic_root, 60))
    miou = read_test_metrics(test_dir)['mIoU'] / 100.0
    chance = _chance_miou(synthetic_root, 7)
    assert miou > 2 * chance, (miou, chance)
