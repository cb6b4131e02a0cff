"""The teacher is named once, in ``model``: resolve_shared gives it (and what the
command line changed in it) to each dataset that runs it, and gives the held-out set
the training ADS settings."""
import pytest
from mmengine.config import Config

from mmseg_dfss.core.shared_teacher import resolve_shared

TEACHER = 'configs/synthetic/deeplabv3_r18-tiny_synthetic.py'
POOL = dict(type='UnlabeledImageDataset', data_root='data/pool')


def short_config(tmp_path, repo_root, text='', ads=''):
    path = tmp_path / 'cfg.py'
    path.write_text(
        f"_base_ = ['{repo_root}/configs/_base_/dfss/dfss_label_free.py']\n"
        f"model = dict(teacher=dict(cfg_path='{TEACHER}'), teacher_checkpoint='t.pth',\n"
        "             student=dict(cfg_path='s.py'))\n"
        f'train_dataloader = dict(dataset=dict(dataset={POOL!r}, num_samples=7{ads}))\n' + text)
    return Config.fromfile(str(path))


OVERRIDE = {'model.teacher.decode_head.num_classes': 5, 'model.teacher_checkpoint': 'new.pth',
            'model.allow_random_teacher': True}


def resolved(cfg):
    cfg.merge_from_dict(OVERRIDE)  # as --cfg-options, before the runner resolves
    return resolve_shared(cfg)


def assert_follows_the_model(ds):
    assert ds.teacher == dict(cfg_path=TEACHER, decode_head=dict(num_classes=5))
    assert ds.teacher_checkpoint == 'new.pth' and ds.allow_random_teacher is True


def test_the_ads_wrapper_takes_the_model_teacher(tmp_path, repo_root):
    cfg = resolved(short_config(tmp_path, repo_root))
    assert_follows_the_model(cfg.train_dataloader.dataset)


def test_the_teacher_labelled_set_takes_the_model_teacher(tmp_path, repo_root):
    cfg = resolved(short_config(tmp_path, repo_root))
    assert_follows_the_model(cfg.val_dataloader.dataset)


def test_the_held_out_set_takes_the_teacher_and_the_training_selection(tmp_path, repo_root):
    cfg = short_config(tmp_path, repo_root, ads=", strategy='confidence', cache_dir='cache', "
                       'seed=3, score_batch_size=2')
    held = resolved(cfg).val_dataloader.dataset.dataset
    assert_follows_the_model(held)
    assert held.num_skipped == 7 and held.num_samples == 500  # ranks after the eps
    assert held.dataset == POOL
    assert (held.strategy, held.cache_dir, held.seed, held.score_batch_size) == \
        ('confidence', 'cache', 3, 2)


def test_a_test_dataloader_is_resolved_too(tmp_path, repo_root):
    cfg = resolved(short_config(tmp_path, repo_root, "test_dataloader = dict(dataset=dict("
                                "type='TeacherLabeledDataset', dataset={}))\n"))
    assert_follows_the_model(cfg.test_dataloader.dataset)


def test_a_dataset_that_names_its_own_teacher_keeps_it(tmp_path, repo_root):
    cfg = resolved(short_config(tmp_path, repo_root,
                                ads=", teacher='other.py', teacher_checkpoint='other.pth'"))
    ads = cfg.train_dataloader.dataset
    assert (ads.teacher, ads.teacher_checkpoint) == ('other.py', 'other.pth')
    held = cfg.val_dataloader.dataset.dataset  # the held-out set scores as training did
    assert (held.teacher, held.teacher_checkpoint) == ('other.py', 'other.pth')


def test_a_config_without_a_distiller_is_left_alone(tmp_path):
    path = tmp_path / 'plain.py'
    path.write_text("val_dataloader = dict(dataset=dict(type='TeacherLabeledDataset', "
                    "teacher='t.py', dataset=dict(type='UnlabeledImageDataset')))\n")
    cfg = Config.fromfile(str(path))
    before = cfg.to_dict()
    assert resolve_shared(cfg).to_dict() == before


@pytest.mark.parametrize('type_', ['ADSDataset', 'TeacherLabeledDataset'])
def test_a_dataset_built_without_a_teacher_names_the_key(type_):
    from mmseg.registry import DATASETS
    with pytest.raises(ValueError, match='teacher is not set.*model.teacher'):
        DATASETS.build(dict(type=type_, dataset=POOL, num_samples=1))


def test_a_held_out_set_without_num_skipped_names_the_key():
    from mmseg.registry import DATASETS
    with pytest.raises(ValueError, match='num_skipped .* is not set'):
        DATASETS.build(dict(type='ADSHeldOutDataset', dataset=POOL, teacher=TEACHER,
                            num_samples=1))


def test_the_runner_resolves_before_it_builds(tmp_path, repo_root, monkeypatch):
    from mmengine.runner import Runner
    from mmseg.registry import RUNNERS
    seen = {}
    monkeypatch.setattr(Runner, 'from_cfg', classmethod(lambda cls, cfg: seen.setdefault(
        'cfg', cfg)))
    cfg = short_config(tmp_path, repo_root)
    cfg.merge_from_dict(OVERRIDE)
    RUNNERS.build(cfg)
    assert_follows_the_model(seen['cfg'].train_dataloader.dataset)
    assert_follows_the_model(seen['cfg'].val_dataloader.dataset.dataset)


def test_overrides_of_a_dataset_teacher_merge_over_the_model_teacher(tmp_path, repo_root):
    cfg = short_config(tmp_path, repo_root)
    cfg.merge_from_dict({'train_dataloader.dataset.teacher.test_cfg.mode': 'whole'})
    ads = resolve_shared(cfg).train_dataloader.dataset
    assert ads.teacher == dict(cfg_path=TEACHER, test_cfg=dict(mode='whole'))
    assert ads.teacher_checkpoint == 't.pth'


def test_a_dataset_checkpoint_given_with_an_unset_teacher_is_kept(tmp_path, repo_root):
    """``train_dataloader.dataset.teacher_checkpoint=X`` alone: the model's teacher with X
    (a different X stops the run in the distiller's identity check)."""
    cfg = short_config(tmp_path, repo_root, ads=", teacher_checkpoint='other.pth'")
    ads = resolve_shared(cfg).train_dataloader.dataset
    assert (ads.teacher, ads.teacher_checkpoint) == (dict(cfg_path=TEACHER), 'other.pth')


def test_an_old_style_dataset_teacher_with_delete_builds(tmp_path, repo_root):
    """A config written before the teacher was named once gives its ADS wrapper a whole
    teacher with ``_delete_=True``; the base leaves that teacher unset, so MMEngine keeps
    the marker in the dict. The dataset's teacher still builds, as the model's does."""
    from mmseg_dfss.core import load_model_config
    from mmseg_dfss.core.teacher import build_segmentor
    whole = load_model_config(f'{repo_root}/{TEACHER}').to_dict()
    whole['_delete_'] = True
    cfg = resolve_shared(short_config(tmp_path, repo_root, ads=f', teacher={whole!r}'))
    spec = cfg.train_dataloader.dataset.teacher
    assert spec.get('_delete_') is True  # what MMEngine left: the case guarded here
    assert '_delete_' not in load_model_config(spec)
    assert load_model_config(spec) == load_model_config(f'{repo_root}/{TEACHER}')
    build_segmentor(spec)
