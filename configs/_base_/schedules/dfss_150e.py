# The paper's student training: 150 epochs, SGD, cosine LR, batch 192 = 8 GPUs x 24
# per GPU (the DFSS configs set train_dataloader.batch_size=24); log_processor.by_epoch=True
# goes in the config (default_runtime.py defines log_processor). lr 0.1, momentum
# 0.9, weight decay 5e-4 are DFAD's student settings (the paper gives none).
# With fewer GPUs keep 192 in total or scale the lr: --cfg-options auto_scale_lr.enable=True uses
# auto_scale_lr.base_batch_size.
optimizer = dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=5e-4)
optim_wrapper = dict(type='OptimWrapper', optimizer=optimizer, clip_grad=None)
param_scheduler = [
    dict(type='CosineAnnealingLR', T_max=150, eta_min=0, begin=0, end=150, by_epoch=True,
         convert_to_iter_based=True)
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=150, val_interval=10)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
auto_scale_lr = dict(enable=False, base_batch_size=192)
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=10),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=True, interval=10, max_keep_ckpts=3),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
