# Label-free validation of the recipe below: its mIoU is AGREEMENT WITH THE TEACHER,
# not accuracy (docs/label_free.md). Written by tools/label_free_config.py.
_base_ = ['../dfss/deeplabv3_r50_to_mbv2_camvid.py']
val_dataloader = dict(dataset=dict(_delete_=True, type='TeacherLabeledDataset',
    dataset=dict(type='ADSHeldOutDataset', num_samples=500)))
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
default_hooks = dict(checkpoint=dict(save_best='mIoU', rule='greater'))
