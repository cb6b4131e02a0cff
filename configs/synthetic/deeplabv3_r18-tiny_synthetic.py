# Teacher for the synthetic demo: MMSeg's DeepLabV3-R50-D8 zoo model shrunk to a
# ResNet-18 with 16 base channels (CPU-sized), trained with labels on the rooms.
_base_ = [
    'mmseg::_base_/models/deeplabv3_r50-d8.py',
    'mmseg::_base_/default_runtime.py',
    '../_base_/datasets/synthetic_scenes.py',
    '../_base_/schedules/synthetic_2k.py',
]
custom_imports = dict(imports=['mmseg_dfss'], allow_failed_imports=False)
num_classes = 7
data_preprocessor = dict(
    size={{_base_.crop_size}}, mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5])
model = dict(
    data_preprocessor=data_preprocessor,
    pretrained=None,
    backbone=dict(depth=18, stem_channels=16, base_channels=16),
    decode_head=dict(
        in_channels=128, channels=32, dilations=(1, 6, 12, 18), num_classes=num_classes),
    auxiliary_head=dict(in_channels=64, channels=16, num_classes=num_classes))
