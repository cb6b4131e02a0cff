# The synthetic original domain (rooms, 7 classes, 96x96), written by
# `python tools/generate_synthetic.py` (default: data/synthetic).
_base_ = ['./synthetic_scenes_eval.py']
# Images are tiny: they load in the main process (no worker processes to start).
train_dataloader = dict(
    batch_size=8,
    num_workers=0,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type={{_base_.dataset_type}},
        data_root={{_base_.data_root}},
        data_prefix=dict(img_path='img_dir/train', seg_map_path='ann_dir/train'),
        pipeline={{_base_.train_pipeline}}))
