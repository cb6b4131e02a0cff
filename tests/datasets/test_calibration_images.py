"""INT8 calibration sets: ``ads:CONFIG`` reads the ADS-kept images (evenly over their
ranks) and the held-out check images from the score cache, scoring nothing; with no
cache the error says to run tools/ads_score.py; a folder holds back a tenth."""
import glob
import os
import os.path as osp
import shutil

import numpy as np
import pytest
from mmengine.config import Config
from mmseg.registry import DATASETS

from mmseg_dfss.core.cached_scores import MissingScoresError
from mmseg_dfss.datasets.calibration_images import calibration_sets

TEACHER = 'configs/synthetic/deeplabv3_r18-tiny_synthetic.py'
EPS = 8


def write_config(path, repo_root, pool, ckpt, cache):
    with open(path, 'w') as f:
        f.write(f"""
_base_ = [{osp.join(repo_root, 'configs/synthetic/ads_r18-tiny_synthetic-pool.py')!r}]
train_dataloader = dict(dataset=dict(
    dataset=dict(_delete_=True, type='UnlabeledImageDataset', data_prefix=dict(img_path={pool!r}),
                 pipeline=[]),
    teacher={osp.join(repo_root, TEACHER)!r}, teacher_checkpoint={ckpt!r},
    num_samples={EPS}, score_batch_size=24, cache_dir={cache!r}))
""")
    return str(path)


def cache_files(cache):
    return {p: (os.stat(p).st_size, os.stat(p).st_mtime_ns)
            for p in glob.glob(osp.join(cache, '**'), recursive=True) if osp.isfile(p)}


def test_ads_kept_images_come_from_the_cache(tmp_path, repo_root, synthetic_root, teacher_ckpt):
    pool, cache = tmp_path / 'pool', str(tmp_path / 'cache')
    pool.mkdir()
    for src in sorted(glob.glob(osp.join(synthetic_root, 'pool', '*', '*.png')))[::2][:24]:
        shutil.copy(src, pool / osp.basename(src))
    cfg = write_config(tmp_path / 'ads.py', repo_root, str(pool), teacher_ckpt, cache)
    with pytest.raises(MissingScoresError, match=r'run `python tools/ads_score.py .*ads\.py`'):
        calibration_sets(f'ads:{cfg}', num=4)
    assert not osp.exists(cache)  # reading wrote nothing

    scored = DATASETS.build(Config.fromfile(cfg).train_dataloader.dataset)  # fills the cache
    scores, paths = scored.result.scores, scored.result.paths
    ranked = sorted(range(len(paths)), key=lambda i: (scores[i], i))
    before = cache_files(cache)

    sets = calibration_sets(f'ads:{cfg}', num=3, num_check=6)
    assert cache_files(cache) == before  # nothing scored, nothing appended
    kept = [paths[i] for i in ranked[:EPS]]
    assert sets.calibration == [kept[0], kept[4], kept[7]]  # evenly over the ranks
    assert sets.check == [paths[i] for i in ranked[EPS:EPS + 6]]  # held out, never kept
    assert set(sets.calibration) <= set(paths[i] for i in scored.selected)


def test_folder_holds_back_a_tenth(synthetic_root):
    folder = osp.join(synthetic_root, 'pool')
    sets = calibration_sets(folder, num=200, seed=3)
    every = sorted(glob.glob(osp.join(folder, '**', '*.png'), recursive=True))
    assert len(sets.check) == len(every) // 10
    assert not set(sets.check) & set(sets.calibration)
    assert sorted(sets.check + sets.calibration) == every
    again = calibration_sets(folder, num=5, seed=3)
    assert again.check == sets.check and set(again.calibration) < set(sets.calibration)
    assert len(again.calibration) == 5
    assert calibration_sets(folder, num=5, seed=4).check != sets.check
    assert np.all([osp.isfile(p) for p in again.calibration])


def test_ads_config_takes_the_model_teacher_after_cfg_options(repo_root):
    """``ads:CONFIG`` (tools/quantize_onnx.py): the ADS wrapper of a DFSS config names no
    teacher; after --cfg-options it scores with the distiller's."""
    from mmseg_dfss.datasets.calibration_images import load_config
    cfg = load_config(osp.join(repo_root, 'configs/synthetic/ads_r18-tiny_synthetic-pool.py'),
                      {'model.teacher_checkpoint': 'new.pth',
                       'model.teacher.decode_head.channels': 8})
    ads = cfg.train_dataloader.dataset
    assert ads.teacher_checkpoint == 'new.pth' and ads.teacher.decode_head.channels == 8
