# Teacher: MMSeg's DeepLabV3-R50-D8 zoo model trained with labels on CamVid (11
# classes, train split; tested on test), DFAD's protocol (../_base_/datasets/camvid.py).
#   bash tools/dist_train.sh configs/teachers/deeplabv3_r50-d8_camvid.py 4
# pretrained=None: set a local ImageNet checkpoint (see the NYUv2 teacher).
_base_ = [
    'mmseg::_base_/models/deeplabv3_r50-d8.py',
    '../_base_/datasets/camvid.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_20k.py',
]
custom_imports = dict(imports=['mmseg_dfss'], allow_failed_imports=False)
num_classes = 11
pretrained = None
data_preprocessor = {{_base_.dfad_data_preprocessor}}
model = dict(
    data_preprocessor=data_preprocessor,
    pretrained=pretrained,
    decode_head=dict(num_classes=num_classes),
    auxiliary_head=dict(num_classes=num_classes))
train_dataloader = dict(batch_size=4)
