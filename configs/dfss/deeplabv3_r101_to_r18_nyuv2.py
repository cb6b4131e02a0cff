# Backbone swap: a DeepLabV3-R101 teacher distils a DeepLabV3-R18 student with the NYUv2
# DFSS recipe; only the models change (docs/recipes.md).
_base_ = ['./deeplabv3_r50_to_mbv2_nyuv2.py']
model = dict(
    teacher=dict(cfg_path='configs/teachers/deeplabv3_r101-d8_nyuv2.py'),
    teacher_checkpoint='checkpoints/deeplabv3_r101-d8_nyuv2.pth',  # your trained teacher
    student=dict(cfg_path='configs/students/deeplabv3_r18-d8_nyuv2.py'))
