# DFSS on the synthetic demo: the R18-tiny room teacher distils the MobileNetV2-tiny
# student on pool images picked by ADS (no room image is used for training); the
# student is validated on the synthetic rooms' test split.
#   python tools/generate_synthetic.py --out data/synthetic
#   python tools/train.py configs/synthetic/deeplabv3_r18-tiny_synthetic.py \
#       --work-dir work_dirs/teacher_synth
#   python tools/train.py configs/synthetic/dfss_r18-tiny_to_mbv2-tiny_synthetic.py
teacher = dict(cfg_path='configs/synthetic/deeplabv3_r18-tiny_synthetic.py')
teacher_checkpoint = 'work_dirs/teacher_synth/iter_2000.pth'
student = dict(cfg_path='configs/students/deeplabv3_mbv2-tiny_synthetic.py')
num_samples = 1000  # eps, of the 2000-image default pool
strategy = 'ads'  # 'ads' | 'random' | 'confidence'
loss_mode = 'wdpd'  # 'wdpd' | 'wdd' | 'vanilla'

_base_ = [
    '../_base_/datasets/synthetic_scenes.py',
    'mmseg::_base_/default_runtime.py',
    '../_base_/schedules/synthetic_2k.py',
]
custom_imports = dict(imports=['mmseg_dfss'], allow_failed_imports=False)
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[127.5, 127.5, 127.5],
    std=[127.5, 127.5, 127.5],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
    size={{_base_.crop_size}})
model = dict(
    type='DataFreeDistiller',
    teacher=teacher,
    teacher_checkpoint=teacher_checkpoint,
    student=student,
    distill_loss=dict(type='WDPDLoss', mode=loss_mode, ramp=0.5, loss_weight=1.0),
    data_preprocessor=data_preprocessor)
# the pool's training view: the rooms' train augmentation, without labels
pool_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResize', scale=(96, 96), ratio_range=(0.75, 1.25), keep_ratio=True),
    dict(type='RandomCrop', crop_size={{_base_.crop_size}}),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
# ADS scores the teacher's test view of the rooms (native 96 px)
pool_score_pipeline = [dict(type='LoadImageFromFile'), dict(type='PackSegInputs')]
train_dataloader = dict(
    # each draw seeds its own augmentation: --resume continues number for number
    sampler=dict(type='SeededInfiniteSampler', shuffle=True),
    dataset=dict(
        _delete_=True,
        type='ADSDataset',
        dataset=dict(
            type='SyntheticPoolDataset',
            data_root='data/synthetic/pool',
            pipeline=pool_train_pipeline),
        teacher=teacher,
        teacher_checkpoint=teacher_checkpoint,
        num_samples=num_samples,
        strategy=strategy,
        bn_layers='backbone',
        score_pipeline=pool_score_pipeline,
        score_batch_size=32,
        score_num_workers=0,
        cache_dir='work_dirs/ads_cache',
        seed=0))
custom_hooks = [
    dict(type='WDPDHook'),
    dict(type='ADSSelectionHook'),
    dict(type='StudentExportHook'),
]
