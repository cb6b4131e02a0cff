# DFSS with eps = 15K selected COCO images (paper Table 1).
_base_ = ['./deeplabv3_r50_to_mbv2_nyuv2.py']
train_dataloader = dict(dataset=dict(num_samples=15000))
