"""DDP for multi-process runs on CPUs (gloo), where torch's SyncBN cannot run."""
from mmengine.model import MMDistributedDataParallel, revert_sync_batchnorm
from mmseg.registry import MODEL_WRAPPERS


@MODEL_WRAPPERS.register_module()
class CPUDistributedDataParallel(MMDistributedDataParallel):
    """:class:`MMDistributedDataParallel` that first reverts SyncBN layers to BN.

    torch's DDP refuses SyncBN on a CPU module ("SyncBatchNorm layers only work with GPU
    modules"), and the shipped configs use SyncBN. The reverted layers keep their names,
    weights and running statistics, so checkpoints are the same as with SyncBN; batch
    statistics are then per process (as in a single-process run, where MMEngine reverts
    SyncBN too) and DDP broadcasts rank 0's running statistics. Used by ``tools/*.py``
    under ``--launcher pytorch|slurm`` on a torch without CUDA.
    """

    def __init__(self, module, **kwargs):
        super().__init__(module=revert_sync_batchnorm(module), **kwargs)
