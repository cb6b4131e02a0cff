# NYUv2, 13 classes, DFAD's protocol: inputs in [-1, 1] (mean = std = 127.5),
# train: resize short side 256, random crop 128, flip; test: resize short side 256
# (predictions are resized back and scored against the full-size labels).
# Either on-disk layout works (detected); see docs/datasets.md.
_base_ = ['./nyuv2_eval.py']
train_dataloader = dict(
    batch_size=16,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type={{_base_.dataset_type}}, data_root={{_base_.data_root}}, split='train', layout='auto',
                 pipeline={{_base_.train_pipeline}}))
