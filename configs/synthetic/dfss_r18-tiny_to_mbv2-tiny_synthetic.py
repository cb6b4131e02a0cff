# DFSS on the synthetic demo: the R18-tiny room teacher distils the MobileNetV2-tiny
# student on the pool images ADS picks (no room image is trained on), validated on the
# rooms' test split (docs/synthetic.md).
#   python tools/generate_synthetic.py --out data/synthetic
#   python tools/train.py configs/synthetic/deeplabv3_r18-tiny_synthetic.py \
#       --work-dir work_dirs/teacher_synth
#   python tools/train.py configs/synthetic/dfss_r18-tiny_to_mbv2-tiny_synthetic.py
_base_ = ['../_base_/datasets/synthetic_scenes_eval.py', '../_base_/schedules/synthetic_2k.py',
          '../_base_/dfss/dfss.py']
model = dict(
    teacher=dict(cfg_path='configs/synthetic/deeplabv3_r18-tiny_synthetic.py'),
    teacher_checkpoint='work_dirs/teacher_synth/iter_2000.pth',
    student=dict(cfg_path='configs/students/deeplabv3_mbv2-tiny_synthetic.py'),
    data_preprocessor=dict(pad_val=0, seg_pad_val=255, size={{_base_.crop_size}}))
train_dataloader = dict(
    num_workers=0,  # tiny images: loaded in the main process
    persistent_workers=False,
    dataset=dict(
        num_samples=1000,  # eps, of the 2000-image default pool
        score_batch_size=32,  # scored as the teacher tests: native 96 px
        dataset=dict(type='SyntheticPoolDataset', data_root='data/synthetic/pool', pipeline=[
            dict(type='LoadImageFromFile'),  # the rooms' train augmentation, no labels
            dict(type='RandomResize', scale=(96, 96), ratio_range=(0.75, 1.25),
                 keep_ratio=True),
            dict(type='RandomCrop', crop_size={{_base_.crop_size}}),
            dict(type='RandomFlip', prob=0.5),
            dict(type='PackSegInputs')])))
