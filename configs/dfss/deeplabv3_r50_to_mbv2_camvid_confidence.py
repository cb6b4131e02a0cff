# Ablation (paper Table 3, CS): confidence sampling (DFND's rule on pixels: keep the
# lowest mean -log max softmax of the teacher), vanilla L1 distillation.
_base_ = ['./deeplabv3_r50_to_mbv2_camvid.py']
model = dict(distill_loss=dict(mode='vanilla'))
train_dataloader = dict(dataset=dict(strategy='confidence'))
