"""A teacher config's test protocol and class names fill what a DFSS config leaves
out; a bare teacher (a model dict alone) is scored at native size, classes numbered."""
import os.path as osp

from mmseg_dfss.core.pool_scorer import PoolScorer
from mmseg_dfss.core.teacher import load_model_config
from mmseg_dfss.core.teacher_defaults import NATIVE_PIPELINE, teacher_metainfo

TEACHER = 'configs/synthetic/deeplabv3_r18-tiny_synthetic.py'
NYUV2_TEACHER = 'configs/teachers/deeplabv3_r50-d8_nyuv2.py'


def bare_teacher(tmp_path, repo_root):
    """A teacher config file holding only ``model``."""
    model = load_model_config(osp.join(repo_root, TEACHER)).to_dict()
    path = tmp_path / 'bare_teacher.py'
    path.write_text(f'model = {model!r}\n')
    return str(path)


def test_scoring_defaults_to_the_teacher_test_pipeline_without_labels(repo_root):
    scorer = PoolScorer(dict(cfg_path=osp.join(repo_root, NYUV2_TEACHER)), 't.pth')
    assert scorer.score_pipeline == [
        dict(type='LoadImageFromFile'),
        dict(type='ResizeShortestEdge', scale=256, max_size=4096),
        dict(type='PackSegInputs')]


def test_a_bare_teacher_is_scored_at_native_size(tmp_path, repo_root):
    scorer = PoolScorer(bare_teacher(tmp_path, repo_root), 't.pth')
    assert scorer.score_pipeline == NATIVE_PIPELINE
    inline = PoolScorer(load_model_config(osp.join(repo_root, TEACHER)).to_dict(), 't.pth')
    assert inline.score_pipeline == NATIVE_PIPELINE


def test_a_given_score_pipeline_is_kept(repo_root):
    given = [dict(type='LoadImageFromFile'), dict(type='Resize', scale=(32, 32)),
             dict(type='PackSegInputs')]
    assert PoolScorer(osp.join(repo_root, TEACHER), 't.pth',
                      score_pipeline=given).score_pipeline == given


def test_class_names_come_from_the_teacher_dataset(tmp_path, repo_root):
    from mmseg_dfss.datasets import NYUv2Dataset
    info, where = teacher_metainfo(dict(cfg_path=osp.join(repo_root, NYUV2_TEACHER)))
    assert info['classes'] == NYUv2Dataset.METAINFO['classes']
    assert where == 'test_dataloader.dataset (NYUv2Dataset)'
    assert teacher_metainfo(bare_teacher(tmp_path, repo_root)) == (None, None)
