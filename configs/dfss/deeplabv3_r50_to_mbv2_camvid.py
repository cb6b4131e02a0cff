# DFSS on CamVid (paper Table 1): a DeepLabV3-R50 teacher trained on CamVid distils a
# DeepLabV3-MobileNetV2 student on the 10K COCO images ADS selects, validated on CamVid
# test (docs/recipes.md).
#   python tools/train.py configs/dfss/deeplabv3_r50_to_mbv2_camvid.py
#   bash tools/dist_train.sh configs/dfss/deeplabv3_r50_to_mbv2_camvid.py 8   # paper: 8 x 24
_base_ = ['../_base_/datasets/camvid_eval.py', '../_base_/dfss/dfss_coco_dfad.py']
model = dict(
    teacher=dict(cfg_path='configs/teachers/deeplabv3_r50-d8_camvid.py'),
    teacher_checkpoint='checkpoints/deeplabv3_r50-d8_camvid.pth',  # your trained teacher
    student=dict(cfg_path='configs/students/deeplabv3_mbv2-d8_camvid.py'))
