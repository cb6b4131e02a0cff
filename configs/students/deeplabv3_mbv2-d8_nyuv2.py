# DFSS student (model definition, read by DataFreeDistiller): MMSeg's DeepLabV3
# MobileNetV2-D8 zoo model (mmseg::mobilenet_v2/mobilenet-v2-d8_deeplabv3_*: MMSeg's
# DeepLabV3-R50-D8 model with its backbone swapped for MobileNetV2, output stride 8)
# with 13 NYUv2 classes, DFAD's normalisation (mean = std = 127.5) and no auxiliary
# head (distillation supervises the final logits only).
# Head width: the ASPP head's `channels` (MMSeg's default 512: 18.4M parameters) is
# set to 112, the width at which the model has the paper's student size: 3.42M
# parameters (mmengine get_model_complexity_info; docs/distillation.md).
# ImageNet initialisation: the zoo config downloads mmcls://mobilenet_v2; nothing is
# downloaded here (pretrained=None): set `pretrained` below to a local MobileNetV2
# ImageNet checkpoint you have.
_base_ = ['mmseg::_base_/models/deeplabv3_r50-d8.py', '../_base_/datasets/nyuv2.py']
num_classes = 13
head_channels = 112
pretrained = None
data_preprocessor = {{_base_.dfad_data_preprocessor}}
model = dict(
    data_preprocessor=data_preprocessor,
    pretrained=pretrained,
    backbone=dict(
        _delete_=True,
        type='MobileNetV2',
        widen_factor=1.,
        strides=(1, 2, 2, 1, 1, 1, 1),
        dilations=(1, 1, 1, 2, 2, 4, 4),
        out_indices=(1, 2, 4, 6),
        norm_cfg=dict(type='SyncBN', requires_grad=True)),
    decode_head=dict(in_channels=320, channels=head_channels, num_classes=num_classes),
    auxiliary_head=None)
