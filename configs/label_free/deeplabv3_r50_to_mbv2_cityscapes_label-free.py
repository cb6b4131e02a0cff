# Label-free validation: the student is scored against the frozen teacher's
# predictions (TeacherLabeledDataset), not against ground truth. The mIoU it
# logs is AGREEMENT WITH THE TEACHER, not accuracy. Written by
# tools/label_free_config.py; see docs/label_free.md.
_base_ = ['../dfss/deeplabv3_r50_to_mbv2_cityscapes.py']
val_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='TeacherLabeledDataset',
        dataset=dict(
            type='ADSHeldOutDataset',
            dataset={{_base_.train_dataloader.dataset.dataset}},
            num_skipped={{_base_.train_dataloader.dataset.num_samples}},  # the training eps
            num_samples=500,  # the images ranked after them
            teacher={{_base_.train_dataloader.dataset.teacher}},
            teacher_checkpoint={{_base_.train_dataloader.dataset.teacher_checkpoint}},
            strategy={{_base_.train_dataloader.dataset.strategy}},
            bn_layers={{_base_.train_dataloader.dataset.bn_layers}},
            score_pipeline={{_base_.train_dataloader.dataset.score_pipeline}},
            score_batch_size={{_base_.train_dataloader.dataset.score_batch_size}},
            score_num_workers={{_base_.train_dataloader.dataset.score_num_workers}},
            cache_dir={{_base_.train_dataloader.dataset.cache_dir}},
            seed={{_base_.train_dataloader.dataset.seed}},
        ),
        teacher={{_base_.model.teacher}},
        teacher_checkpoint={{_base_.model.teacher_checkpoint}},
        cache_dir='work_dirs/teacher_labels',
        pipeline={{_base_.val_dataloader.dataset.pipeline}},
        metainfo_from='CityscapesDataset',  # the class names and palette
    ))
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
default_hooks = dict(checkpoint=dict(save_best='mIoU', rule='greater'))
