# NYUv2, 13 classes, DFAD's protocol: inputs in [-1, 1] (mean = std = 127.5),
# train: resize short side 256, random crop 128, flip; test: resize short side 256
# (predictions are resized back and scored against the full-size labels).
# Either on-disk layout works (detected); see docs/datasets.md.
# No training data loader: DFSS trains on pool images (../dfss/); ./nyuv2.py adds
# the labelled one (teachers, KD on the original data).
dataset_type = 'NYUv2Dataset'
data_root = 'data/nyuv2'
crop_size = (128, 128)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='ResizeShortestEdge', scale=256, max_size=4096),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeShortestEdge', scale=256, max_size=4096),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root, split='test', layout='auto',
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
# DFAD's normalisation, for the model configs that use this protocol (named apart from
# MMSeg's model-base `data_preprocessor`, so both bases can be inherited together)
dfad_data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[127.5, 127.5, 127.5],
    std=[127.5, 127.5, 127.5],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
    size=crop_size)
