"""Label-free validation: the shipped variants (configs/label_free) are what
tools/label_free_config.py writes, follow their recipes, and a variant trains with
save_best='mIoU' on teacher labels."""
import glob
import json
import os.path as osp

import pytest
from mmengine.config import Config

from mmseg_dfss.utils.label_free import label_free_config_text

RECIPES = {
    'deeplabv3_r50_to_mbv2_cityscapes_label-free.py':
        ('../dfss/deeplabv3_r50_to_mbv2_cityscapes.py', 500),
    'deeplabv3_r50_to_mbv2_ade20k_label-free.py': ('../dfss/deeplabv3_r50_to_mbv2_ade20k.py', 500),
    'deeplabv3_r50_to_mbv2_nyuv2_label-free.py': ('../dfss/deeplabv3_r50_to_mbv2_nyuv2.py', 500),
    'deeplabv3_r50_to_mbv2_camvid_label-free.py': ('../dfss/deeplabv3_r50_to_mbv2_camvid.py', 500),
    'dfss_r18-tiny_to_mbv2-tiny_synthetic_label-free.py':
        ('../synthetic/dfss_r18-tiny_to_mbv2-tiny_synthetic.py', 200),
}


def test_shipped_variants_are_generated_and_follow_their_recipes(repo_root):
    folder = osp.join(repo_root, 'configs', 'label_free')
    assert sorted(osp.basename(p) for p in glob.glob(osp.join(folder, '*.py'))) == \
        sorted(RECIPES)
    for name, (base, num) in RECIPES.items():
        path = osp.join(folder, name)
        recipe = osp.normpath(osp.join(folder, base))
        assert open(path).read() == label_free_config_text(recipe, num_images=num,
                                                           base_path=base), name
        cfg, ref = Config.fromfile(path), Config.fromfile(recipe)
        val = cfg.val_dataloader.dataset
        assert val.type == 'TeacherLabeledDataset'
        assert val.teacher == ref.model.teacher
        assert val.teacher_checkpoint == ref.model.teacher_checkpoint
        assert val.pipeline == ref.val_dataloader.dataset.pipeline
        assert val.metainfo_from == ref.val_dataloader.dataset.type
        held = val.dataset
        assert held.type == 'ADSHeldOutDataset' and held.num_samples == num
        train = ref.train_dataloader.dataset
        assert held.num_skipped == train.num_samples  # the images after the training eps
        for key in ('dataset', 'teacher', 'teacher_checkpoint', 'strategy', 'score_pipeline',
                    'cache_dir', 'seed'):
            assert held[key] == train[key], (name, key)
        assert cfg.default_hooks.checkpoint.save_best == 'mIoU'
        assert cfg.train_dataloader == ref.train_dataloader and cfg.model == ref.model


@pytest.mark.slow
def test_a_variant_trains_and_keeps_the_best_agreement(tmp_path, synthetic_root,
                                                       teacher_ckpt, tool):
    work = str(tmp_path / 'work')
    ads = [f'teacher_checkpoint={teacher_ckpt}', f'dataset.data_root={synthetic_root}/pool',
           f'cache_dir={work}/ads_cache', 'score_batch_size=16']
    tool('tools/train.py', 'configs/label_free/dfss_r18-tiny_to_mbv2-tiny_synthetic_label-free.py',
         '--work-dir', work, '--cfg-options',
         f'model.teacher_checkpoint={teacher_ckpt}',
         *[f'train_dataloader.dataset.{o}' for o in ads], 'train_dataloader.dataset.num_samples=16',
         'train_dataloader.batch_size=2',
         *[f'val_dataloader.dataset.dataset.{o}' for o in ads],
         'val_dataloader.dataset.dataset.num_skipped=16',
         'val_dataloader.dataset.dataset.num_samples=6',
         f'val_dataloader.dataset.teacher_checkpoint={teacher_ckpt}',
         f'val_dataloader.dataset.cache_dir={work}/teacher_labels',
         f'test_dataloader.dataset.data_root={synthetic_root}/scenes',
         'train_cfg.max_iters=4', 'train_cfg.val_interval=2', 'param_scheduler.0.end=4',
         'default_hooks.checkpoint.interval=2', 'default_hooks.logger.interval=1',
         'default_hooks.visualization.draw=False')
    scalars = sorted(glob.glob(osp.join(work, '*', 'vis_data', 'scalars.json')))[-1]
    vals = [r for r in map(json.loads, open(scalars)) if 'mIoU' in r]
    assert [r['step'] for r in vals] == [2, 4] and all(0 <= r['mIoU'] <= 100 for r in vals)
    best = max(vals, key=lambda r: (r['mIoU'], -r['step']))
    assert glob.glob(osp.join(work, f'best_mIoU_iter_{best["step"]}.pth'))
    log = open(sorted(glob.glob(osp.join(work, '*', '*.log')))[-1]).read()
    assert 'agreement with the teacher' in log and 'not accuracy' in log
    assert len(glob.glob(osp.join(work, 'teacher_labels', 'teacher-*', '*.png'))) == 6


def test_allow_random_teacher_reaches_the_label_free_val_set(repo_root):
    import importlib.util
    spec = importlib.util.spec_from_file_location('train_tool',
                                                  osp.join(repo_root, 'tools', 'train.py'))
    train_tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_tool)
    opts = train_tool.random_teacher_options(osp.join(
        repo_root, 'configs/label_free/dfss_r18-tiny_to_mbv2-tiny_synthetic_label-free.py'))
    assert {'val_dataloader.dataset.allow_random_teacher=True',
            'val_dataloader.dataset.dataset.allow_random_teacher=True'} <= set(opts)
