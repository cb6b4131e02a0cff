# The DFSS base (paper Sec. 3): the distiller (WDPD loss, Eq. 10-13), the ADS wrapper
# (Eq. 8-9) over a pool of unlabeled images, and the hooks. The teacher is named once,
# in `model`: DFSSRunner gives it to every dataset that runs it. See docs/configs.md.
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
train_dataloader = dict(
    batch_size=8,
    num_workers=2,
    persistent_workers=True,
    drop_last=True,  # ASPP's image pooling BN needs > 1 sample per GPU
    sampler=dict(type='SeededInfiniteSampler', shuffle=True),  # exact --resume
    dataset=dict(
        type='ADSDataset',
        dataset=dict(),  # the pool: a dataset of unlabeled images
        num_samples=10000,  # eps
        strategy='ads',  # 'ads' | 'random' | 'confidence'
        bn_layers='backbone',
        score_pipeline=None,  # the teacher config's test pipeline, else native size
        cache_dir='work_dirs/ads_cache',
        seed=0))
custom_hooks = [
    dict(type='WDPDHook'),
    dict(type='ADSSelectionHook'),
    dict(type='StudentExportHook'),
]
