# Ablation (paper Tables 3-4, ADS): ADS sampling with vanilla L1 distillation
# (alpha_i = 1 for every sample).
_base_ = ['./deeplabv3_r50_to_mbv2_camvid.py']
model = dict(distill_loss=dict(mode='vanilla'))
