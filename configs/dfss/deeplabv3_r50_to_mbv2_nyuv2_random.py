# Ablation (paper Table 3, RS): random sampling of eps = 10K COCO images, vanilla L1
# distillation (no WDPD, as in the paper's sampling ablation).
_base_ = ['./deeplabv3_r50_to_mbv2_nyuv2.py']
model = dict(distill_loss=dict(mode='vanilla'))
train_dataloader = dict(dataset=dict(strategy='random'))
