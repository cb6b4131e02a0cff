"""What a teacher's own config file says when a DFSS config leaves it out.

A teacher may be a full MMSeg config (model, dataloaders, pipelines) or a bare
``model`` dict. Scoring (ADS) and teacher labelling default to the teacher's test
protocol: its config's ``test_pipeline`` (else ``test_dataloader.dataset.pipeline``),
without ``LoadAnnotations`` for what the teacher sees; a teacher with no test
pipeline sees each image at its native size. Class names default to the teacher
config's dataset metainfo (its test/val/train dataset's ``metainfo`` or registered
type's ``METAINFO``), else to those of the dataset its zoo metafile says it was trained
on, when the class count matches; else ``class_0 .. class_{C-1}``.
"""
import copy

from mmengine.config import Config
from mmengine.logging import print_log

from .teacher import CFG_PATH, describe_model_spec, resolve_config_path

ANNOTATION_LOADERS = ('LoadAnnotations', 'mmseg.LoadAnnotations')
# the image at its native size: what a bare teacher is scored on
NATIVE_PIPELINE = [dict(type='LoadImageFromFile'), dict(type='PackSegInputs')]
NATIVE_EVAL_PIPELINE = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
                        dict(type='PackSegInputs')]
DATALOADERS = ('test_dataloader', 'val_dataloader', 'train_dataloader')
# the training dataset names of MMSeg's metafiles (both lines) -> the dataset types
METAFILE_DATASETS = {
    'ADE20K': 'ADE20KDataset', 'CHASE_DB1': 'ChaseDB1Dataset',
    'COCO-Stuff 10k': 'COCOStuffDataset', 'COCO-Stuff 164k': 'COCOStuffDataset',
    'Cityscapes': 'CityscapesDataset', 'DRIVE': 'DRIVEDataset',
    'Dark Zurich and Nighttime Driving': 'DarkZurichDataset', 'HRF': 'HRFDataset',
    'LoveDA': 'LoveDADataset', 'Mapillary Vistas v1.2': 'MapillaryDataset_v1',
    'NYU': 'NYUDataset', 'Pascal Context': 'PascalContextDataset',
    'Pascal Context 59': 'PascalContextDataset59', 'Pascal VOC 2012 + Aug': 'PascalVOCDataset',
    'Potsdam': 'PotsdamDataset', 'STARE': 'STAREDataset', 'Vaihingen': 'ISPRSDataset',
    'iSAID': 'iSAIDDataset', 'Synapse': 'SynapseDataset',
}


def without_annotations(pipeline):
    """``pipeline`` minus its ``LoadAnnotations``: what the teacher sees of an image."""
    return [copy.deepcopy(t) for t in pipeline
            if not (isinstance(t, dict) and t.get('type') in ANNOTATION_LOADERS)]


def teacher_config(teacher):
    """The whole config file a teacher spec names (a path or ``cfg_path``), or None for
    an inline model dict."""
    path = teacher if isinstance(teacher, str) else (
        teacher.get(CFG_PATH) if isinstance(teacher, dict) else None)
    if not isinstance(path, str):
        return None
    return Config.fromfile(resolve_config_path(path))


def teacher_test_pipeline(teacher):
    """``(pipeline, where)``: the teacher config's test pipeline and the key it came
    from, or ``(None, None)`` when the config has none (a bare model config)."""
    cfg = teacher_config(teacher)
    if cfg is None:
        return None, None
    if cfg.get('test_pipeline'):
        return copy.deepcopy(list(cfg.test_pipeline)), 'test_pipeline'
    pipeline = ((cfg.get('test_dataloader') or {}).get('dataset') or {}).get('pipeline')
    if pipeline:
        return copy.deepcopy(list(pipeline)), 'test_dataloader.dataset.pipeline'
    return None, None


def default_score_pipeline(teacher, owner):
    """What the teacher scores an image on when ``score_pipeline`` is None: its test
    pipeline without ``LoadAnnotations``, else the image at its native size (logged)."""
    pipeline, where = teacher_test_pipeline(teacher)
    spec = describe_model_spec(teacher)
    if pipeline is None:
        print_log(f'{owner}: score_pipeline=None and the teacher config ({spec}) has no test '
                  'pipeline: each image is scored at its native size', logger='current')
        return copy.deepcopy(NATIVE_PIPELINE)
    print_log(f'{owner}: score_pipeline=None: the teacher config\'s {where} ({spec}), without '
              'LoadAnnotations', logger='current')
    return without_annotations(pipeline)


def default_eval_pipeline(teacher, owner):
    """The evaluation pipeline of teacher labels when ``pipeline`` is None: the teacher
    config's test pipeline (a ``LoadAnnotations`` added before packing if it has none),
    else the image at its native size with its label (logged)."""
    pipeline, where = teacher_test_pipeline(teacher)
    spec = describe_model_spec(teacher)
    if pipeline is None:
        print_log(f'{owner}: pipeline=None and the teacher config ({spec}) has no test '
                  'pipeline: images are labelled and scored at their native size',
                  logger='current')
        return copy.deepcopy(NATIVE_EVAL_PIPELINE)
    print_log(f'{owner}: pipeline=None: the teacher config\'s {where} ({spec})',
              logger='current')
    if not any(isinstance(t, dict) and t.get('type') in ANNOTATION_LOADERS for t in pipeline):
        pipeline.insert(len(pipeline) - 1, dict(type='LoadAnnotations'))
    return pipeline


def _count_matches(info, num_classes, where, owner):
    if num_classes is None or len(info['classes']) == num_classes:
        return True
    print_log(f'{owner}: {where} names {len(info["classes"])} classes, the teacher predicts '
              f'{num_classes}: not its class names', logger='current', level=30)
    return False


def metafile_metainfo(teacher, num_classes=None, owner='teacher classes'):
    """``(metainfo, where)`` from the zoo metafile of a ``pkg::`` teacher config: its
    training dataset's name (``Metadata: Training Data``, else ``Results: Dataset``) ->
    that MMSeg dataset type's ``METAINFO`` (:data:`METAFILE_DATASETS`), used when its
    class count is ``num_classes``; ``(None, None)`` otherwise."""
    from mmseg.registry import DATASETS

    from .zoo import metafile_entries, split_package_path
    path = teacher if isinstance(teacher, str) else (
        teacher.get(CFG_PATH) if isinstance(teacher, dict) else None)
    if not isinstance(path, str) or split_package_path(path) is None:
        return None, None
    try:
        entries, _ = metafile_entries(path)
    except (OSError, ValueError):  # not shipped / no metafile: no names from there
        return None, None
    for metafile, entry in entries:
        named = ((entry.get('Metadata') or {}).get('Training Data')
                 or (entry.get('Results') or {}).get('Dataset'))
        for name in ([named] if isinstance(named, str) else named or []):
            cls = DATASETS.get(METAFILE_DATASETS.get(name, ''))
            info = getattr(cls, 'METAINFO', None) or {}
            where = (f"the metafile's training data {name!r} ({metafile}): "
                     f'{METAFILE_DATASETS.get(name)}')
            if info.get('classes') and _count_matches(info, num_classes, where, owner):
                return copy.deepcopy(dict(info)), where
    return None, None


def teacher_metainfo(teacher, num_classes=None, owner='teacher classes'):
    """``(metainfo, where)`` of the teacher: its config's dataset (test, val, then train:
    its ``metainfo``, else its registered type's ``METAINFO``), else the zoo metafile
    (:func:`metafile_metainfo`); one naming ``num_classes`` classes when that is given
    (a mismatch is logged and skipped). ``(None, None)`` when neither names them."""
    from mmseg.registry import DATASETS
    cfg = teacher_config(teacher)
    if cfg is None:
        return None, None
    found = _dataset_metainfo(cfg, DATASETS)
    if found is not None and _count_matches(found[0], num_classes, found[1], owner):
        return found
    return metafile_metainfo(teacher, num_classes, owner)


def _dataset_metainfo(cfg, DATASETS):
    """``(metainfo, where)`` of the first dataloader dataset of ``cfg`` naming classes."""
    for key in DATALOADERS:
        ds = (cfg.get(key) or {}).get('dataset') or {}
        while isinstance(ds, dict) and ds.get('dataset') and not ds.get('metainfo'):
            ds = ds['dataset']  # a wrapper (RepeatDataset, ...): the dataset inside
        if not isinstance(ds, dict):
            continue
        if (ds.get('metainfo') or {}).get('classes'):
            return copy.deepcopy(dict(ds['metainfo'])), f'{key}.dataset.metainfo'
        cls = DATASETS.get(ds.get('type') or '') if isinstance(ds.get('type'), str) else None
        info = getattr(cls, 'METAINFO', None) or {}
        if info.get('classes'):
            return copy.deepcopy(dict(info)), f'{key}.dataset ({ds["type"]})'
    return None


__all__ = ['without_annotations', 'teacher_config', 'teacher_test_pipeline',
           'default_score_pipeline', 'default_eval_pipeline', 'teacher_metainfo',
           'metafile_metainfo', 'METAFILE_DATASETS',
           'NATIVE_PIPELINE', 'NATIVE_EVAL_PIPELINE', 'ANNOTATION_LOADERS']
