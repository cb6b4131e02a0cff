# Ablation (paper Table 4, WDD): ADS sampling, weighted distribution distillation
# (alpha_i = w_i for the whole training, Eq. 10-11; no progressive schedule).
_base_ = ['./deeplabv3_r50_to_mbv2_nyuv2.py']
model = dict(distill_loss=dict(mode='wdd'))
