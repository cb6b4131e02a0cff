# DFSS without its training data loader (for a config whose dataset base brings one, as
# MMSeg's do): the distiller (WDPD loss, Eq. 10-13) and the hooks. The teacher is named
# once, in `model`: DFSSRunner gives it to every dataset that runs it (docs/recipes.md).
_base_ = ['mmseg::_base_/default_runtime.py']
custom_imports = dict(imports=['mmseg_dfss'], allow_failed_imports=False)
default_scope = 'mmseg'
runner_type = 'DFSSRunner'
model = dict(
    type='DataFreeDistiller',
    teacher=dict(),  # segmentor config, config path or dict(cfg_path=..., **overrides)
    teacher_checkpoint=None,  # path, URL, or 'metafile' (an mmseg:: zoo teacher)
    student=dict(),
    distill_loss=dict(type='WDPDLoss', mode='wdpd', ramp=0.5, loss_weight=1.0))
custom_hooks = [
    dict(type='WDPDHook'),
    dict(type='ADSSelectionHook'),
    dict(type='StudentExportHook'),
]
