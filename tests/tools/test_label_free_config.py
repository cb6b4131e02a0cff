"""Label-free validation: the shipped variants (configs/label_free) are what
tools/label_free_config.py writes, follow their recipes, and a variant trains with
save_best='mIoU' on teacher labels."""
import glob
import json
import os.path as osp

import pytest
from mmengine.config import Config

from mmseg.registry import DATASETS

from mmseg_dfss.core.shared_teacher import resolve_shared
from mmseg_dfss.core.teacher_defaults import teacher_metainfo, teacher_test_pipeline
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
    """Each variant is the tool's text, and once resolved it labels with the recipe's
    teacher, evaluation pipeline and classes the ADS ranks after the training eps."""
    folder = osp.join(repo_root, 'configs', 'label_free')
    assert sorted(osp.basename(p) for p in glob.glob(osp.join(folder, '*.py'))) == \
        sorted(RECIPES)
    for name, (base, num) in RECIPES.items():
        path = osp.join(folder, name)
        recipe = osp.normpath(osp.join(folder, base))
        assert open(path).read() == label_free_config_text(recipe, num_images=num,
                                                           base_path=base), name
        cfg, ref = resolve_shared(Config.fromfile(path)), Config.fromfile(recipe)
        val = cfg.val_dataloader.dataset
        assert val.type == 'TeacherLabeledDataset'
        assert val.teacher == ref.model.teacher
        assert val.teacher_checkpoint == ref.model.teacher_checkpoint
        ref_val = ref.val_dataloader.dataset
        pipeline = val.get('pipeline') or teacher_test_pipeline(val.teacher)[0]
        assert pipeline == ref_val.pipeline, name  # labelled and scored as the recipe's
        classes = teacher_metainfo(val.teacher)[0]['classes']
        assert tuple(classes) == DATASETS.get(ref_val.type).METAINFO['classes'], name
        held = val.dataset
        assert held.type == 'ADSHeldOutDataset' and held.num_samples == num
        train = resolve_shared(Config.fromfile(recipe)).train_dataloader.dataset
        assert held.num_skipped == train.num_samples  # the images after the training eps
        for key in ('dataset', 'teacher', 'teacher_checkpoint', 'strategy', 'score_pipeline',
                    'cache_dir', 'seed'):
            assert held.get(key) == train.get(key), (name, key)
        assert cfg.default_hooks.checkpoint.save_best == 'mIoU'
        assert cfg.train_dataloader == train_of(recipe) and cfg.model == ref.model
        code = [ln for ln in open(path) if ln.strip() and not ln.lstrip().startswith('#')]
        assert len(code) <= 15, name


def train_of(recipe):
    return resolve_shared(Config.fromfile(recipe)).train_dataloader


def test_a_variant_of_a_recipe_whose_val_set_is_not_the_teacher_s_states_it(tmp_path,
                                                                           repo_root):
    """A recipe validated with another pipeline or other classes than its teacher's
    config keeps them in its variant."""
    synthetic = osp.join(repo_root, 'configs', 'synthetic',
                         'dfss_r18-tiny_to_mbv2-tiny_synthetic.py')
    recipe = tmp_path / 'recipe.py'
    recipe.write_text(f'_base_ = [{synthetic!r}]\n'
                      "val_dataloader = dict(dataset=dict(type='CamVidDataset', pipeline=["
                      "dict(type='LoadImageFromFile'), dict(type='Resize', scale=(32, 32)), "
                      "dict(type='LoadAnnotations'), dict(type='PackSegInputs')]))\n")
    out = tmp_path / 'variant.py'
    out.write_text(label_free_config_text(str(recipe)))
    val = Config.fromfile(str(out)).val_dataloader.dataset
    assert val.pipeline[1] == dict(type='Resize', scale=(32, 32))
    assert val.metainfo_from == 'CamVidDataset'


@pytest.mark.slow
def test_a_variant_trains_and_keeps_the_best_agreement(tmp_path, synthetic_root,
                                                       teacher_ckpt, tool):
    work = str(tmp_path / 'work')
    ads = [f'dataset.data_root={synthetic_root}/pool', f'cache_dir={work}/ads_cache',
           'score_batch_size=16', 'num_samples=16']
    # the teacher's checkpoint once: the ADS wrapper, the held-out set and the labels
    # take it; the held-out set takes the pool, eps (num_skipped) and cache from ADS
    tool('tools/train.py', 'configs/label_free/dfss_r18-tiny_to_mbv2-tiny_synthetic_label-free.py',
         '--work-dir', work, '--cfg-options',
         f'model.teacher_checkpoint={teacher_ckpt}',
         *[f'train_dataloader.dataset.{o}' for o in ads], 'train_dataloader.batch_size=2',
         'val_dataloader.dataset.dataset.num_samples=6',
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
    """--allow-random-teacher sets the distiller's opt-in, which the resolver gives to
    the held-out and teacher-labelled sets (they name no teacher of their own)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location('train_tool',
                                                  osp.join(repo_root, 'tools', 'train.py'))
    train_tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_tool)
    path = osp.join(repo_root,
                    'configs/label_free/dfss_r18-tiny_to_mbv2-tiny_synthetic_label-free.py')
    cfg = Config.fromfile(path)
    opts = [o.split('=') for o in train_tool.random_teacher_options(path)]
    assert all(v == 'True' for _, v in opts)
    cfg.merge_from_dict({k: True for k, _ in opts})
    val = resolve_shared(cfg).val_dataloader.dataset
    assert val.allow_random_teacher is True and val.dataset.allow_random_teacher is True


# ------------------------------------------------ every shipped variant through a validation
def held_out_options(recipe_options, num_samples):
    """The held-out set's size; everything else (pool, eps, teacher, cache) it takes
    from the shrunk recipe through resolve_shared."""
    return [f'val_dataloader.dataset.dataset.num_samples={num_samples}']


def variant_options(name, tmp_path, work):
    """--cfg-options that shrink a shipped label-free variant as its recipe's own tests
    shrink the recipe (tests/tools/test_dfss_configs.py, test_zoo_recipes.py)."""
    if 'cityscapes' in name or 'ade20k' in name:
        import test_zoo_recipes as zoo
        cfg = zoo.load('cityscapes' if 'cityscapes' in name else 'ade20k')
        ckpt = str(tmp_path / 'teacher.pth')
        zoo.save_tiny_teacher(cfg, ckpt)
        pool = zoo.make_pool(str(tmp_path / 'pool'))  # 6 images: eps 4, 2 held out
        base = zoo.tiny_options('unused', pool, work, ckpt)
        return base, held_out_options(base, 2)
    import test_dfss_configs as dfss
    root = tmp_path / 'layouts'
    layouts = dict(nyuv2=dfss.make_nyuv2_toolkit(str(root / 'nyuv2'), train=(1, 3, 4, 6)),
                   camvid=dfss.make_camvid(str(root / 'camvid'),
                                           counts=(('train', 4), ('val', 2), ('test', 2))),
                   coco=dfss.make_coco(str(root / 'coco')), root=str(root))
    recipe = Config.fromfile(osp.join(dfss.REPO, 'configs', 'label_free', name))
    base = dfss.tiny_options(recipe, layouts, work)  # a COCO pool of 5: eps 4, 1 held out
    return base, held_out_options(base, 1)


@pytest.mark.slow
@pytest.mark.parametrize('name', sorted(n for n in RECIPES if 'synthetic' not in n))
def test_a_shipped_variant_validates_on_teacher_labels(name, tmp_path, tool):
    """ADE20K's evaluation pipeline reduces zero labels; every variant must still
    validate (the synthetic one: test_a_variant_trains_and_keeps_the_best_agreement)."""
    work = str(tmp_path / 'work')
    base, held = variant_options(name, tmp_path, work)
    base = [o for o in base if not o.startswith('val_dataloader.dataset.data_root=')]
    proc = tool('tools/train.py', osp.join('configs', 'label_free', name), '--work-dir', work,
                '--cfg-options', *base, *held,
                f'val_dataloader.dataset.cache_dir={work}/teacher_labels')
    scalars = glob.glob(osp.join(work, '*', 'vis_data', 'scalars.json'))
    vals = [r for p in scalars for r in map(json.loads, open(p)) if 'mIoU' in r]
    assert len(vals) == 1 and 0 <= vals[0]['mIoU'] <= 100, proc.stdout[-3000:]
    labels = glob.glob(osp.join(work, 'teacher_labels', 'teacher-*', '*.png'))
    assert len(labels) == (2 if 'cityscapes' in name or 'ade20k' in name else 1)
    log = proc.stdout + proc.stderr
    assert 'agreement with the teacher' in log


def test_a_variant_of_a_300_class_recipe_ignores_no_class(tmp_path, repo_root):
    synthetic = osp.join(repo_root, 'configs', 'synthetic',
                         'dfss_r18-tiny_to_mbv2-tiny_synthetic.py')
    recipe = tmp_path / 'recipe300.py'
    classes = tuple(f'c{k}' for k in range(300))
    recipe.write_text(f'_base_ = [{synthetic!r}]\n'
                      f'val_dataloader = dict(dataset=dict(metainfo=dict(classes={classes!r})))\n')
    out = tmp_path / 'variant.py'
    out.write_text(label_free_config_text(str(recipe)))
    assert Config.fromfile(str(out)).val_evaluator.ignore_index == 300
    seven = tmp_path / 'variant7.py'
    seven.write_text(label_free_config_text(synthetic))
    assert Config.fromfile(str(seven)).val_evaluator.get('ignore_index', 255) == 255
