# Teacher: MMSeg's DeepLabV3-R50-D8 zoo model trained with labels on CamVid (11
# classes, train split; tested on test), DFAD's protocol. See the NYUv2 teacher.
#   bash tools/dist_train.sh configs/teachers/deeplabv3_r50-d8_camvid.py 4
_base_ = ['./deeplabv3_r50-d8_nyuv2.py']
num_classes = 11
dataset_type = 'CamVidDataset'
data_root = 'data/camvid'
model = dict(
    decode_head=dict(num_classes=num_classes), auxiliary_head=dict(num_classes=num_classes))
train_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
val_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
test_dataloader = val_dataloader
