# CamVid, 11 classes (SegNet layout, void 11 -> 255), under DFAD's protocol as NYUv2
# (./nyuv2_eval.py: inputs in [-1, 1], train: resize short side 256, random crop 128,
# flip; test on `test`: resize short side 256, predictions scored at full size).
# No training data loader: DFSS trains on pool images (../dfss/); ./camvid.py adds the
# labelled one (teachers, KD on the original data). See docs/datasets.md.
_base_ = ['./nyuv2_eval.py']
dataset_type = 'CamVidDataset'
data_root = 'data/camvid'
val_dataloader = dict(dataset=dict(_delete_=True, type=dataset_type, data_root=data_root,
                                   split='test', pipeline={{_base_.test_pipeline}}))
test_dataloader = val_dataloader
