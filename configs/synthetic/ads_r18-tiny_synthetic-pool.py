# ADS over the synthetic open-world pool with the synthetic teacher (paper Sec. 3.3):
# the DFSS demo's selection, eps 500, for tools/ads_score.py (docs/synthetic.md).
#   python tools/generate_synthetic.py --out data/synthetic
#   python tools/train.py configs/synthetic/deeplabv3_r18-tiny_synthetic.py \
#       --work-dir work_dirs/teacher_synth
#   python tools/ads_score.py configs/synthetic/ads_r18-tiny_synthetic-pool.py \
#       --out work_dirs/ads_synth/scores.csv --plot work_dirs/ads_synth
# The paper's Table 3 comparison: --cfg-options train_dataloader.dataset.strategy=random
# (or confidence).
_base_ = ['./dfss_r18-tiny_to_mbv2-tiny_synthetic.py']
train_dataloader = dict(dataset=dict(num_samples=500))
