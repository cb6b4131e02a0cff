# COCO train2017 as the open-world pool (images only; no labels are read).
# Only the names below are defined, so this file combines with a dataset base
# (nyuv2.py / camvid.py) in one config.
pool_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeShortestEdge', scale=256, max_size=4096),
    dict(type='RandomCrop', crop_size=(128, 128)),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
# deterministic: what ADS scores (the original protocol's test-time resize)
pool_score_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeShortestEdge', scale=256, max_size=4096),
    dict(type='PackSegInputs'),
]
coco_pool = dict(
    type='COCOPoolDataset',
    data_root='data/coco',
    ann_file='annotations/instances_train2017.json',
    data_prefix=dict(img_path='train2017'),
    min_instances=0,
    categories=None,
    pipeline=pool_train_pipeline)
