"""Every shipped DFSS/KD config runs end to end through tools/train.py (2 training
iterations, validation on 2 test images, student export) on fabricated tiny NYUv2,
CamVid and COCO layouts with random-init teacher checkpoints; sizes are shrunk with
--cfg-options only. The eps/ablation variants differ from their parent config in
exactly the keys they name (checked fast); running each of them is marked slow."""
import functools
import glob
import json
import os.path as osp
import shutil

import numpy as np
import pytest
import torch
from dataset_layouts import make_camvid, make_coco, make_nyuv2_toolkit
from log_utils import read_scalars, train_steps
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from test_zoo_recipes import RECIPES

from mmseg_dfss.core import load_model_config
from mmseg_dfss.models.data_free_distiller import distiller_data_preprocessor

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
MAIN = ['dfss/deeplabv3_r50_to_mbv2_nyuv2.py', 'dfss/deeplabv3_r50_to_mbv2_camvid.py',
        'dfss/deeplabv3_r101_to_r18_nyuv2.py', 'kd/deeplabv3_r50_to_mbv2_nyuv2_original-data.py']
ZOO = [osp.relpath(p, 'configs') for p in RECIPES.values()]  # run by test_zoo_recipes.py
VARIANTS = {  # suffix: the keys (path, value) it changes in its parent
    'eps15k': {('train_dataloader', 'dataset', 'num_samples'): 15000},
    'eps20k': {('train_dataloader', 'dataset', 'num_samples'): 20000},
    'random': {('train_dataloader', 'dataset', 'strategy'): 'random',
               ('model', 'distill_loss', 'mode'): 'vanilla'},
    'confidence': {('train_dataloader', 'dataset', 'strategy'): 'confidence',
                   ('model', 'distill_loss', 'mode'): 'vanilla'},
    'vanilla': {('model', 'distill_loss', 'mode'): 'vanilla'},
    'wdd': {('model', 'distill_loss', 'mode'): 'wdd'},
}


def shipped():
    found = sorted(osp.relpath(p, osp.join(REPO, 'configs'))
                   for pattern in ('dfss/*.py', 'kd/*.py')
                   for p in glob.glob(osp.join(REPO, 'configs', pattern)))
    assert found, 'no shipped configs found'
    return found


@pytest.fixture(scope='module')
def layouts(tmp_path_factory):
    root = tmp_path_factory.mktemp('layouts')
    # 4 training images: 2 full batches of 2 (the configs drop a last batch of 1)
    return dict(nyuv2=make_nyuv2_toolkit(str(root / 'nyuv2'), train=(1, 3, 4, 6)),
                camvid=make_camvid(str(root / 'camvid'),
                                   counts=(('train', 4), ('val', 2), ('test', 2))),
                coco=make_coco(str(root / 'coco')), root=str(root))


_teachers = {}


def teacher_checkpoint(teacher_spec, out_dir):
    """A random-init checkpoint of the teacher (``dict(cfg_path=...)``, saved once per
    config)."""
    teacher_cfg = osp.join(REPO, teacher_spec['cfg_path'])
    if teacher_cfg not in _teachers:
        from mmseg.registry import MODELS
        from mmseg_dfss.core import load_model_config
        spec = dict(teacher_spec, cfg_path=teacher_cfg)
        model = revert_sync_batchnorm(MODELS.build(load_model_config(spec)))
        model.init_weights()
        path = osp.join(out_dir, osp.basename(teacher_cfg).replace('.py', '.pth'))
        torch.save(dict(state_dict=model.state_dict()), path)
        _teachers[teacher_cfg] = path
    return _teachers[teacher_cfg]


def tiny_options(cfg, layouts, work):
    """--cfg-options that point the config at the fabricated layouts and shrink it:
    inputs 32 px, 4 of the 5 COCO images (or the 4 NYUv2 train images) per epoch,
    batch 2, one epoch (2 iterations)."""
    ckpt = teacher_checkpoint(cfg.model.teacher, layouts['root'])
    data = layouts['nyuv2'] if 'NYU' in cfg.val_dataloader.dataset.type else layouts['camvid']
    opts = [f'model.teacher_checkpoint={ckpt}', 'model.data_preprocessor.size=(32,32)',
            'train_dataloader.batch_size=2', 'train_dataloader.num_workers=0',
            'train_dataloader.persistent_workers=False',
            'train_cfg.max_epochs=1', 'train_cfg.val_interval=1',
            'param_scheduler.0.T_max=1', 'param_scheduler.0.end=1',
            'default_hooks.logger.interval=1', 'default_hooks.checkpoint.interval=1',
            'default_hooks.visualization.draw=False']
    for loader in ('val_dataloader', 'test_dataloader'):
        opts += [f'{loader}.dataset.data_root={data}', f'{loader}.dataset.pipeline.1.scale=32',
                 f'{loader}.num_workers=0', f'{loader}.persistent_workers=False']
    ds = cfg.train_dataloader.dataset
    if ds.type == 'ADSDataset':
        opts += [f'train_dataloader.dataset.dataset.data_root={layouts["coco"]}',
                 'train_dataloader.dataset.num_samples=4',
                 f'train_dataloader.dataset.cache_dir={work}/ads_cache',
                 'train_dataloader.dataset.score_batch_size=2',
                 'train_dataloader.dataset.score_num_workers=0',
                 'train_dataloader.dataset.score_pipeline.1.scale=32',
                 'train_dataloader.dataset.dataset.pipeline.1.scale=32',
                 'train_dataloader.dataset.dataset.pipeline.2.crop_size=(32,32)']
    else:  # KD on the original training images
        opts += [f'train_dataloader.dataset.data_root={data}',
                 'train_dataloader.dataset.pipeline.2.scale=32',
                 'train_dataloader.dataset.pipeline.3.crop_size=(32,32)']
    return opts


def run_two_iterations(config, layouts, tmp_path, tool):
    path = osp.join('configs', config)
    cfg = Config.fromfile(osp.join(REPO, path))
    work = str(tmp_path / 'work')
    proc = tool('tools/train.py', path, '--work-dir', work, '--cfg-options',
                *tiny_options(cfg, layouts, work))
    out = proc.stdout + proc.stderr
    train, val = read_scalars(work)
    steps = train_steps(train, 'loss', 'loss_wdpd', 'wdpd_alpha')  # finite numbers
    assert sorted(steps) == [1, 2], out[-3000:]
    assert all(loss > 0 and 0 <= alpha <= 1 for _, loss, alpha in steps.values()), steps
    # the batch mean of alpha_i(t), I = 2 iterations of 2 of the eps = 4 kept images:
    # vanilla 1; wdd w_i (Eq. 10); wdpd w_i at t = 0 and 1 at t = 1 = r*I (Eq. 13)
    alphas = [steps[i][2] for i in (1, 2)]
    mode = cfg.model.distill_loss.mode
    if mode == 'vanilla' or cfg.train_dataloader.dataset.type != 'ADSDataset':
        assert alphas == pytest.approx([1.0, 1.0], rel=1e-6)
    else:
        w = kept_eq11_weights(work)
        pairs = [(a + b) / 2 for k, a in enumerate(w) for b in w[k + 1:]]
        assert any(alphas[0] == pytest.approx(p, rel=1e-6) for p in pairs), (alphas, w)
        second = np.mean(w) * 2 - alphas[0] if mode == 'wdd' else 1.0  # the other pair
        assert alphas[1] == pytest.approx(second, rel=1e-5), (alphas, w)
    assert [0 <= r['mIoU'] <= 100 for r in val if 'mIoU' in r] == [True], val
    assert osp.isfile(osp.join(work, 'epoch_1.pth'))
    assert osp.isfile(osp.join(work, 'student', 'student_config.py'))
    # the exported student is the trained one, weight for weight
    trained = torch.load(osp.join(work, 'epoch_1.pth'), weights_only=False)['state_dict']
    exported = torch.load(osp.join(work, 'student', 'student.pth'))['state_dict']
    assert set(exported) == {k[len('student.'):] for k in trained if k.startswith('student.')}
    for k, v in exported.items():
        assert torch.equal(v, trained['student.' + k]), k
    return out


def kept_eq11_weights(work):
    """Eq. 11 over the eps = 4 lowest scores in the run's ADS cache (numpy)."""
    scores = []
    for path in glob.glob(osp.join(work, 'ads_cache', '*', 'part-*.jsonl')):
        with open(path) as f:
            scores += [json.loads(line)['score'] for line in f if line.strip()]
    d = np.sort(np.array([s for s in scores if isinstance(s, float)]))[:4]
    assert d.size == 4 and d[-1] > d[0], d
    return list(1 - (d - d[0]) / (d[-1] - d[0]))


# the default suite runs one DFSS and the KD config; the other two main configs
# (CamVid, R101 -> R18) run with the slow tests
SLOW_MAIN = ('dfss/deeplabv3_r50_to_mbv2_camvid.py', 'dfss/deeplabv3_r101_to_r18_nyuv2.py')


@pytest.mark.parametrize('config', [
    pytest.param(c, marks=pytest.mark.slow) if c in SLOW_MAIN else c for c in MAIN])
def test_main_configs_train_two_iterations(config, layouts, tmp_path, tool):
    run_two_iterations(config, layouts, tmp_path, tool)


@pytest.mark.slow
@pytest.mark.parametrize('config', [c for c in shipped() if c not in MAIN + ZOO])
def test_other_configs_train_two_iterations(config, layouts, tmp_path, tool):
    run_two_iterations(config, layouts, tmp_path, tool)


def _get(cfg, keys):
    for k in keys:
        cfg = cfg[k]
    return cfg


@functools.lru_cache(maxsize=None)
def _config_dict(config):
    """A shipped config as a flat dict (parents are read by several variants)."""
    return _flat(Config.fromfile(osp.join(REPO, 'configs', config)).to_dict())


def _flat(obj, prefix=()):
    if isinstance(obj, dict):
        return {k: v for key, val in obj.items() for k, v in _flat(val, prefix + (key, )).items()}
    return {prefix: obj}


def test_every_config_is_covered_and_variants_change_only_their_keys():
    configs = shipped()
    variants = [c for c in configs if c not in MAIN + ZOO]
    for config in variants:
        if config == 'kd/deeplabv3_r50_to_mbv2_camvid_original-data.py':
            parent, changed = 'kd/deeplabv3_r50_to_mbv2_nyuv2_original-data.py', None
        else:
            stem, suffix = osp.basename(config)[:-3].rsplit('_', 1)
            assert suffix in VARIANTS, f'{config}: not a known variant, add it to MAIN'
            parent, changed = f'dfss/{stem}.py', VARIANTS[suffix]
        if changed is None:
            continue
        child, base = _config_dict(config), _config_dict(parent)
        diff = {k for k in set(child) | set(base) if child.get(k) != base.get(k)}
        assert diff == set(changed), (config, diff)
        for keys, value in changed.items():
            assert child[keys] == value


def test_paper_protocol_in_the_main_configs():
    for name in ('nyuv2', 'camvid'):
        cfg = Config.fromfile(osp.join(REPO, f'configs/dfss/deeplabv3_r50_to_mbv2_{name}.py'))
        assert cfg.train_dataloader.dataset.num_samples == 10000
        assert cfg.train_dataloader.batch_size * 8 == 192
        assert cfg.train_cfg.max_epochs == 150 and cfg.optim_wrapper.optimizer.type == 'SGD'
        assert cfg.param_scheduler[0].type == 'CosineAnnealingLR'
        assert cfg.model.distill_loss.mode == 'wdpd' and cfg.model.distill_loss.ramp == 0.5
        teacher_dp = load_model_config(cfg.model.teacher).data_preprocessor
        dp = distiller_data_preprocessor(cfg.model.data_preprocessor, teacher_dp)
        assert dp['mean'] == [127.5] * 3 and dp['size'] == (128, 128)  # DFAD's protocol
        assert cfg.runner_type == 'DFSSRunner'  # the teacher, named once, reaches ADS
        assert {h.type for h in cfg.custom_hooks} == {
            'WDPDHook', 'ADSSelectionHook', 'StudentExportHook'}


TEACHER_CONFIGS = sorted(osp.relpath(p, osp.join(REPO, 'configs'))
                         for p in glob.glob(osp.join(REPO, 'configs', 'teachers', '*.py')))


@pytest.mark.slow
@pytest.mark.parametrize('config', TEACHER_CONFIGS)
def test_teacher_configs_train_and_validate(config, layouts, tmp_path, tool):
    """The teacher training configs (labels, DFAD's protocol) validate too: 2
    iterations on the fabricated layout, 32 px, validation at iteration 2."""
    cfg = Config.fromfile(osp.join(REPO, 'configs', config))
    data = layouts['nyuv2'] if 'NYU' in cfg.val_dataloader.dataset.type else layouts['camvid']
    work = str(tmp_path / 'work')
    opts = ['model.data_preprocessor.size=(32,32)', f'train_dataloader.dataset.data_root={data}',
            'train_dataloader.dataset.pipeline.2.scale=32',
            'train_dataloader.dataset.pipeline.3.crop_size=(32,32)',
            'train_dataloader.batch_size=2', 'train_dataloader.num_workers=0',
            'train_dataloader.persistent_workers=False', 'train_cfg.max_iters=2',
            'train_cfg.val_interval=2', 'default_hooks.checkpoint.interval=2',
            'default_hooks.logger.interval=1', 'default_hooks.visualization.draw=False']
    for loader in ('val_dataloader', 'test_dataloader'):
        opts += [f'{loader}.dataset.data_root={data}', f'{loader}.dataset.pipeline.1.scale=32',
                 f'{loader}.num_workers=0', f'{loader}.persistent_workers=False']
    tool('tools/train.py', osp.join('configs', config), '--work-dir', work, '--cfg-options',
         *opts)
    _, val = read_scalars(work)
    assert [0 <= r['mIoU'] <= 100 for r in val if 'mIoU' in r] == [True], val


@pytest.mark.slow
def test_the_two_pool_config_trains_and_validates(layouts, tmp_path, tool):
    """configs/pools: ADS over COCO + an image folder (ConcatDataset), validated."""
    config = 'pools/deeplabv3_r50_to_mbv2_nyuv2_coco+frames.py'
    cfg = Config.fromfile(osp.join(REPO, 'configs', config))
    work = str(tmp_path / 'work')
    frames = str(tmp_path / 'frames')  # any image folder
    shutil.copytree(osp.join(layouts['coco'], 'train2017'), frames)
    opts = []
    for opt in tiny_options(cfg, layouts, work):
        key, value = opt.split('=', 1)
        if key.startswith('train_dataloader.dataset.dataset.'):
            rest = key[len('train_dataloader.dataset.dataset.'):]
            pools = ((0, value), (1, frames if rest == 'data_root' else value))
            opts += [f'train_dataloader.dataset.dataset.datasets.{k}.{rest}={v}'
                     for k, v in pools]
        else:
            opts.append(opt)
    tool('tools/train.py', osp.join('configs', config), '--work-dir', work, '--cfg-options',
         *opts)
    _, val = read_scalars(work)
    assert [0 <= r['mIoU'] <= 100 for r in val if 'mIoU' in r] == [True], val
