# Baseline (paper Table 1, "Knowledge Distillation, original data"): the same teacher,
# student, schedule and L1 distillation (vanilla), but on CamVid's own training images
# instead of selected pool images (their labels are loaded by the pipeline, never used).
#   python tools/train.py configs/kd/deeplabv3_r50_to_mbv2_camvid_original-data.py
_base_ = ['../dfss/deeplabv3_r50_to_mbv2_camvid.py']
model = dict(distill_loss=dict(mode='vanilla'))
train_dataloader = dict(dataset=dict(_delete_=True, type={{_base_.dataset_type}}, split='train',
                                     data_root={{_base_.data_root}},
                                     pipeline={{_base_.train_pipeline}}))
