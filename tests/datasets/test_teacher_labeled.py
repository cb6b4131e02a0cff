"""TeacherLabeledDataset: the teacher's predictions as labels, cached as PNG label maps;
MMSeg's IoUMetric on it measures agreement with the teacher."""
import glob
import json
import os
import os.path as osp
import shutil

import numpy as np
import pytest
import torch
from mmengine.registry import init_default_scope
from mmseg.evaluation import IoUMetric
from PIL import Image

from mmseg_dfss.core import build_frozen_segmentor
from mmseg_dfss.datasets import TeacherLabeledDataset
from mmseg_dfss.datasets.synthetic.rooms import CLASSES, PALETTE

TEACHER = 'configs/synthetic/deeplabv3_r18-tiny_synthetic.py'
STUDENT = 'configs/synthetic/deeplabv3_mbv2-tiny_synthetic.py'
PIPELINE = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
            dict(type='PackSegInputs')]
METAINFO = dict(classes=CLASSES, palette=PALETTE)
NUM_IMAGES = 6


@pytest.fixture(autouse=True)
def mmseg_scope():
    init_default_scope('mmseg')


@pytest.fixture
def images(tmp_path, synthetic_root):
    """6 synthetic pool images (64 px) and 2 rooms resized to other sizes (so labels
    must come back at each image's own size)."""
    root = tmp_path / 'images'
    root.mkdir()
    pool = sorted(glob.glob(osp.join(synthetic_root, 'pool', '**', '*.png'), recursive=True))
    for k, src in enumerate(pool[:NUM_IMAGES - 2]):
        shutil.copy(src, root / f'img{k}.png')
    rooms = sorted(glob.glob(osp.join(synthetic_root, 'scenes', 'img_dir', 'test', '*.png')))
    for k, (src, size) in enumerate(zip(rooms, [(80, 56), (48, 72)])):
        Image.open(src).convert('RGB').resize(size).save(root / f'room{k}.png')
    return str(root)


def build(images, ckpt, cache, repo_root, **kw):
    args = dict(dataset=dict(type='UnlabeledImageDataset', data_prefix=dict(img_path=images)),
                teacher=osp.join(repo_root, TEACHER), teacher_checkpoint=ckpt,
                cache_dir=str(cache), pipeline=PIPELINE, metainfo=METAINFO, progress=False)
    args.update(kw)
    return TeacherLabeledDataset(**args)


def evaluate(ds, model):
    """MMSeg's IoUMetric of ``model`` on ``ds`` (batch 1, as the val loop); also
    returns every (prediction, label) pair."""
    metric = IoUMetric(iou_metrics=['mIoU'])
    metric.dataset_meta = ds.metainfo
    pairs = []
    for i in range(len(ds)):
        data = ds[i]
        batch = dict(inputs=[data['inputs']], data_samples=[data['data_samples']])
        with torch.no_grad():
            out = model.test_step(batch)
        metric.process(batch, [o.to_dict() for o in out])  # as MMEngine's Evaluator
        pairs.append((out[0].pred_sem_seg.data[0].numpy(),
                      out[0].gt_sem_seg.data[0].numpy()))
    return metric.compute_metrics(metric.results)['mIoU'], pairs


def label_files(ds):
    return sorted(glob.glob(osp.join(ds.label_dir, '*.png')))


def test_teacher_scores_100_against_its_own_labels(images, teacher_ckpt, tmp_path, repo_root):
    ds = build(images, teacher_ckpt, tmp_path / 'cache', repo_root)
    assert len(ds) == NUM_IMAGES and len(label_files(ds)) == NUM_IMAGES
    # labels are stored at each image's original size
    for info in (ds.get_data_info(i) for i in range(len(ds))):
        assert Image.open(info['seg_map_path']).size == Image.open(info['img_path']).size
    teacher = build_frozen_segmentor(osp.join(repo_root, TEACHER), teacher_ckpt)
    miou, pairs = evaluate(ds, teacher)
    assert miou == 100.0
    assert len({int(c) for _, gt in pairs for c in np.unique(gt)}) > 1  # not a one-class map


def test_random_student_miou_equals_per_class_iou(images, teacher_ckpt, tmp_path, repo_root):
    ds = build(images, teacher_ckpt, tmp_path / 'cache', repo_root)
    torch.manual_seed(1)
    student = build_frozen_segmentor(osp.join(repo_root, STUDENT), allow_random_teacher=True)
    miou, pairs = evaluate(ds, student)
    # independently: the cached PNGs and the student's predictions, class by class
    inter = np.zeros(len(CLASSES))
    union = np.zeros(len(CLASSES))
    for i, (pred, gt_packed) in enumerate(pairs):
        gt = np.array(Image.open(ds.get_data_info(i)['seg_map_path']))
        assert gt.shape == pred.shape
        for c in range(len(CLASSES)):
            inter[c] += np.sum((pred == c) & (gt == c))
            union[c] += np.sum((pred == c) | (gt == c))
    present = union > 0
    expected = 100 * np.mean(inter[present] / union[present])
    assert 0 < expected < 100
    assert miou == pytest.approx(expected, abs=0.01)  # IoUMetric rounds to 2 decimals


def stats(files):
    return {f: (os.stat(f).st_ino, os.stat(f).st_mtime_ns) for f in files}


def test_rerun_reads_the_cache_and_touches_no_label(images, teacher_ckpt, tmp_path, repo_root):
    first = build(images, teacher_ckpt, tmp_path / 'cache', repo_root)
    before = stats(label_files(first))
    assert sorted(first.labelled_here) == list(range(NUM_IMAGES))
    second = build(images, teacher_ckpt, tmp_path / 'cache', repo_root)
    assert second.labelled_here == []
    assert second.label_dir == first.label_dir
    assert stats(label_files(second)) == before
    assert [second.get_data_info(i)['seg_map_path'] for i in range(NUM_IMAGES)] == \
        [first.get_data_info(i)['seg_map_path'] for i in range(NUM_IMAGES)]


def test_changed_teacher_or_image_makes_new_labels(images, teacher_ckpt, tmp_path, repo_root):
    ckpt = str(tmp_path / 'teacher.pth')
    shutil.copy(teacher_ckpt, ckpt)
    old = build(images, ckpt, tmp_path / 'cache', repo_root)
    old_labels = [np.array(Image.open(old.get_data_info(i)['seg_map_path']))
                  for i in range(NUM_IMAGES)]
    # the teacher retrained and saved over the same file
    state = torch.load(ckpt, weights_only=True)['state_dict']
    w = state['decode_head.conv_seg.weight']
    state['decode_head.conv_seg.weight'] = w.flip(0)  # classes permuted
    state['decode_head.conv_seg.bias'] = state['decode_head.conv_seg.bias'].flip(0)
    torch.save({'state_dict': state}, ckpt)
    new = build(images, ckpt, tmp_path / 'cache', repo_root)
    assert new.label_dir != old.label_dir
    assert sorted(new.labelled_here) == list(range(NUM_IMAGES))
    new_labels = [np.array(Image.open(new.get_data_info(i)['seg_map_path']))
                  for i in range(NUM_IMAGES)]
    teacher = build_frozen_segmentor(osp.join(repo_root, TEACHER), ckpt)
    assert evaluate(new, teacher)[0] == 100.0
    assert any((a != b).any() for a, b in zip(old_labels, new_labels))
    # one image overwritten in place: only it is labelled again
    target = osp.join(images, 'img1.png')
    Image.open(osp.join(images, 'room0.png')).resize((64, 64)).save(target)
    again = build(images, ckpt, tmp_path / 'cache', repo_root)
    assert again.dataset.get_data_info(1)['img_path'] == target
    assert again.labelled_here == [1]
    assert again.get_data_info(1)['seg_map_path'] != new.get_data_info(1)['seg_map_path']


def test_unreadable_images_are_counted_and_skipped(images, teacher_ckpt, tmp_path, repo_root):
    with open(osp.join(images, 'zz_broken.png'), 'wb') as f:
        f.write(b'\x89PNG\r\n\x1a\n' + b'\x00' * 40)
    ds = build(images, teacher_ckpt, tmp_path / 'cache', repo_root, max_unreadable=0.2)
    assert len(ds) == NUM_IMAGES and ds.num_unreadable == 1
    assert list(ds.unreadable) == [osp.join(images, 'zz_broken.png')]
    before = stats(glob.glob(osp.join(ds.label_dir, '*')))
    assert len(before) == NUM_IMAGES + 2  # labels, the unreadable image's note, meta.json
    again = build(images, teacher_ckpt, tmp_path / 'cache', repo_root, max_unreadable=0.2)
    assert again.labelled_here == [] and again.num_unreadable == 1
    # remembered: the bad file is not tried again, nothing in the cache is rewritten
    assert stats(glob.glob(osp.join(ds.label_dir, '*'))) == before
    with pytest.raises(RuntimeError, match=r'unreadable - wrong data_root\?'):
        build(images, teacher_ckpt, tmp_path / 'cache2', repo_root, max_unreadable=0.1)


def test_bad_input_is_named(images, teacher_ckpt, tmp_path, repo_root):
    classes = CLASSES + ('extra', )
    with pytest.raises(ValueError, match=r'predicts 7 classes .* metainfo names 8 classes'):
        build(images, teacher_ckpt, tmp_path / 'c', repo_root,
              metainfo=dict(classes=classes))
    missing = str(tmp_path / 'no_such_folder')
    with pytest.raises(FileNotFoundError, match='no_such_folder'):
        build(missing, teacher_ckpt, tmp_path / 'c', repo_root)
    empty = tmp_path / 'empty'
    empty.mkdir()
    with pytest.raises(ValueError, match=f'no images found in {str(empty)!r}'):
        build(str(empty), teacher_ckpt, tmp_path / 'c', repo_root)
    with pytest.raises(ValueError, match='the class names are unknown'):
        build(images, teacher_ckpt, tmp_path / 'c', repo_root, metainfo=None)
    ds = build(images, teacher_ckpt, tmp_path / 'c', repo_root, metainfo=None,
               metainfo_from='SyntheticScenesDataset')
    assert ds.metainfo['classes'] == CLASSES


def _worker(rank, world, tmp, images, ckpt, teacher):
    import torch.distributed as dist
    from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    import mmseg_dfss  # noqa: F401
    torch.set_num_threads(1)
    dist.init_process_group('gloo', init_method=f'file://{tmp}/store', rank=rank,
                            world_size=world)
    ds = TeacherLabeledDataset(
        dataset=dict(type='UnlabeledImageDataset', data_prefix=dict(img_path=images)),
        teacher=teacher, teacher_checkpoint=ckpt, cache_dir=osp.join(tmp, 'cache'),
        pipeline=PIPELINE, metainfo=METAINFO, progress=False)
    out = dict(labelled=ds.labelled_here,
               labels=[ds.get_data_info(i)['seg_map_path'] for i in range(len(ds))])
    with open(osp.join(tmp, f'rank{rank}.json'), 'w') as f:
        json.dump(out, f)
    dist.barrier()
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_processes_label_each_image_once(images, teacher_ckpt, tmp_path, repo_root):
    import torch.multiprocessing as mp
    mp.start_processes(_worker, args=(2, str(tmp_path), images, teacher_ckpt,
                                      osp.join(repo_root, TEACHER)),
                       nprocs=2, join=True, start_method='spawn')
    outs = [json.load(open(tmp_path / f'rank{r}.json')) for r in range(2)]
    done = outs[0]['labelled'] + outs[1]['labelled']
    assert sorted(done) == list(range(NUM_IMAGES))  # every image once, by one rank
    assert outs[0]['labelled'] and outs[1]['labelled']  # the work was shared
    assert outs[0]['labels'] == outs[1]['labels'] and len(outs[0]['labels']) == NUM_IMAGES
    # and the labels are the ones a single process makes
    ref = build(images, teacher_ckpt, tmp_path / 'cache', repo_root)
    assert ref.labelled_here == []
    single = build(images, teacher_ckpt, tmp_path / 'single', repo_root)
    for a, b in zip(label_files(ref), label_files(single)):
        assert (np.array(Image.open(a)) == np.array(Image.open(b))).all()
