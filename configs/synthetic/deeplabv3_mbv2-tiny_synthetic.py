# Student architecture of the synthetic demo trained WITH labels (the upper
# reference): MMSeg's DeepLabV3-MobileNetV2 zoo model at width 0.25.
_base_ = ['./deeplabv3_r18-tiny_synthetic.py']
model = dict(
    backbone=dict(
        _delete_=True,
        type='MobileNetV2',
        widen_factor=0.25,
        strides=(1, 2, 2, 1, 1, 1, 1),
        dilations=(1, 1, 1, 2, 2, 4, 4),
        out_indices=(1, 2, 4, 6),
        norm_cfg=dict(type='SyncBN', requires_grad=True)),
    decode_head=dict(in_channels=80, channels=32),
    auxiliary_head=dict(in_channels=24, channels=16))
