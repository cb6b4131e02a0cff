"""Test-only hook for multi-process runs: every rank writes what it trained on (pool
indices and ADS weights per sample, the ADS selection) and the student it ended with
to ``<work_dir>/probe_rank<r>.json``, so a test can check DDP itself (world size,
disjoint data shards, identical replicas) and the selection, not a log line.
Loaded with ``custom_imports`` (the test puts this folder on PYTHONPATH)."""
import hashlib
import json
import os.path as osp

from mmengine.dist import get_dist_info
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmseg.registry import HOOKS


def student_digest(model):
    model = model.module if is_model_wrapper(model) else model
    h = hashlib.sha256()
    # parameters only: DDP keeps them in sync; BN running statistics are each rank's
    # own between the broadcasts at the start of every forward
    for name, t in sorted(model.student.named_parameters()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


@HOOKS.register_module()
class DDPProbeHook(Hook):

    def before_train(self, runner):
        self.start_iter = runner.iter
        self.first_digest = student_digest(runner.model)
        self.pool_indices, self.ads_weights = [], []
        self.selected = [int(i) for i in runner.train_dataloader.dataset.selected]

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.pool_indices += [int(s.metainfo['pool_index'])
                              for s in data_batch['data_samples']]
        self.ads_weights += [float(s.metainfo['ads_weight']) for s in data_batch['data_samples']]

    def after_train(self, runner):
        rank, world = get_dist_info()
        with open(osp.join(runner.work_dir, f'probe_rank{rank}.json'), 'w') as f:
            json.dump(dict(rank=rank, world_size=world, ddp=is_model_wrapper(runner.model),
                           start_iter=self.start_iter, pool_indices=self.pool_indices,
                           ads_weights=self.ads_weights, selected=self.selected,
                           first_digest=self.first_digest,
                           last_digest=student_digest(runner.model)), f)
