# DFSS on CamVid (paper Table 1): DeepLabV3-R50 teacher -> DeepLabV3-MobileNetV2
# student, eps = 10K COCO images selected by ADS, WDPD loss, validated on CamVid test.
#   python tools/train.py configs/dfss/deeplabv3_r50_to_mbv2_camvid.py
#   bash tools/dist_train.sh configs/dfss/deeplabv3_r50_to_mbv2_camvid.py 8   # paper: 8 x 24
teacher = dict(cfg_path='configs/teachers/deeplabv3_r50-d8_camvid.py')
teacher_checkpoint = 'checkpoints/deeplabv3_r50-d8_camvid.pth'  # your trained teacher
student = dict(cfg_path='configs/students/deeplabv3_mbv2-d8_camvid.py')
num_samples = 10000  # eps
strategy = 'ads'  # 'ads' | 'random' | 'confidence'
loss_mode = 'wdpd'  # 'wdpd' | 'wdd' | 'vanilla'

_base_ = [
    '../_base_/datasets/camvid.py',
    '../_base_/datasets/coco_pool.py',
    'mmseg::_base_/default_runtime.py',
    '../_base_/schedules/dfss_150e.py',
]
custom_imports = dict(imports=['mmseg_dfss'], allow_failed_imports=False)
model = dict(
    type='DataFreeDistiller',
    teacher=teacher,
    teacher_checkpoint=teacher_checkpoint,
    student=student,
    distill_loss=dict(type='WDPDLoss', mode=loss_mode, ramp=0.5, loss_weight=1.0),
    data_preprocessor={{_base_.dfad_data_preprocessor}})
train_dataloader = dict(
    batch_size=24,  # per GPU: 8 GPUs x 24 = the paper's 192
    num_workers=4,
    persistent_workers=True,
    drop_last=True,  # ASPP's image pooling BN needs > 1 sample per GPU
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        _delete_=True,
        type='ADSDataset',
        dataset={{_base_.coco_pool}},
        teacher=teacher,
        teacher_checkpoint=teacher_checkpoint,
        num_samples=num_samples,
        strategy=strategy,
        bn_layers='backbone',
        score_pipeline={{_base_.pool_score_pipeline}},
        score_batch_size=32,
        score_num_workers=4,
        cache_dir='work_dirs/ads_cache',
        seed=0))
custom_hooks = [
    dict(type='WDPDHook'),
    dict(type='ADSSelectionHook'),
    dict(type='StudentExportHook'),
]
log_processor = dict(by_epoch=True)
