"""TEACHER as a zoo name (config and weights from the installed metafiles, without a
download), an unknown name (the five closest), and the BN layers ADS can score."""
import os.path as osp

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


def _names_zoo(site, repo_root):
    """A fabricated OpenMMLab-style package ``dfssnames``: bare teacher configs (a model
    and nothing else) of 19, 21 and 7 classes, and a metafile naming what each was
    trained on (``Metadata: Training Data``, or only ``Results: Dataset``)."""
    import yaml

    from mmseg_dfss.core.teacher import load_model_config
    model = load_model_config(osp.join(repo_root, SYNTHETIC_TEACHER)).to_dict()
    folder = site / 'dfssnames' / '.mim' / 'configs' / 'seg'
    folder.mkdir(parents=True)
    (site / 'dfssnames' / '__init__.py').write_text('')
    models = []
    for name, classes, data in (('city19', 19, dict(Metadata={'Training Data': 'Cityscapes'})),
                                ('voc21', 21, dict(Results=dict(Dataset='Pascal VOC 2012 + Aug'))),
                                ('city7', 7, dict(Metadata={'Training Data': 'Cityscapes'}))):
        m = dict(model, decode_head=dict(model['decode_head'], num_classes=classes))
        (folder / f'{name}.py').write_text(f'model = {m!r}\n')
        models.append(dict(Name=name, Config=f'configs/seg/{name}.py', **data))
    with open(folder / 'metafile.yaml', 'w') as f:
        yaml.safe_dump(dict(Models=models), f)
    (site / 'dfssnames' / '.mim' / 'model-index.yml').write_text(
        'Import:\n- configs/seg/metafile.yaml\n')


SYNTHETIC_TEACHER = 'configs/synthetic/deeplabv3_r18-tiny_synthetic.py'


def test_class_names_from_the_dataset_else_the_metafile_else_numbered(tmp_path, repo_root,
                                                                      monkeypatch):
    from mmseg.datasets import CityscapesDataset, PascalVOCDataset

    from mmseg_dfss.apis.compress.teacher_spec import class_names
    from mmseg_dfss.datasets.synthetic_scenes import SyntheticScenesDataset
    names, where = class_names(osp.join(repo_root, SYNTHETIC_TEACHER), 7)
    assert names == list(SyntheticScenesDataset.METAINFO['classes'])
    assert where == 'test_dataloader.dataset (SyntheticScenesDataset)'
    _names_zoo(tmp_path, repo_root)
    monkeypatch.syspath_prepend(str(tmp_path))
    names, where = class_names('dfssnames::seg/city19.py', 19)
    assert names == list(CityscapesDataset.METAINFO['classes'])
    assert where.startswith("the metafile's training data 'Cityscapes'")
    names, where = class_names('dfssnames::seg/voc21.py', 21)  # Results: Dataset
    assert names == list(PascalVOCDataset.METAINFO['classes'])
    # trained on Cityscapes by the metafile, but 7 classes: not Cityscapes' 19 names
    names, where = class_names('dfssnames::seg/city7.py', 7)
    assert names == [f'class_{i}' for i in range(7)] and where.startswith('none given')
    bare = tmp_path / 'bare.py'
    bare.write_text((tmp_path / 'dfssnames' / '.mim' / 'configs' / 'seg' / 'city19.py')
                    .read_text())
    assert class_names(str(bare), 19)[0] == [f'class_{i}' for i in range(19)]  # no metafile


def test_pool_images_are_resized_as_the_teacher_trained(tmp_path, repo_root):
    """The pool's training resize is the teacher config's own RandomResize (a zoo
    Cityscapes teacher: (2048, 1024) x (0.5, 2.0); the synthetic one: (96, 96) x
    (0.75, 1.25)); a bare teacher config (a model only) gets MMSeg's (0.5, 2.0) around
    the crop."""
    from mmengine.config import Config

    from mmseg_dfss.apis.compress.dfss_config import Name, train_pipeline
    from mmseg_dfss.apis.compress.teacher_spec import read_teacher

    def resize_of(cfg_path, **kw):
        spec = read_teacher(cfg_path, cfg_path, None, **kw)
        (resize, ) = [t for t in train_pipeline(spec.crop, spec.train_resize)
                      if t['type'] == 'RandomResize']
        return resize['scale'], resize['ratio_range']

    assert resize_of(f'mmseg::deeplabv3/{NAME}.py') == ((2048, 1024), (0.5, 2.0))
    synthetic = osp.join(repo_root, 'configs/synthetic/deeplabv3_r18-tiny_synthetic.py')
    assert resize_of(synthetic) == ((96, 96), (0.75, 1.25))
    bare = tmp_path / 'bare.py'
    bare.write_text(f'model = {Config.fromfile(synthetic).model.to_dict()!r}\n')
    assert resize_of(str(bare), crop=(48, 80)) == ((80, 48), (0.5, 2.0))
    written = train_pipeline(Name('crop_size'))[1]['scale']  # the written config's variable
    assert written == 'crop_size[::-1]'
