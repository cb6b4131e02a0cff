# CamVid, 11 classes (SegNet layout, void 11 -> 255), DFAD's protocol: inputs in
# [-1, 1] (mean = std = 127.5), train on `train`: resize short side 256, random crop
# 128, flip; test on `test`: resize short side 256 (predictions are resized back and
# scored against the full-size labels). See docs/datasets.md.
_base_ = ['./camvid_eval.py']
train_dataloader = dict(
    batch_size=16,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type={{_base_.dataset_type}}, data_root={{_base_.data_root}}, split='train',
                 pipeline={{_base_.train_pipeline}}))
