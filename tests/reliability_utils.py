"""Helpers of the reliability tests: a free TCP port for torchrun and the
--cfg-options that shrink the synthetic DFSS config."""
import socket


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def tiny_options(synthetic_root, teacher_ckpt, work_dir, max_iters, ckpt_interval=2,
                 num_samples=16):
    """--cfg-options values: data from the synthetic fixture, eps 16, batch 2,
    ``max_iters`` iterations, a checkpoint every ``ckpt_interval``, log every iteration."""
    return [
        f'model.teacher_checkpoint={teacher_ckpt}',
        f'train_dataloader.dataset.teacher_checkpoint={teacher_ckpt}',
        f'train_dataloader.dataset.dataset.data_root={synthetic_root}/pool',
        f'train_dataloader.dataset.num_samples={num_samples}',
        f'train_dataloader.dataset.cache_dir={work_dir}/ads_cache',
        'train_dataloader.batch_size=2',
        f'val_dataloader.dataset.data_root={synthetic_root}/scenes',
        f'test_dataloader.dataset.data_root={synthetic_root}/scenes',
        f'train_cfg.max_iters={max_iters}', f'train_cfg.val_interval={max_iters}',
        f'param_scheduler.0.end={max_iters}',
        f'default_hooks.checkpoint.interval={ckpt_interval}',
        'default_hooks.checkpoint.max_keep_ckpts=-1',
        'default_hooks.logger.interval=1', 'default_hooks.visualization.draw=False',
        'randomness.seed=0',
    ]
