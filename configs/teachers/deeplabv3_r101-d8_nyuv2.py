# Backbone-swap teacher: MMSeg's DeepLabV3-R101-D8 zoo model (the R50 teacher with
# depth 101, as mmseg::deeplabv3/deeplabv3_r101-d8_*) on NYUv2. pretrained=None
# (the zoo config downloads open-mmlab://resnet101_v1c): set a local checkpoint.
_base_ = ['./deeplabv3_r50-d8_nyuv2.py']
model = dict(backbone=dict(depth=101))
