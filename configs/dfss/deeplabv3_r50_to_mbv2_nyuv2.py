# DFSS on NYUv2 (paper Sec. 3, Table 1): a DeepLabV3-R50 teacher trained on NYUv2
# distils a DeepLabV3-MobileNetV2 student without NYUv2's training images. ADS keeps
# the eps = 10K COCO train2017 images whose BN statistics in the teacher are closest
# to its running statistics (Eq. 8-9); the student learns the teacher's logits with
# the WDPD loss (Eq. 10-13); it is validated on NYUv2 test with MMSeg's IoUMetric.
#   python tools/train.py configs/dfss/deeplabv3_r50_to_mbv2_nyuv2.py
#   bash tools/dist_train.sh configs/dfss/deeplabv3_r50_to_mbv2_nyuv2.py 8   # paper: 8 x 24
# At the end the student is exported to <work_dir>/student (plain MMSeg).
# Swap backbones by changing `teacher`/`student` (any MMSeg segmentor config with the
# same classes, e.g. dict(cfg_path='mmseg::...py'); the teacher's checkpoint must match
# its config and may be a path or a URL). Keys inside are set from the command line:
#   --cfg-options model.student.decode_head.channels=64
# The ADS wrapper and the distiller must name the same teacher (a run whose two differ
# stops): set model.teacher.<key> and train_dataloader.dataset.teacher.<key> together.
teacher = dict(cfg_path='configs/teachers/deeplabv3_r50-d8_nyuv2.py')
teacher_checkpoint = 'checkpoints/deeplabv3_r50-d8_nyuv2.pth'  # your trained teacher
student = dict(cfg_path='configs/students/deeplabv3_mbv2-d8_nyuv2.py')
num_samples = 10000  # eps
strategy = 'ads'  # 'ads' | 'random' | 'confidence'
loss_mode = 'wdpd'  # 'wdpd' | 'wdd' | 'vanilla'

_base_ = [
    '../_base_/datasets/nyuv2.py',
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
