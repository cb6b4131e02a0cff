# DFSS for an MMSeg zoo model without its training images: the zoo's DeepLabV3-R50-D8 on
# ADE20K (42.66 mIoU) distils the zoo's MobileNetV2-D8 DeepLabV3 on the images ADS
# keeps of an unlabeled folder, validated on ADE20K validation (docs/zoo.md).
#   python tools/train.py configs/dfss/deeplabv3_r50_to_mbv2_ade20k.py
#   bash tools/dist_train.sh configs/dfss/deeplabv3_r50_to_mbv2_ade20k.py 4  # zoo: 4 x 4
_base_ = ['mmseg::_base_/datasets/ade20k.py', 'mmseg::_base_/schedules/schedule_160k.py',
          '../_base_/dfss/distiller.py']
crop_size = (512, 512)  # H, W: every pool crop is the preprocessor's size (no padding)
model = dict(
    teacher=dict(cfg_path='mmseg::deeplabv3/deeplabv3_r50-d8_4xb4-160k_ade20k-512x512.py'),
    teacher_checkpoint='metafile',  # the installed MMSeg's Weights for the teacher config
    student=dict(
        cfg_path='mmseg::mobilenet_v2/mobilenet-v2-d8_deeplabv3_4xb4-160k_ade20k-512x512.py'),
    data_preprocessor=dict(pad_val=0, seg_pad_val=255, size=crop_size))  # + the teacher's
pool_train_pipeline = [  # short side 1x-2x the test scale, then a full crop
    dict(type='LoadImageFromFile'),
    dict(type='RandomChoiceResize', scales=[512 + 64 * k for k in range(9)],
         resize_type='ResizeShortestEdge', max_size=8192),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=4, num_workers=4, persistent_workers=True, drop_last=True,
    sampler=dict(type='SeededInfiniteSampler', shuffle=True),
    dataset=dict(
        _delete_=True, type='ADSDataset', num_samples=10000, score_num_workers=4,
        dataset=dict(type='UnlabeledImageDataset', data_root='data/pool',  # any images
                     data_prefix=dict(img_path=''), pipeline=pool_train_pipeline),
        score_pipeline=[dict(type='LoadImageFromFile'),  # the zoo's test view
                        dict(type='Resize', scale=(2048, 512), keep_ratio=True),
                        dict(type='PackSegInputs')]))
default_hooks = dict(checkpoint=dict(max_keep_ckpts=3))
auto_scale_lr = dict(enable=False, base_batch_size=16)
