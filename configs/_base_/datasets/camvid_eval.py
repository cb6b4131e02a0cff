# CamVid, 11 classes (SegNet layout, void 11 -> 255), DFAD's protocol: inputs in
# [-1, 1] (mean = std = 127.5), train on `train`: resize short side 256, random crop
# 128, flip; test on `test`: resize short side 256 (predictions are resized back and
# scored against the full-size labels). See docs/datasets.md.
# No training data loader: DFSS trains on pool images (../dfss/); ./camvid.py adds
# the labelled one (teachers, KD on the original data).
dataset_type = 'CamVidDataset'
data_root = 'data/camvid'
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
    dataset=dict(type=dataset_type, data_root=data_root, split='test',
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
