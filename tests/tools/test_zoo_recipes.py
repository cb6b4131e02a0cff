"""The model-zoo recipes (configs/dfss/*_cityscapes.py, *_ade20k.py): a zoo teacher whose
checkpoint is the installed MMSeg's metafile Weights (``teacher_checkpoint='metafile'``,
no host written in the recipe) distils a zoo student on an unlabeled image folder and is
validated with MMSeg's own Cityscapes/ADE20K datasets.

Each recipe runs as a user runs it, through tools/train.py, shrunk with --cfg-options
only: a random-weight checkpoint of the shrunk zoo teacher, under the metafile URL's file
name, is served over HTTP from 127.0.0.1 and given as an explicit URL, the pool is a tiny
image folder, the val set a fabricated Cityscapes/ADE20K layout; 2 iterations, validation, student export, then
MMSeg's own tools/test.py (this plugin unimportable) on the exported student."""
import copy
import glob
import json
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
from cli_utils import flat_options
import torch
import yaml
from checkpoint_server import CheckpointServer
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from PIL import Image
from mmseg_dfss.core.safe_load import download_cache_path
from mmseg_dfss.core.shared_teacher import resolve_shared
from mmseg_dfss.models.data_free_distiller import distiller_data_preprocessor

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
RECIPES = {
    'cityscapes': 'configs/dfss/deeplabv3_r50_to_mbv2_cityscapes.py',
    'ade20k': 'configs/dfss/deeplabv3_r50_to_mbv2_ade20k.py',
}
# the zoo's settings each recipe must keep: dataset class, crop (H, W), iterations
ZOO = {
    'cityscapes': dict(dataset='CityscapesDataset', crop=(512, 1024), max_iters=80000,
                       classes=19),
    'ade20k': dict(dataset='ADE20KDataset', crop=(512, 512), max_iters=160000, classes=150),
}
TINY_CROP = (32, 64)  # H, W of the pool crops and the preprocessor in the smoke runs
TINY_TEST_SCALE = (128, 64)  # the zoo's test Resize, shrunk (short side 64)
# a ResNet-18 of width 8 in the zoo DeepLabV3-R50 config; the zoo MobileNetV2 at 1/4 width
TEACHER_TINY = dict(backbone=dict(depth=18, stem_channels=8, base_channels=8),
                    decode_head=dict(in_channels=64, channels=8),
                    auxiliary_head=dict(in_channels=32, channels=8),
                    data_preprocessor=dict(size=TINY_CROP))
STUDENT_TINY = dict(pretrained=None, backbone=dict(widen_factor=0.25),
                    decode_head=dict(in_channels=80, channels=8),
                    auxiliary_head=dict(in_channels=24, channels=8))
# runs a script with mmseg_dfss unimportable: any `import mmseg_dfss` raises
PLAIN = 'import sys, runpy; sys.modules["mmseg_dfss"] = None; sys.argv = sys.argv[1:]; ' \
        'runpy.run_path(sys.argv[0], run_name="__main__")'


def mmseg_configs():
    import mmseg
    return osp.join(osp.dirname(mmseg.__file__), '.mim', 'configs')


def metafile_entry(cfg_path):
    """The entry of MMSeg's metafile.yaml that lists the zoo config ``mmseg::<cfg>``."""
    rel = cfg_path.split('::', 1)[1]
    with open(osp.join(mmseg_configs(), osp.dirname(rel), 'metafile.yaml')) as f:
        models = yaml.safe_load(f)['Models']
    found = [m for m in models if m['Config'] == f'configs/{rel}']
    assert len(found) == 1, f'{cfg_path} is not (once) in its metafile'
    return found[0]


def unscoped(obj):
    """A config value without the ``_scope_`` keys MMEngine adds to ``pkg::`` bases."""
    if isinstance(obj, dict):
        return {k: unscoped(v) for k, v in obj.items() if k != '_scope_'}
    if isinstance(obj, (list, tuple)):
        return [unscoped(v) for v in obj]
    return obj


def load(name):
    return Config.fromfile(osp.join(REPO, RECIPES[name]))


# --------------------------------------------------------------- fabricated data
def _rgb(seed, hw):
    return np.random.default_rng(seed).integers(0, 256, (*hw, 3), dtype=np.uint8)


def _labels(values, hw, shift):
    values = np.asarray(values, np.uint8)
    return values[(np.arange(hw[0] * hw[1]) + shift) % len(values)].reshape(hw)


def _save(path, array, **kw):
    os.makedirs(osp.dirname(path), exist_ok=True)
    Image.fromarray(array).save(path, **kw)


def make_cityscapes_val(root):
    """``leftImg8bit/val/<city>/*_leftImg8bit.png`` + ``gtFine/val/<city>/
    *_gtFine_labelTrainIds.png`` (train ids 0..18 and 255), 2 cities, 32x64."""
    for k, (city, frame) in enumerate([('frankfurt', '000000_000294'),
                                       ('lindau', '000000_000019')]):
        stem = f'{city}_{frame}'
        _save(osp.join(root, 'leftImg8bit', 'val', city, f'{stem}_leftImg8bit.png'),
              _rgb(k, (32, 64)))
        _save(osp.join(root, 'gtFine', 'val', city, f'{stem}_gtFine_labelTrainIds.png'),
              _labels(list(range(19)) + [255], (32, 64), k))
    return root


def make_ade20k_val(root):
    """``images/validation/*.jpg`` + ``annotations/validation/*.png`` (0 = other,
    1..150), 48x64."""
    for k in range(2):
        stem = f'ADE_val_{k + 1:08d}'
        _save(osp.join(root, 'images', 'validation', f'{stem}.jpg'), _rgb(10 + k, (48, 64)),
              quality=95)
        _save(osp.join(root, 'annotations', 'validation', f'{stem}.png'),
              _labels(range(151), (48, 64), 7 * k))
    return root


def make_pool(root):
    """6 unlabeled images, jpg and png, nested folders, landscape and portrait."""
    sizes = [(40, 60), (48, 48), (60, 40), (36, 90), (50, 70), (44, 66)]
    for k, hw in enumerate(sizes):
        ext = 'jpg' if k % 2 else 'png'
        _save(osp.join(root, f'set{k % 2}', f'img_{k}.{ext}'), _rgb(100 + k, hw))
    return root


# --------------------------------------------------------------- the smoke run
def tiny_options(val_root, pool, work, url):
    """Points a recipe at the fabricated data and shrinks it: the same shrunk teacher in
    the distiller and the ADS wrapper, 32x64 crops = the preprocessor size, eps 4 of 6,
    batch 2, 2 iterations, validation at iteration 2 on the tiny val set."""
    h, w = TINY_CROP
    opts = [f'model.teacher_checkpoint={url}',  # the ADS wrapper takes the model's teacher
            *flat_options('model.teacher', TEACHER_TINY),
            *flat_options('model.student', STUDENT_TINY),
            f'model.data_preprocessor.size=({h},{w})',
            f'train_dataloader.dataset.dataset.data_root={pool}',
            f'train_dataloader.dataset.dataset.pipeline.1.scales=[{w},{w + 16}]',
            f'train_dataloader.dataset.dataset.pipeline.2.crop_size=({h},{w})',
            'train_dataloader.dataset.num_samples=4',
            f'train_dataloader.dataset.cache_dir={work}/ads_cache',
            'train_dataloader.dataset.score_batch_size=2',
            'train_dataloader.dataset.score_num_workers=0',
            'train_dataloader.dataset.score_pipeline.1.scale=(128,64)',
            'train_dataloader.batch_size=2', 'train_dataloader.num_workers=0',
            'train_dataloader.persistent_workers=False',
            'train_cfg.max_iters=2', 'train_cfg.val_interval=2', 'param_scheduler.0.end=2',
            'default_hooks.checkpoint.interval=2', 'default_hooks.logger.interval=1',
            'default_hooks.visualization.draw=False']
    for loader in ('val_dataloader', 'test_dataloader'):
        opts += [f'{loader}.dataset.data_root={val_root}',
                 f'{loader}.dataset.pipeline.1.scale=(128,64)',
                 f'{loader}.num_workers=0', f'{loader}.persistent_workers=False']
    return opts


def save_tiny_teacher(cfg, path):
    """A random-weight checkpoint of the recipe's zoo teacher, shrunk as in the run."""
    from mmseg.registry import MODELS

    from mmseg_dfss.core.teacher import load_model_config, weights_digest
    torch.manual_seed(0)
    spec = Config._merge_a_into_b(copy.deepcopy(TEACHER_TINY), cfg.model.teacher.to_dict())
    model = revert_sync_batchnorm(MODELS.build(load_model_config(spec)))
    torch.save(dict(state_dict=model.state_dict()), path)
    return weights_digest(model)


def plain_mmseg_test(config, checkpoint, work, options):
    """MMSeg's own tools/test.py with this plugin unimportable; its metrics json."""
    from mmseg_dfss.utils import find_mmseg_tool
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    env.update(OMP_NUM_THREADS='1')
    proc = subprocess.run([sys.executable, '-c', PLAIN, find_mmseg_tool('test.py'), config,
                           checkpoint, '--work-dir', work, '--cfg-options', *options],
                          cwd=osp.dirname(work), env=env, capture_output=True, text=True,
                          timeout=600)
    if proc.returncode != 0:
        pytest.fail(f'plain MMSeg test failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}')
    found = sorted(glob.glob(osp.join(work, '*', '*.json')))
    assert found, 'tools/test.py wrote no metrics json'
    with open(found[-1]) as f:
        return json.load(f)


def val_scalars(work):
    """The validation metrics the training run logged (vis_data/scalars.json)."""
    rows = []
    for path in glob.glob(osp.join(work, '*', 'vis_data', 'scalars.json')):
        with open(path) as f:
            rows += [json.loads(line) for line in f if line.strip()]
    return [r for r in rows if 'mIoU' in r]


@pytest.mark.slow
@pytest.mark.parametrize('name', sorted(RECIPES))
def test_recipe_distils_a_served_zoo_teacher_validates_and_exports(name, tmp_path, tool):
    cfg = load(name)
    make_val = make_cityscapes_val if name == 'cityscapes' else make_ade20k_val
    val_root = make_val(str(tmp_path / name))
    pool = make_pool(str(tmp_path / 'pool'))
    served = tmp_path / 'served'
    served.mkdir()
    # the file name of the installed metafile's Weights
    ckpt_name = osp.basename(metafile_entry(cfg.model.teacher.cfg_path)['Weights'])
    digest = save_tiny_teacher(cfg, str(served / ckpt_name))
    work = str(tmp_path / 'work')
    torch_home = tmp_path / 'torch_home'
    with CheckpointServer(served) as server:
        url = server.url(ckpt_name)
        tool('tools/train.py', RECIPES[name], '--work-dir', work, '--cfg-options',
             *tiny_options(val_root, pool, work, url), env=dict(TORCH_HOME=str(torch_home)))
        # ADS scoring and the distiller: one download, into the torch hub cache
        assert server.gets == {f'/{ckpt_name}': 1}
    hub = torch_home / 'hub' / 'checkpoints'
    assert os.listdir(hub) == [osp.basename(download_cache_path(url, str(hub)))]

    ckpt = torch.load(osp.join(work, 'iter_2.pth'), map_location='cpu', weights_only=False)
    # the distiller distilled from the served weights
    assert bytes(ckpt['state_dict']['teacher_weights_digest'].tolist()).hex() == digest
    assert ckpt['meta']['ads_selection']['num_samples'] == 4  # eps 4 of the 6 pool images
    student = ckpt['state_dict']['student.decode_head.conv_seg.weight']
    assert student.shape[:2] == (ZOO[name]['classes'], 8)
    # validated at iteration 2 with MMSeg's own dataset class and IoUMetric
    val = val_scalars(work)
    assert [r['step'] for r in val] == [2]

    export = osp.join(work, 'student')
    exported_cfg = Config.fromfile(osp.join(export, 'student_config.py'))
    assert exported_cfg.test_dataloader.dataset.type == ZOO[name]['dataset']
    assert exported_cfg.model.backbone.type == 'MobileNetV2'
    # the export is plain MMSeg: its own tools/test.py scores it as validation did
    test = plain_mmseg_test(osp.join(export, 'student_config.py'),
                            osp.join(export, 'student.pth'), str(tmp_path / 'plain_test'),
                            [f'test_dataloader.dataset.data_root={val_root}',
                             'test_dataloader.dataset.pipeline.1.scale=(128,64)',
                             'test_dataloader.num_workers=0',
                             'test_dataloader.persistent_workers=False'])
    assert test['mIoU'] == pytest.approx(val[0]['mIoU'], abs=0.01)
    assert test['aAcc'] == pytest.approx(val[0]['aAcc'], abs=0.01)


# --------------------------------------------------------------- the recipes as written
@pytest.mark.parametrize('name', sorted(RECIPES))
def test_recipe_is_the_zoo_pair_with_the_metafile_checkpoint(name):
    from mmseg_dfss.core.teacher import resolve_teacher_checkpoint
    cfg = load(name)
    teacher, student = cfg.model.teacher, cfg.model.student
    assert teacher.cfg_path.startswith('mmseg::') and student.cfg_path.startswith('mmseg::')
    entry = metafile_entry(teacher.cfg_path)
    # no host in the recipe: the installed line's metafile names it
    assert cfg.model.teacher_checkpoint == 'metafile'
    assert resolve_teacher_checkpoint(teacher, cfg.model.teacher_checkpoint) == entry['Weights']
    assert entry['Results']['Dataset'].lower() == name
    assert 'MobileNetV2' in metafile_entry(student.cfg_path)['Paper']['Title']
    # one teacher per run, named once: the ADS wrapper takes the distiller's
    assert cfg.runner_type == 'DFSSRunner'
    ads = resolve_shared(cfg).train_dataloader.dataset
    assert ads.type == 'ADSDataset' and ads.get('strategy', 'ads') == 'ads'
    assert ads.teacher == teacher and ads.teacher_checkpoint == cfg.model.teacher_checkpoint
    assert ads.dataset.type == 'UnlabeledImageDataset'
    assert {h.type for h in cfg.custom_hooks} == {
        'WDPDHook', 'ADSSelectionHook', 'StudentExportHook'}


@pytest.mark.parametrize('name', sorted(RECIPES))
def test_recipe_inputs_are_the_zoo_teachers(name):
    """Normalisation, validation and schedule are the zoo's; pool crops are never padded."""
    from mmseg_dfss.core.teacher import load_model_config
    cfg = load(name)
    zoo_teacher = Config.fromfile(
        osp.join(mmseg_configs(), cfg.model.teacher.cfg_path.split('::', 1)[1]))
    zoo_student = Config.fromfile(
        osp.join(mmseg_configs(), cfg.model.student.cfg_path.split('::', 1)[1]))
    teacher_dp = load_model_config(cfg.model.teacher).data_preprocessor
    dp = distiller_data_preprocessor(cfg.model.data_preprocessor, teacher_dp)  # what trains
    for key in ('mean', 'std', 'bgr_to_rgb'):
        assert dp[key] == teacher_dp[key]
    crop = tuple(ZOO[name]['crop'])
    assert tuple(dp['size']) == crop == tuple(zoo_teacher.crop_size)
    pool = cfg.train_dataloader.dataset.dataset.pipeline
    (resize, ) = [t for t in pool if t.type == 'RandomChoiceResize']
    (random_crop, ) = [t for t in pool if t.type == 'RandomCrop']
    assert tuple(random_crop.crop_size) == crop
    # short side >= the larger crop side: every crop is a full crop, nothing padded
    assert resize.resize_type == 'ResizeShortestEdge' and min(resize.scales) >= max(crop)
    # ADS scores resized as the zoo's test pipeline; validation is the zoo's
    zoo_resize = [t for t in zoo_teacher.test_pipeline if t.type == 'Resize']
    assert unscoped([t for t in cfg.train_dataloader.dataset.score_pipeline
                     if t.type == 'Resize']) == unscoped(zoo_resize)
    for loader in ('val_dataloader', 'test_dataloader'):
        assert unscoped(cfg[loader].dataset) == unscoped(zoo_teacher[loader].dataset)
        assert cfg[loader].dataset.type == ZOO[name]['dataset']
    assert unscoped(cfg.val_evaluator) == unscoped(zoo_teacher.val_evaluator)
    # the zoo student's schedule, iteration-based
    assert cfg.train_cfg.type == 'IterBasedTrainLoop'
    assert cfg.train_cfg.max_iters == zoo_student.train_cfg.max_iters == ZOO[name]['max_iters']
    assert unscoped(cfg.optim_wrapper) == unscoped(zoo_student.optim_wrapper)
    assert unscoped(cfg.param_scheduler) == unscoped(zoo_student.param_scheduler)
    assert cfg.train_dataloader.batch_size == zoo_student.train_dataloader.batch_size


@pytest.mark.parametrize('name', sorted(RECIPES))
def test_recipe_refuses_a_normalisation_other_than_the_teachers(name):
    from mmseg.registry import MODELS
    cfg = load(name)
    cfg.model.data_preprocessor.mean = [127.5, 127.5, 127.5]  # DFAD's, not the zoo's
    with pytest.raises(ValueError, match=r'normalises inputs differently.*mean'):
        MODELS.build(cfg.model)



# the documented switch of the pool from an image folder to COCO train2017
COCO_OPTIONS = ['train_dataloader.dataset.dataset.type=COCOPoolDataset',
                'train_dataloader.dataset.dataset.data_root={coco}',
                'train_dataloader.dataset.dataset.ann_file=annotations/instances_train2017.json',
                'train_dataloader.dataset.dataset.data_prefix.img_path=train2017']


@pytest.mark.parametrize('name', sorted(RECIPES))
def test_recipe_pool_switches_to_coco_with_cfg_options(name, tmp_path):
    """The README's COCO options, parsed as tools/train.py parses --cfg-options: ADS
    scores COCO's images (in image-id order) and yields full, unpadded crops."""
    import argparse

    from dataset_layouts import make_coco
    from mmengine.config import DictAction
    from mmseg.registry import DATASETS
    cfg = load(name)
    ckpt = str(tmp_path / 'teacher.pth')
    save_tiny_teacher(cfg, ckpt)
    coco = make_coco(str(tmp_path / 'coco'))
    parser = argparse.ArgumentParser()
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    opts = tiny_options(str(tmp_path / 'val'), 'unused', str(tmp_path / 'work'), ckpt)
    opts += [o.format(coco=coco) for o in COCO_OPTIONS]
    cfg.merge_from_dict(parser.parse_args(['--cfg-options', *opts]).cfg_options)
    ads = DATASETS.build(resolve_shared(cfg).train_dataloader.dataset)
    assert [osp.basename(p) for p in ads.result.paths] == [
        f'{i:012d}.jpg' for i in (10, 20, 30, 40, 50)]
    assert np.isfinite(ads.result.scores).all()
    assert len(ads) == 4
    sample = ads[0]
    assert tuple(sample['inputs'].shape) == (3, *TINY_CROP)
    assert sample['data_samples'].metainfo['img_path'].startswith(osp.join(coco, 'train2017'))
