"""BN statistics distance of ADS (Eq. 9): per sample, layer input, early exit."""
import os.path as osp

import pytest
import torch
from model_utils import eq9_distance, randomise_bn

from mmseg_dfss.core import BNStatsDistance, build_frozen_segmentor, select_bn_layers
from mmseg_dfss.core.bn_stats import SCORE_RTOL

TEACHER = 'configs/synthetic/deeplabv3_r18-tiny_synthetic.py'


@pytest.fixture(scope='module')
def teacher(repo_root):
    torch.manual_seed(0)
    return randomise_bn(build_frozen_segmentor(osp.join(repo_root, TEACHER),
                                               allow_random_teacher=True))


def independent_d(model, x, prefix='backbone.'):
    """Eq. 9 for one sample, computed apart from the library (tests/model_utils.py)."""
    return eq9_distance(model, x, prefix)


def test_distance_matches_independent_per_sample_computation(teacher):
    x = torch.randn(3, 3, 48, 40)
    with BNStatsDistance(teacher, 'backbone') as bn:
        d = bn(x)
        assert len(bn.layer_names) == len(select_bn_layers(teacher, 'backbone'))
    for i in range(3):
        ref, n_layers = independent_d(teacher, x[i:i + 1])
        assert n_layers == len(bn.layer_names)
        assert d[i].item() == pytest.approx(ref, rel=SCORE_RTOL)
    # the reference is not trivially constant: the three samples differ
    assert len({round(v, 6) for v in d.tolist()}) == 3


def test_distance_does_not_depend_on_batch_size(teacher):
    x = torch.randn(5, 3, 40, 40)
    with BNStatsDistance(teacher) as bn:
        together = bn(x)
        alone = torch.cat([bn(x[i:i + 1]) for i in range(5)])
        pairs = torch.cat([bn(x[0:2]), bn(x[2:5])])
    torch.testing.assert_close(together, alone, rtol=SCORE_RTOL, atol=0)
    torch.testing.assert_close(together, pairs, rtol=SCORE_RTOL, atol=0)


def test_early_exit_decode_head_never_runs(teacher):
    calls = []
    # (EncoderDecoder calls decode_head.forward() directly, so watch its classifier)
    h = teacher.decode_head.conv_seg.register_forward_pre_hook(lambda m, a: calls.append(1))
    try:
        with BNStatsDistance(teacher, 'backbone') as bn:
            for _ in range(3):
                bn(torch.randn(2, 3, 32, 32))
        assert calls == []
        # hooks are removed afterwards: a normal forward runs the head again
        with torch.no_grad():
            teacher(torch.randn(1, 3, 32, 32), None, mode='tensor')
        assert calls == [1]
    finally:
        h.remove()


def test_all_layers_include_decode_head_and_skip_layers_that_never_run(teacher):
    x = torch.randn(2, 3, 32, 32)
    with BNStatsDistance(teacher, 'all') as bn:
        d_all = bn(x)
        names = bn.layer_names
    assert any(n.startswith('decode_head.') for n in names)
    # the auxiliary head does not run in the tensor forward: its layers are left out
    assert not any(n.startswith('auxiliary_head.') for n in names)
    for i in range(2):  # Eq. 9 over every BN layer that runs, computed apart
        ref, n_layers = independent_d(teacher, x[i:i + 1], prefix='')
        assert n_layers == len(names)
        assert d_all[i].item() == pytest.approx(ref, rel=SCORE_RTOL)
    with BNStatsDistance(teacher, 'backbone') as bn:
        assert (d_all > bn(x)).all()  # the head's layers add to the backbone's


def test_layer_selection_by_regex_and_errors(teacher):
    names = [n for n, _ in select_bn_layers(teacher, [r'^backbone\.layer4\.'])]
    assert names and all(n.startswith('backbone.layer4.') for n in names)
    backbone = [n for n, _ in select_bn_layers(teacher, 'backbone')]
    assert all(n.startswith('backbone.') for n in backbone)
    with pytest.raises(ValueError, match='selects no BatchNorm layer'):
        select_bn_layers(teacher, [r'^no_such_module'])
    with pytest.raises(ValueError, match='bn_layers must be'):
        select_bn_layers(teacher, 'decode')
    # regex-restricted distance = the sum over just those layers
    x = torch.randn(1, 3, 32, 32)
    with BNStatsDistance(teacher, [r'^backbone\.layer4\.']) as bn:
        d4 = bn(x).item()
    ref, _ = independent_d(teacher, x, prefix='backbone.layer4.')
    assert d4 == pytest.approx(ref, rel=SCORE_RTOL)


def test_syncbn_layers_are_read_like_bn(repo_root, teacher):
    from mmseg_dfss.core import load_model_config
    cfg = load_model_config(osp.join(repo_root, TEACHER))
    cfg.backbone.norm_cfg = dict(type='SyncBN', requires_grad=True)
    sync = build_frozen_segmentor(cfg, allow_random_teacher=True)
    sync.load_state_dict(teacher.state_dict())
    assert any(isinstance(m, torch.nn.SyncBatchNorm) for m in sync.backbone.modules())
    x = torch.randn(2, 3, 32, 32)
    with BNStatsDistance(sync) as a, BNStatsDistance(teacher) as b:
        torch.testing.assert_close(a(x), b(x), rtol=SCORE_RTOL, atol=0)
