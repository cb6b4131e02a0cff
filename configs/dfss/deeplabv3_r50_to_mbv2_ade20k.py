# DFSS recipe for an MMSeg model-zoo model on ADE20K (150 classes), without ADE20K's
# training images: the zoo's DeepLabV3-R50-D8 (deeplabv3_r50-d8_4xb4-160k_ade20k-512x512,
# 42.66 mIoU; teacher_checkpoint='metafile': the Weights URL that the installed MMSeg's
# metafile lists for that config, so no host is written here; downloaded once into
# the torch hub cache) distils the zoo's MobileNetV2-D8 DeepLabV3 architecture
# (mobilenet-v2-d8_deeplabv3_4xb4-160k_ade20k-512x512). ADS (Eq. 8-9) keeps the
# eps = num_samples images of an unlabeled image folder (data/pool, any images, any
# sizes; COCO train2017 works too, see below) whose BN statistics in the teacher are
# closest to its running statistics; the student learns the teacher's logits with the
# WDPD loss (Eq. 10-13) and is validated with MMSeg's own ADE20KDataset, test pipeline
# and IoUMetric (data/ade/ADEChallengeData2016: images/validation + annotations/validation).
#   python tools/train.py configs/dfss/deeplabv3_r50_to_mbv2_ade20k.py
#   bash tools/dist_train.sh configs/dfss/deeplabv3_r50_to_mbv2_ade20k.py 4  # zoo: 4 x 4
# At the end the student is exported to <work_dir>/student (plain MMSeg).
# Inputs are as the zoo teacher's: ImageNet mean/std, RGB (the distiller refuses a
# teacher whose normalisation differs from model.data_preprocessor). The pool is
# trained on at 1x-2x the zoo's test scale (short side 512-1024, random 512x512 crop,
# flip), so every crop is exactly the preprocessor's size and nothing is padded; ADS
# scores each image resized as the zoo's test pipeline does (2048x512, keep ratio).
# Schedule: the zoo student's, iteration-based: 160k iterations, SGD lr 0.01, momentum
# 0.9, weight decay 5e-4, poly LR; batch 4 per GPU (4 GPUs = the zoo's 16; with 8 GPUs
# scale lr with --cfg-options auto_scale_lr.enable=True). Eq. 13's ramp runs over
# the 160k iterations.
# The student's ImageNet-pretrained backbone (pretrained='mmcls://mobilenet_v2') is
# downloaded at init; offline: --cfg-options model.student.pretrained=None.
# The pool is COCO instead of a folder with
#   --cfg-options train_dataloader.dataset.dataset.type=COCOPoolDataset \
#     train_dataloader.dataset.dataset.data_root=data/coco \
#     train_dataloader.dataset.dataset.ann_file=annotations/instances_train2017.json \
#     train_dataloader.dataset.dataset.data_prefix.img_path=train2017
# The ADS wrapper and the distiller must name the same teacher (a run whose two differ
# stops): set model.teacher.<key> and train_dataloader.dataset.teacher.<key> together.
teacher = dict(cfg_path='mmseg::deeplabv3/deeplabv3_r50-d8_4xb4-160k_ade20k-512x512.py')
teacher_checkpoint = 'metafile'  # the installed MMSeg's Weights for the teacher config
student = dict(
    cfg_path='mmseg::mobilenet_v2/mobilenet-v2-d8_deeplabv3_4xb4-160k_ade20k-512x512.py')
num_samples = 10000  # eps: at most the number of pool images
strategy = 'ads'  # 'ads' | 'random' | 'confidence'
loss_mode = 'wdpd'  # 'wdpd' | 'wdd' | 'vanilla'
crop_size = (512, 512)  # H, W: pool crops = the preprocessor's size (no padding)
test_scale = (2048, 512)  # the zoo's test Resize (keep ratio): ADS scores at it

_base_ = [
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_160k.py',
]
custom_imports = dict(imports=['mmseg_dfss'], allow_failed_imports=False)
# the zoo teacher's normalisation (mmseg::_base_/models/deeplabv3_r50-d8.py)
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
    size=crop_size)
model = dict(
    type='DataFreeDistiller',
    teacher=teacher,
    teacher_checkpoint=teacher_checkpoint,
    student=student,
    distill_loss=dict(type='WDPDLoss', mode=loss_mode, ramp=0.5, loss_weight=1.0),
    data_preprocessor=data_preprocessor)
# short side 512..1024 (1x-2x the test scale): every crop is a full crop_size
pool_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomChoiceResize', scales=[512 + 64 * k for k in range(9)],
         resize_type='ResizeShortestEdge', max_size=8192),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
# deterministic, as the zoo's test pipeline resizes
pool_score_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=test_scale, keep_ratio=True),
    dict(type='PackSegInputs'),
]
pool = dict(
    type='UnlabeledImageDataset',
    data_root='data/pool',  # a folder of images (searched recursively)
    data_prefix=dict(img_path=''),
    pipeline=pool_train_pipeline)
train_dataloader = dict(
    batch_size=4,  # per GPU, as the zoo student
    num_workers=4,
    persistent_workers=True,
    drop_last=True,  # ASPP's image pooling BN needs > 1 sample per GPU
    sampler=dict(type='SeededInfiniteSampler', shuffle=True),  # exact --resume
    dataset=dict(
        _delete_=True,
        type='ADSDataset',
        dataset=pool,
        teacher=teacher,
        teacher_checkpoint=teacher_checkpoint,
        num_samples=num_samples,
        strategy=strategy,
        bn_layers='backbone',
        score_pipeline=pool_score_pipeline,
        score_batch_size=8,  # images of one size per forward
        score_num_workers=4,
        cache_dir='work_dirs/ads_cache',
        seed=0))
custom_hooks = [
    dict(type='WDPDHook'),
    dict(type='ADSSelectionHook'),
    dict(type='StudentExportHook'),
]
default_hooks = dict(checkpoint=dict(max_keep_ckpts=3))
auto_scale_lr = dict(enable=False, base_batch_size=16)
