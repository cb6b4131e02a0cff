# Teacher: MMSeg's DeepLabV3-R50-D8 zoo model trained with labels on NYUv2 (13
# classes), DFAD's protocol (../_base_/datasets/nyuv2.py: mean = std = 127.5; train:
# resize short side 256, random crop 128, flip; test: resize short side 256).
# 20k iterations, batch 16 (4 GPUs x 4):
#   bash tools/dist_train.sh configs/teachers/deeplabv3_r50-d8_nyuv2.py 4
# ImageNet initialisation: MMSeg's base downloads open-mmlab://resnet50_v1c; nothing
# is downloaded here (pretrained=None): set `pretrained` to a local checkpoint.
_base_ = [
    'mmseg::_base_/models/deeplabv3_r50-d8.py',
    '../_base_/datasets/nyuv2.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_20k.py',
]
custom_imports = dict(imports=['mmseg_dfss'], allow_failed_imports=False)
num_classes = 13
pretrained = None
data_preprocessor = {{_base_.dfad_data_preprocessor}}
model = dict(
    data_preprocessor=data_preprocessor,
    pretrained=pretrained,
    decode_head=dict(num_classes=num_classes),
    auxiliary_head=dict(num_classes=num_classes))
train_dataloader = dict(batch_size=4)
