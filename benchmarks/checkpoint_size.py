"""Size of a DFSS training checkpoint as MMEngine's Runner writes it: the model state
(``get_state_dict``, so state-dict hooks apply), the optimizer state after one training
step, the message hub and meta, saved with ``save_checkpoint``. The teacher checkpoint is
built from the config with random weights (full size, no download).

    python benchmarks/checkpoint_size.py [CONFIG]   # default: the NYUv2 DFSS config

Run from the repository root (the configs name their teacher/student by relative path).
Prints the file size and the bytes of teacher, student and optimizer tensors in it.
"""
import argparse
import os
import os.path as osp
import tempfile

import torch
from mmengine.config import Config
from mmengine.logging import MessageHub
from mmengine.model import revert_sync_batchnorm
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from mmengine.runner.checkpoint import get_state_dict, save_checkpoint, weights_to_cpu
from mmengine.structures import PixelData
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

import mmseg_dfss  # noqa: F401
from mmseg_dfss.core import load_model_config


def tensor_bytes(obj):
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v) for v in obj)
    return 0


def batch(n=2, size=64):
    g = torch.Generator().manual_seed(0)
    samples = []
    for _ in range(n):
        ds = SegDataSample(metainfo=dict(img_shape=(size, size), ori_shape=(size, size),
                                         pad_shape=(size, size)))
        ds.gt_sem_seg = PixelData(data=torch.zeros(1, size, size, dtype=torch.long))
        samples.append(ds)
    return dict(inputs=[torch.randint(0, 256, (3, size, size), generator=g, dtype=torch.uint8)
                        for _ in range(n)], data_samples=samples)


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('config', nargs='?', default='configs/dfss/deeplabv3_r50_to_mbv2_nyuv2.py')
    args = p.parse_args()
    cfg = Config.fromfile(args.config)
    init_default_scope('mmseg')
    MessageHub.get_instance('checkpoint_size')
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        teacher = revert_sync_batchnorm(MODELS.build(load_model_config(cfg.model.teacher)))
        teacher.init_weights()
        teacher_ckpt = osp.join(tmp, 'teacher.pth')
        torch.save(dict(state_dict=teacher.state_dict()), teacher_ckpt)
        model_cfg = cfg.model.copy()
        model_cfg.teacher_checkpoint = teacher_ckpt
        model_cfg.distill_loss.mode = 'wdd'  # per-sample weights without WDPDHook's progress
        model = revert_sync_batchnorm(MODELS.build(model_cfg))
        model.init_weights()
        model.train()
        optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
        model.train_step(batch(), optim_wrapper)
        state = weights_to_cpu(get_state_dict(model))
        checkpoint = dict(meta=dict(epoch=1, iter=1, cfg=cfg.pretty_text), state_dict=state,
                          optimizer=optim_wrapper.state_dict(),
                          message_hub=MessageHub.get_current_instance().state_dict())
        path = osp.join(tmp, 'epoch_1.pth')
        save_checkpoint(checkpoint, path)
        size = os.path.getsize(path)
    mib = 1 << 20
    part = {name: tensor_bytes({k: v for k, v in state.items() if k.startswith(name + '.')})
            for name in ('teacher', 'student')}
    print(f'config: {args.config}')
    print(f'checkpoint file: {size / mib:.1f} MiB ({size} bytes)')
    print(f'  state_dict teacher.* tensors: {part["teacher"] / mib:.1f} MiB, student.* tensors: '
          f'{part["student"] / mib:.1f} MiB, other keys: '
          f'{[k for k in state if not k.startswith(("teacher.", "student."))]}')
    print(f'  optimizer state tensors: {tensor_bytes(checkpoint["optimizer"]) / mib:.1f} MiB')


if __name__ == '__main__':
    main()
