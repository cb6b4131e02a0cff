"""``--amp`` everywhere: MMEngine's AmpOptimWrapper, with a CPU fallback.

MMSeg's ``tools/train.py --amp`` sets ``optim_wrapper.type='AmpOptimWrapper'``.
MMEngine's wrapper refuses to start without a CUDA/NPU/MLU/MUSA device. This
subclass is registered under the same name in MMSeg's ``OPTIM_WRAPPERS`` (the
registry of the ``mmseg`` scope DFSS configs run in), so ``--amp`` picks it:

- with an accelerator it *is* MMEngine's wrapper (fp16 autocast by default,
  dynamic loss scaling), nothing changes;
- on a CPU-only machine it autocasts to bfloat16 (the dtype CPU autocast
  supports) and scales no loss: bfloat16 has float32's exponent range, so
  gradients do not underflow. The loss scaler is a disabled
  ``torch.amp.GradScaler``, so checkpoints and ``--resume`` work as on GPU.

The distillation loss itself is computed in fp32 either way
(:class:`~mmseg_dfss.models.DataFreeDistiller`).
"""
import torch
from mmengine import device as mm_device
from mmengine.logging import print_log
from mmengine.optim import AmpOptimWrapper as _MMEngineAmpOptimWrapper
from mmengine.optim import OptimWrapper
from mmseg.registry import OPTIM_WRAPPERS

CPU_DTYPE = torch.bfloat16


def accelerator_available():
    """True when MMEngine's AmpOptimWrapper accepts this machine."""
    checks = ('is_cuda_available', 'is_npu_available', 'is_mlu_available', 'is_musa_available')
    return any(getattr(mm_device, name)() for name in checks if hasattr(mm_device, name))


@OPTIM_WRAPPERS.register_module(name='AmpOptimWrapper')
class AmpOptimWrapper(_MMEngineAmpOptimWrapper):
    """MMEngine's ``AmpOptimWrapper``; on a machine without accelerator, bfloat16
    autocast on the CPU without loss scaling (see the module docstring).

    Args: as MMEngine's. On CPU ``dtype`` must be None or ``'bfloat16'``
    (``optim_wrapper.dtype``) and ``loss_scale`` is not used.
    """

    def __init__(self, loss_scale='dynamic', dtype=None, use_fsdp=False, **kwargs):
        if accelerator_available():
            super().__init__(loss_scale=loss_scale, dtype=dtype, use_fsdp=use_fsdp, **kwargs)
            return
        name = dtype if isinstance(dtype, str) or dtype is None else str(dtype).split('.')[-1]
        if name not in (None, 'bfloat16'):
            raise ValueError(f'AmpOptimWrapper: on a CPU-only machine mixed precision runs in '
                             f'bfloat16 (CPU autocast), got optim_wrapper.dtype={dtype!r}; '
                             "set optim_wrapper.dtype='bfloat16' or leave it unset")
        if use_fsdp:
            raise ValueError('AmpOptimWrapper: use_fsdp=True needs a CUDA device')
        OptimWrapper.__init__(self, **kwargs)
        self._scale_update_param = None
        self.loss_scaler = torch.amp.GradScaler('cpu', enabled=False)
        self.cast_dtype = CPU_DTYPE
        print_log('AmpOptimWrapper: no CUDA device; mixed precision runs as bfloat16 autocast '
                  'on the CPU, without loss scaling', logger='current')
