# DFSS student for CamVid: the NYUv2 student with CamVid's 11 classes.
_base_ = ['./deeplabv3_mbv2-d8_nyuv2.py']
num_classes = 11
model = dict(decode_head=dict(num_classes=num_classes))
