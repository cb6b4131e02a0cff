# Backbone-swap student: MMSeg's DeepLabV3-R18-D8 zoo model (as in
# mmseg::deeplabv3/deeplabv3_r18-d8_*: ResNetV1c-18, head 512 -> 128 channels) with
# 13 NYUv2 classes, mean = std = 127.5 and no auxiliary head.
# pretrained=None (the zoo config downloads open-mmlab://resnet18_v1c): set it to a
# local ImageNet checkpoint you have.
_base_ = ['./deeplabv3_mbv2-d8_nyuv2.py']
model = dict(
    backbone=dict(
        _delete_=True,
        type='ResNetV1c',
        depth=18,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        dilations=(1, 1, 2, 4),
        strides=(1, 2, 1, 1),
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        norm_eval=False,
        style='pytorch',
        contract_dilation=True),
    decode_head=dict(in_channels=512, channels=128))
