# Teacher: MMSeg's DeepLabV3-R50-D8 zoo model trained with labels on NYUv2 (13
# classes), DFAD's protocol (mean = std = 127.5; train: resize short side 256, random
# crop 128, flip; test: resize short side 256). 20k iterations, batch 16 (4 GPUs x 4):
#   bash tools/dist_train.sh configs/teachers/deeplabv3_r50-d8_nyuv2.py 4
# ImageNet initialisation: MMSeg's base downloads open-mmlab://resnet50_v1c; nothing
# is downloaded here (pretrained=None): set `pretrained` to a local checkpoint.
# The data settings are those of ../_base_/datasets/nyuv2.py, written out: that file
# and MMSeg's model base both define `data_preprocessor`, and MMEngine refuses a
# key defined by two sibling bases.
_base_ = [
    'mmseg::_base_/models/deeplabv3_r50-d8.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_20k.py',
]
custom_imports = dict(imports=['mmseg_dfss'], allow_failed_imports=False)
num_classes = 13
pretrained = None
dataset_type = 'NYUv2Dataset'
data_root = 'data/nyuv2'
crop_size = (128, 128)
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[127.5, 127.5, 127.5],
    std=[127.5, 127.5, 127.5],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
    size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    pretrained=pretrained,
    decode_head=dict(num_classes=num_classes),
    auxiliary_head=dict(num_classes=num_classes))
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
train_dataloader = dict(
    batch_size=4,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type=dataset_type, data_root=data_root, split='train',
                 pipeline=train_pipeline))
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
