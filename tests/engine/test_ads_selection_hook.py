"""ADSSelectionHook: a resumed run must train on the ADS selection it started with."""
import contextlib
import logging
import os
import os.path as osp
import re
from types import SimpleNamespace

import mmcv
import numpy as np
import pytest
import torch

from mmseg_dfss.datasets import ADSDataset
from mmseg_dfss.engine import ADSSelectionHook

TEACHER = 'configs/synthetic/deeplabv3_r18-tiny_synthetic.py'


def _pool(root, n):
    os.makedirs(root, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        mmcv.imwrite(rng.integers(0, 256 // (i + 1), (32, 32, 3), dtype=np.uint8),
                     osp.join(root, f'img{i:02d}.png'))


@pytest.fixture(scope='module')
def teacher_ckpt(tmp_path_factory, repo_root):
    from mmseg_dfss.core import build_frozen_segmentor
    torch.manual_seed(0)
    model = build_frozen_segmentor(osp.join(repo_root, TEACHER), allow_random_teacher=True)
    path = str(tmp_path_factory.mktemp('teacher') / 'teacher.pth')
    torch.save({'state_dict': model.state_dict()}, path)
    return path


@contextlib.contextmanager
def captured_warnings():
    """The WARNING messages MMEngine's current logger emits inside the block."""
    from mmengine.logging import MMLogger
    found = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: found.append(record.getMessage())
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    try:
        yield found
    finally:
        logger.removeHandler(handler)


def _runner(repo_root, pool_root, cache, ckpt):
    dataset = ADSDataset(
        dataset=dict(type='UnlabeledImageDataset', data_prefix=dict(img_path=pool_root),
                     pipeline=[dict(type='LoadImageFromFile'), dict(type='PackSegInputs')]),
        teacher=osp.join(repo_root, TEACHER), teacher_checkpoint=ckpt, num_samples=3,
        score_pipeline=[dict(type='LoadImageFromFile'), dict(type='PackSegInputs')],
        cache_dir=cache)
    loop = SimpleNamespace(dataloader=SimpleNamespace(dataset=dataset))
    return SimpleNamespace(_train_loop=loop)


def test_checkpoint_carries_the_selection_and_resume_checks_it(tmp_path, repo_root,
                                                              teacher_ckpt):
    pool = str(tmp_path / 'pool')
    _pool(pool, 6)
    hook = ADSSelectionHook()
    runner = _runner(repo_root, pool, str(tmp_path / 'cache'), teacher_ckpt)
    checkpoint = {'meta': {}}
    hook.before_save_checkpoint(runner, checkpoint)
    saved = checkpoint['meta']['ads_selection']
    assert saved['num_samples'] == 3 and saved['strategy'] == 'ads'

    # same pool: the resumed run rebuilds the same selection and goes on
    with captured_warnings() as warnings:
        ADSSelectionHook(on_mismatch='warn').after_load_checkpoint(
            _runner(repo_root, pool, str(tmp_path / 'cache'), teacher_ckpt), checkpoint)
    assert warnings == []

    # a kept image removed from the pool: the selection changes, resume is refused
    kept = runner._train_loop.dataloader.dataset
    os.remove(kept.dataset.get_data_info(int(kept.selected[0]))['img_path'])
    changed = _runner(repo_root, pool, str(tmp_path / 'cache'), teacher_ckpt)
    with pytest.raises(RuntimeError, match='ADS selection differs from the checkpoint'):
        hook.after_load_checkpoint(changed, checkpoint)
    # on_mismatch='warn': the run goes on, with one warning that names both selections
    with captured_warnings() as warnings:
        ADSSelectionHook(on_mismatch='warn').after_load_checkpoint(changed, checkpoint)
    assert len(warnings) == 1, warnings
    assert re.search(r'ADS selection differs from the checkpoint.s: it kept 3 images '
                     r'\(ads\), now 3 \(ads\) with other images.*; continuing$', warnings[0])


def test_without_ads_dataset_or_built_loop_it_does_nothing():
    hook = ADSSelectionHook()
    checkpoint = {'meta': {}}
    hook.before_save_checkpoint(SimpleNamespace(_train_loop=dict(type='IterBasedTrainLoop')),
                                checkpoint)
    hook.after_load_checkpoint(SimpleNamespace(_train_loop=None), checkpoint)
    assert 'ads_selection' not in checkpoint['meta']
    with pytest.raises(ValueError, match='on_mismatch'):
        ADSSelectionHook(on_mismatch='ignore')


def test_resume_with_another_ads_teacher_names_its_checkpoint(tmp_path, repo_root,
                                                              teacher_ckpt):
    from mmseg_dfss.core import build_frozen_segmentor
    pool = str(tmp_path / 'pool')
    _pool(pool, 6)
    checkpoint = {'meta': {}}
    ADSSelectionHook().before_save_checkpoint(
        _runner(repo_root, pool, str(tmp_path / 'cache'), teacher_ckpt), checkpoint)
    assert checkpoint['meta']['ads_selection']['teacher']['checkpoint'] == teacher_ckpt
    torch.manual_seed(1)  # other weights in a file of the same name
    other = str(tmp_path / 'teacher.pth')
    torch.save({'state_dict': build_frozen_segmentor(osp.join(repo_root, TEACHER),
                                                     allow_random_teacher=True).state_dict()},
               other)
    with pytest.raises(RuntimeError, match='ADS teacher is not the one the run started with: '
                       + re.escape(f'teacher_checkpoint {other!r} holds other weights')):
        ADSSelectionHook().after_load_checkpoint(
            _runner(repo_root, pool, str(tmp_path / 'cache'), other), checkpoint)
