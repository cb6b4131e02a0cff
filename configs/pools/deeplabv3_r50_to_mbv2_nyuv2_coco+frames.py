# DFSS on NYUv2 with two open-world pools combined: COCO train2017 and a folder of
# your own unlabeled frames (paper Sec. 3.2: a larger, richer pool is likelier to
# hold images close to the teacher's data). ADS scores each pool on its own (through
# the score cache, so scores from tools/compare_pools.py are reused) and keeps the
# eps lowest d over both; the log and ADSDataset.source_counts() say how many come
# from each pool. Choose the pools first with
#   python tools/compare_pools.py configs/dfss/deeplabv3_r50_to_mbv2_nyuv2.py \
#       --pools coco=train_dataloader.dataset.dataset frames=data/my_frames --out pools
_base_ = ['../dfss/deeplabv3_r50_to_mbv2_nyuv2.py']
frames_pool = dict(
    type='UnlabeledImageDataset',
    data_root='data/my_frames',  # images found recursively; or ann_file='list.txt'
    pipeline={{_base_.pool_train_pipeline}})
train_dataloader = dict(
    dataset=dict(
        dataset=dict(
            _delete_=True,
            type='ConcatDataset',
            datasets=[{{_base_.coco_pool}}, frames_pool]),
        source_names=['coco', 'frames']))
