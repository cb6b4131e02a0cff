# DFSS with eps = 20K selected COCO images (paper Table 1).
_base_ = ['./deeplabv3_r50_to_mbv2_camvid.py']
train_dataloader = dict(dataset=dict(num_samples=20000))
