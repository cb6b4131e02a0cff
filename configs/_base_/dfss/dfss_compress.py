# What every DIR/dfss_config.py that tools/compress.py writes shares: DFSS validated on
# teacher labels of held-out pool images (./dfss_label_free.py; the class names come from
# the teacher), SGD with a poly decay over train_cfg.max_iters, the best checkpoint by
# agreement, and no export hook (the command's ship stage exports the student).
_base_ = ['./dfss_label_free.py']
optim_wrapper = dict(type='OptimWrapper', clip_grad=None,
                     optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=5e-4))
param_scheduler = [dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, by_epoch=False)]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=40000, val_interval=8000)
default_hooks = dict(checkpoint=dict(max_keep_ckpts=2))
custom_hooks = [dict(type='WDPDHook'), dict(type='ADSSelectionHook'),
                dict(type='ResumedValidationHook')]
randomness = dict(seed=0)
