# Backbone swap: a DeepLabV3-R101 teacher distils a DeepLabV3-R18 student with the
# same DFSS recipe. In your own copy of deeplabv3_r50_to_mbv2_nyuv2.py the swap is
# the `teacher`/`student` lines; an inheriting config restates where they are used.
teacher = dict(cfg_path='configs/teachers/deeplabv3_r101-d8_nyuv2.py')
teacher_checkpoint = 'checkpoints/deeplabv3_r101-d8_nyuv2.pth'  # your trained teacher
student = dict(cfg_path='configs/students/deeplabv3_r18-d8_nyuv2.py')
_base_ = ['./deeplabv3_r50_to_mbv2_nyuv2.py']
model = dict(teacher=teacher, teacher_checkpoint=teacher_checkpoint, student=student)
train_dataloader = dict(dataset=dict(teacher=teacher, teacher_checkpoint=teacher_checkpoint))
