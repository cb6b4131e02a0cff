"""TEACHER as a zoo name (config and weights from the installed metafiles, without a
download), an unknown name (the five closest), and the BN layers ADS can score."""
import pytest

from mmseg_dfss.apis.compress import CompressError
from mmseg_dfss.apis.compress.teacher_spec import resolve_teacher_name, scored_bn_layers
from mmseg_dfss.core.zoo import metafile_weights

NAME = 'deeplabv3_r50-d8_4xb2-80k_cityscapes-512x1024'


def test_zoo_name_brings_its_config_and_metafile_weights():
    cfg_path, weights, _ = resolve_teacher_name(NAME)
    assert cfg_path == f'mmseg::deeplabv3/{NAME}.py'
    assert weights == metafile_weights(cfg_path)[0]  # read from the config's own metafile
    assert weights.startswith('https://') and weights.endswith('.pth')


def test_unknown_name_lists_the_five_closest():
    with pytest.raises(CompressError) as e:
        resolve_teacher_name('deeplabv3_r50-d8_cityscapes')
    close = str(e.value).split('the closest names: ')[1].split(', ')
    assert len(close) == 5 and all('deeplabv3' in n for n in close)


def test_mmseg_config_and_missing_path():
    assert resolve_teacher_name(f'mmseg::deeplabv3/{NAME}.py')[1] is None
    with pytest.raises(CompressError, match="teacher config 'nope/x.py' does not exist"):
        resolve_teacher_name('nope/x.py')


def test_backbone_without_bn_scores_the_decode_head(capsys):
    mit = 'mmseg::segformer/segformer_mit-b0_8xb2-160k_ade20k-512x512.py'
    assert scored_bn_layers(dict(cfg_path=mit)) == 'all'
    gn = dict(cfg_path=mit, decode_head=dict(norm_cfg=dict(type='GN', num_groups=1)))
    with pytest.raises(CompressError, match='has no BatchNorm layer'):
        scored_bn_layers(gn)
