# The DFSS base (paper Sec. 3): the distiller and hooks (./distiller.py) and the ADS
# wrapper (Eq. 8-9) over a pool of unlabeled images. A config that inherits it names the
# teacher once, in `model`, and the pool in train_dataloader.dataset.dataset.
_base_ = ['./distiller.py']
train_dataloader = dict(
    batch_size=8,
    num_workers=2,
    persistent_workers=True,
    drop_last=True,  # ASPP's image pooling BN needs > 1 sample per GPU
    sampler=dict(type='SeededInfiniteSampler', shuffle=True),  # exact --resume
    dataset=dict(
        type='ADSDataset',
        dataset=dict(),  # the pool: a dataset of unlabeled images
        num_samples=10000,  # eps
        strategy='ads',  # 'ads' | 'random' | 'confidence'
        bn_layers='backbone',
        score_pipeline=None,  # the teacher config's test pipeline, else native size
        cache_dir='work_dirs/ads_cache',
        seed=0))
