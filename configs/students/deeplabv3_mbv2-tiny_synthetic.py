# DFSS student of the synthetic demo (model definition, read by DataFreeDistiller):
# the MobileNetV2-tiny architecture of ../synthetic/deeplabv3_mbv2-tiny_synthetic.py
# without its auxiliary head (distillation supervises the final logits only).
_base_ = ['../synthetic/deeplabv3_mbv2-tiny_synthetic.py']
model = dict(auxiliary_head=None)
