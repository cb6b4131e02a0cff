# DFSS validated without labels: the student is scored against the frozen teacher's
# predictions of the pool images ADS ranks just after the eps kept ones (never trained
# on). The mIoU it logs is AGREEMENT WITH THE TEACHER, not accuracy (docs/label_free.md).
_base_ = ['./dfss.py']
val_dataloader = dict(
    batch_size=1,
    num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='TeacherLabeledDataset',
        dataset=dict(type='ADSHeldOutDataset', num_samples=500),
        pipeline=None,  # the teacher config's test pipeline, else native size
        cache_dir='work_dirs/teacher_labels'))
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
val_cfg = dict(type='ValLoop')
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, save_best='mIoU', rule='greater'))
