"""A teacher whose selected layers have no BatchNorm (e.g. SegFormer's MiT backbone,
LayerNorm only) fails before any image with the reason and the bn_layers to set;
the suggested value works. (The zoo SegFormer case: tests/models/
test_backbone_swap_matrix.py::test_teacher_scores_ads.)"""
import ast
import os.path as osp
import re

import pytest
import torch

from mmseg_dfss.core import BNStatsDistance, build_frozen_segmentor, load_model_config

TEACHER = 'configs/synthetic/deeplabv3_r18-tiny_synthetic.py'
GN = dict(type='GN', num_groups=4, requires_grad=True)


def teacher(repo_root, *gn_parts):
    cfg = load_model_config(osp.join(repo_root, TEACHER)).to_dict()
    for part in gn_parts:
        cfg[part]['norm_cfg'] = GN
    torch.manual_seed(0)
    return build_frozen_segmentor(cfg, allow_random_teacher=True)


def test_backbone_without_bn_names_the_norm_and_the_bn_layers_to_set(repo_root):
    model = teacher(repo_root, 'backbone')
    with pytest.raises(ValueError) as err:
        BNStatsDistance(model, 'backbone')
    msg = str(err.value)
    assert 'The teacher backbone (ResNetV1c) has no BatchNorm; it normalises with GroupNorm' in msg
    assert 'train_dataloader.dataset.bn_layers' in msg
    # the suggestion leaves the auxiliary head out (it never runs) and works as given
    suggested = ast.literal_eval(re.search(r'Set bn_layers=(\[.*?\])', msg).group(1))
    assert suggested == [r'^decode_head\.']
    with BNStatsDistance(model, suggested) as scorer:
        d = scorer(torch.randn(2, 3, 32, 32))
    assert torch.isfinite(d).all()
    assert scorer.layer_names and all(n.startswith('decode_head.') for n in scorer.layer_names)


def test_teacher_without_any_bn_in_its_forward_points_to_other_strategies(repo_root):
    model = teacher(repo_root, 'backbone', 'decode_head')
    with pytest.raises(ValueError, match="use strategy='confidence' or strategy='random'"):
        BNStatsDistance(model, 'backbone')
