"""The train stage: DFSS (the distiller with the WDPD loss) on the kept images, run by
MMEngine's Runner in this process, validated on teacher labels of the ADS held-out
images; the best checkpoint by agreement mIoU is kept. A killed run resumes from its
last checkpoint (the work dir is keyed by the training inputs)."""
import glob
import os.path as osp

from mmengine.runner import Runner
from mmseg.registry import RUNNERS


def best_checkpoint(work_dir):
    """The best-by-mIoU checkpoint MMEngine's CheckpointHook kept in ``work_dir``."""
    found = sorted(glob.glob(osp.join(work_dir, 'best_mIoU_iter_*.pth')))
    return found[-1] if found else None


def run_train(cfg, work_dir):
    """Trains (resuming from ``work_dir``'s last checkpoint) and returns the stage's
    numbers: the best checkpoint and its agreement mIoU."""
    cfg = cfg.copy()
    cfg.work_dir = work_dir
    cfg.resume = True  # MMEngine resumes from work_dir/last_checkpoint when there is one
    cfg.load_from = None
    # runner_type='DFSSRunner' (the DFSS base), built as MMSeg's tools/train.py does
    runner = RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)
    runner.train()
    best = best_checkpoint(work_dir)
    if best is None:
        raise RuntimeError(f'training in {work_dir} ended without a best_mIoU checkpoint: '
                           'the validation did not run')
    scores = runner.message_hub.get_info('best_score')
    return dict(checkpoint=best, best_agreement_miou=None if scores is None else float(scores),
                iters=int(cfg.train_cfg.max_iters), work_dir=work_dir,
                log_dir=runner.log_dir)


def train_result(cfg, work_dir):
    """:func:`run_train`'s numbers for a training another process ran in ``work_dir``
    (a launched job): the best checkpoint, its agreement mIoU (from the message hub it
    saved, read with the restricted loader) and the newest log folder."""
    from ...core.teacher import load_checkpoint_file
    best = best_checkpoint(work_dir)
    if best is None:
        raise RuntimeError(f'training in {work_dir} ended without a best_mIoU checkpoint: '
                           'the validation did not run')
    hub = load_checkpoint_file(best, 'best checkpoint').get('message_hub') or {}
    score = (hub.get('runtime_info') or {}).get('best_score')
    logs = sorted(d for d in glob.glob(osp.join(work_dir, '[0-9]' * 8 + '_' + '[0-9]' * 6))
                  if osp.isdir(d))
    return dict(checkpoint=best, best_agreement_miou=None if score is None else float(score),
                iters=int(cfg.train_cfg.max_iters), work_dir=work_dir,
                log_dir=logs[-1] if logs else None)
