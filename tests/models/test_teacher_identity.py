"""One teacher per run and checkpoints without the teacher: a distiller checkpoint
(MMEngine's ``get_state_dict``, as the Runner saves it) holds no teacher weights but their
sha256; loading it into a distiller whose ``teacher_checkpoint`` holds other weights stops
when training starts, naming the file; samples selected by ADS with another teacher (other
weights or another config) stop the loss, naming both teachers."""
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from mmengine.model import revert_sync_batchnorm
from mmengine.runner.checkpoint import get_state_dict, load_state_dict

from mmseg_dfss.core.teacher import build_segmentor, weights_digest
from mmseg_dfss.datasets import ADSDataset
from mmseg_dfss.models import DataFreeDistiller

TEACHER = 'configs/synthetic/deeplabv3_r18-tiny_synthetic.py'
STUDENT = 'configs/students/deeplabv3_mbv2-tiny_synthetic.py'
PIPELINE = [dict(type='LoadImageFromFile'), dict(type='PackSegInputs')]


def _save_teacher(repo_root, path, seed, **overrides):
    torch.manual_seed(seed)
    model = build_segmentor(dict(cfg_path=osp.join(repo_root, TEACHER), **overrides))
    model.init_weights()
    torch.save(dict(state_dict=model.state_dict()), path)
    return path


@pytest.fixture(scope='module')
def ckpts(tmp_path_factory, repo_root):
    root = tmp_path_factory.mktemp('teachers')
    return dict(a=_save_teacher(repo_root, str(root / 'teacher_a.pth'), 1),
                b=_save_teacher(repo_root, str(root / 'teacher_b.pth'), 2),
                c16=_save_teacher(repo_root, str(root / 'teacher_c16.pth'), 3,
                                  decode_head=dict(channels=16)))


def distiller(repo_root, ckpt, **teacher_overrides):
    torch.manual_seed(0)
    model = DataFreeDistiller(
        teacher=dict(cfg_path=osp.join(repo_root, TEACHER), **teacher_overrides),
        teacher_checkpoint=ckpt, student=osp.join(repo_root, STUDENT),
        distill_loss=dict(type='WDPDLoss', mode='wdd'))
    model.init_weights()
    return revert_sync_batchnorm(model)


def test_checkpoint_holds_the_teacher_digest_not_its_weights(repo_root, ckpts):
    model = distiller(repo_root, ckpts['a']).train()
    for state in (get_state_dict(model), model.state_dict()):  # MMEngine's and torch's
        assert not [k for k in state if k.startswith('teacher.')]
        assert any(k.startswith('student.') for k in state)
        assert bytes(state['teacher_weights_digest'].tolist()).hex() == \
            weights_digest(model.teacher)
    loaded = torch.load(ckpts['a'])['state_dict']
    assert all(torch.equal(model.teacher.state_dict()[k], v) for k, v in loaded.items())


def test_resume_reloads_the_teacher_and_refuses_other_weights(repo_root, ckpts):
    saved = get_state_dict(distiller(repo_root, ckpts['a']).train())
    same = distiller(repo_root, ckpts['a'])
    load_state_dict(same, saved, strict=True)  # no "missing teacher keys"
    same.train()
    other = distiller(repo_root, ckpts['b'])
    load_state_dict(other, saved, strict=True)
    with pytest.raises(RuntimeError, match=r"teacher_checkpoint '.*teacher_b\.pth' does not "
                       'hold the teacher weights this run started with'):
        other.train()


@pytest.fixture(scope='module')
def pool(tmp_path_factory):
    root = tmp_path_factory.mktemp('pool')
    rng = np.random.default_rng(0)
    for i in range(4):
        cv2.imwrite(str(root / f'{i}.png'), rng.integers(0, 256, (32, 32, 3), np.uint8))
    return str(root)


def ads_batch(repo_root, pool, ckpt, **teacher_overrides):
    ds = ADSDataset(
        dataset=dict(type='UnlabeledImageDataset', data_prefix=dict(img_path=pool),
                     pipeline=PIPELINE),
        teacher=dict(cfg_path=osp.join(repo_root, TEACHER), **teacher_overrides),
        teacher_checkpoint=ckpt, num_samples=2, score_pipeline=PIPELINE, cache_dir=None)
    assert ds.teacher_record['checkpoint'] == ckpt
    assert ds.teacher_record['config']['decode_head']['channels'] == \
        teacher_overrides.get('decode_head', {}).get('channels', 32)
    items = [ds[0], ds[1]]
    return dict(inputs=[it['inputs'] for it in items],
                data_samples=[it['data_samples'] for it in items])


def _loss(model, batch):
    data = model.data_preprocessor(batch, training=True)
    return model.loss(**data)


def test_samples_selected_by_another_teacher_stop_the_loss(repo_root, pool, ckpts):
    batch = ads_batch(repo_root, pool, ckpts['a'])
    assert batch['data_samples'][0].metainfo['ads_teacher']['checkpoint'] == ckpts['a']
    assert torch.isfinite(_loss(distiller(repo_root, ckpts['a']).train(), batch)['loss_wdpd'])
    with pytest.raises(RuntimeError, match=r"(?s)their weights differ.*scored with .*"
                       r"teacher_a\.pth.*distiller uses .*teacher_b\.pth.*"
                       r'train_dataloader\.dataset\.teacher.*model\.teacher'):
        _loss(distiller(repo_root, ckpts['b']).train(), batch)
    # another config (its own matching checkpoint): the configs differ
    with pytest.raises(RuntimeError, match='their configs and weights differ'):
        _loss(distiller(repo_root, ckpts['c16'], decode_head=dict(channels=16)).train(), batch)
    # same config written another way (a path string) and same weights: accepted
    model = distiller(repo_root, ckpts['a'])
    model.teacher_spec = osp.join(repo_root, TEACHER)
    assert torch.isfinite(_loss(model.train(), batch)['loss_wdpd'])
