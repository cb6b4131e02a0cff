# ADS over the synthetic open-world pool with the synthetic teacher (paper Sec. 3.3).
#   python tools/generate_synthetic.py --out data/synthetic
#   python tools/train.py configs/synthetic/deeplabv3_r18-tiny_synthetic.py \
#       --work-dir work_dirs/teacher_synth
#   python tools/ads_score.py configs/synthetic/ads_r18-tiny_synthetic-pool.py \
#       --out work_dirs/ads_synth/scores.csv --plot work_dirs/ads_synth
# Change `strategy` to 'random' or 'confidence' to rerun the paper's Table 3 comparison.
_base_ = ['mmseg::_base_/default_runtime.py']
custom_imports = dict(imports=['mmseg_dfss'], allow_failed_imports=False)

teacher = dict(cfg_path='configs/synthetic/deeplabv3_r18-tiny_synthetic.py')
teacher_checkpoint = 'work_dirs/teacher_synth/iter_2000.pth'
# training view of the kept pool images (the distiller's input)
pool_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResize', scale=(96, 96), ratio_range=(0.75, 1.25), keep_ratio=True),
    dict(type='RandomCrop', crop_size=(64, 64)),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
# deterministic scoring view: the teacher's test protocol on the synthetic scenes
# (native 96 px, no resize); the default for real pools resizes the short side to 256
pool_score_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=8,
    num_workers=0,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type='ADSDataset',
        dataset=dict(
            type='SyntheticPoolDataset',
            data_root='data/synthetic/pool',
            pipeline=pool_train_pipeline),
        teacher=teacher,
        teacher_checkpoint=teacher_checkpoint,
        num_samples=500,
        strategy='ads',
        bn_layers='backbone',
        score_pipeline=pool_score_pipeline,
        score_batch_size=32,
        score_num_workers=0,
        cache_dir='work_dirs/ads_cache',
        seed=0))
