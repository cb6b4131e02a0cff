# DFSS as in the paper (DFAD's protocol): eps of COCO train2017 selected by ADS, inputs
# in [-1, 1] at 128 px, 150 epochs of batch 192 = 8 GPUs x 24 (../schedules/dfss_150e.py).
_base_ = ['./dfss.py', '../datasets/coco_pool.py', '../schedules/dfss_150e.py']
# normalisation: the teacher's (DataFreeDistiller fills in type, mean, std, channel order)
model = dict(data_preprocessor=dict(pad_val=0, seg_pad_val=255, size=(128, 128)))
train_dataloader = dict(
    batch_size=24,  # per GPU
    num_workers=4,
    sampler=dict(type='DefaultSampler'),
    dataset=dict(dataset={{_base_.coco_pool}}, score_pipeline={{_base_.pool_score_pipeline}},
                 score_batch_size=32, score_num_workers=4))
log_processor = dict(by_epoch=True)
