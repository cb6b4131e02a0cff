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
    ds = build(images, teacher_ckpt, tmp_path / 'c', repo_root, metainfo=None,
               metainfo_from='CamVidDataset', lazy_init=True)  # 11 names, before the teacher's
    assert len(ds.metainfo['classes']) == 11


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


ADE20K_LABEL_FREE = 'configs/label_free/deeplabv3_r50_to_mbv2_ade20k_label-free.py'


def ade20k_pipeline(repo_root):
    """The ADE20K recipe's evaluation pipeline, as its label-free variant inherits it
    (``LoadAnnotations(reduce_zero_label=True)``), with a 64 px resize."""
    from mmengine.config import Config
    pipeline = Config.fromfile(osp.join(repo_root, ADE20K_LABEL_FREE)
                               ).val_dataloader.dataset.pipeline
    (load, ) = [t for t in pipeline if t['type'] == 'LoadAnnotations']
    assert load['reduce_zero_label'] is True  # what the fix must cope with
    return [dict(t, scale=(64, 64)) if t['type'] == 'Resize' else t for t in pipeline]


def loaded_labels_are_the_files(ds):
    """(No ``assert`` statement: also checks under ``python -O``.)"""
    for i in range(len(ds)):
        got = ds[i]['data_samples'].gt_sem_seg.data[0].numpy()
        want = np.array(Image.open(ds.get_data_info(i)['seg_map_path']))
        np.testing.assert_array_equal(got, want, err_msg=f'label {i}')


def test_an_inherited_reduce_zero_label_pipeline_reads_the_labels_unchanged(
        images, teacher_ckpt, tmp_path, repo_root):
    ds = build(images, teacher_ckpt, tmp_path / 'cache', repo_root,
               pipeline=ade20k_pipeline(repo_root))
    loaded_labels_are_the_files(ds)
    teacher = build_frozen_segmentor(osp.join(repo_root, TEACHER), teacher_ckpt)
    assert evaluate(ds, teacher)[0] == 100.0


@pytest.mark.slow
def test_reduce_zero_label_is_handled_under_python_O(images, teacher_ckpt, tmp_path,
                                                     repo_root):
    """MMSeg checks reduce_zero_label with an assert: under -O it is skipped, and a
    reduced label would shift silently (class 0 -> 255, c -> c - 1)."""
    import subprocess
    import sys
    code = (
        'import sys; sys.path[:0] = [sys.argv[1], sys.argv[2]]\n'
        'from mmengine.registry import init_default_scope; init_default_scope("mmseg")\n'
        'import test_teacher_labeled as t\n'
        'ds = t.build(sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[1],\n'
        '             pipeline=t.ade20k_pipeline(sys.argv[1]))\n'
        't.loaded_labels_are_the_files(ds)\n'
        'try:\n    assert False\nexcept AssertionError:\n    sys.exit(3)\n'
        'print("labels read unchanged")\n')
    proc = subprocess.run(
        [sys.executable, '-O', '-c', code, repo_root, osp.dirname(__file__), images,
         teacher_ckpt, str(tmp_path / 'cache')], capture_output=True, text=True,
        timeout=600, env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert proc.returncode == 0 and 'labels read unchanged' in proc.stdout, \
        proc.stderr[-3000:]


def test_a_300_class_teacher_keeps_every_class(images, tmp_path, repo_root):
    """Classes above 255 survive the label file, and class 255 is no ignored pixel."""
    from mmseg.registry import TRANSFORMS
    spec = dict(cfg_path=osp.join(repo_root, TEACHER),
                decode_head=dict(num_classes=300), auxiliary_head=dict(num_classes=300))
    torch.manual_seed(0)
    model = build_frozen_segmentor(spec, allow_random_teacher=True)
    state = model.state_dict()
    bias = torch.full((300, ), -1e4)
    bias[[3, 255, 280]] = 0  # the teacher predicts only these three classes
    state['decode_head.conv_seg.bias'] = bias
    ckpt = str(tmp_path / 'teacher300.pth')
    torch.save({'state_dict': state}, ckpt)
    ds = build(images, ckpt, tmp_path / 'cache', repo_root, teacher=spec,
               metainfo=dict(classes=tuple(f'c{k}' for k in range(300))))
    assert ds.ignore_index == 300
    files = [ds.get_data_info(i)['seg_map_path'] for i in range(len(ds))]
    values = np.unique(np.concatenate([np.array(Image.open(f)).ravel() for f in files]))
    assert set(values) <= {3, 255, 280} and values.max() > 255, values
    assert isinstance(ds.pipeline.transforms[1], TRANSFORMS.get('LoadTeacherLabel'))
    loaded_labels_are_the_files(ds)
    teacher = build_frozen_segmentor(spec, ckpt)
    metric = IoUMetric(iou_metrics=['mIoU'], ignore_index=ds.ignore_index)
    metric.dataset_meta = ds.metainfo
    for i in range(len(ds)):
        data = ds[i]
        batch = dict(inputs=[data['inputs']], data_samples=[data['data_samples']])
        with torch.no_grad():
            metric.process(batch, [o.to_dict() for o in teacher.test_step(batch)])
    per_class = metric.compute_metrics(metric.results)
    assert per_class['mIoU'] == 100.0


def test_a_label_pipeline_that_turns_the_image_is_named(tmp_path, teacher_ckpt, repo_root):
    """A JPEG with EXIF orientation 6 (turned 90 degrees): the evaluation pipeline
    loads it turned (48x80 -> 80x48), a label_pipeline that ignores the orientation
    would make a 48x80 label."""
    folder = tmp_path / 'turned'
    folder.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (48, 80, 3), dtype=np.uint8)).save(
        folder / 'turned.jpg', exif=exif)
    ignore = [dict(type='LoadImageFromFile', color_type='color_ignore_orientation'),
              dict(type='PackSegInputs')]
    with pytest.raises(ValueError, match=r'turned\.jpg.* is 48x80 but the evaluation '
                                         r'pipeline loads the image as 80x48'):
        build(str(folder), teacher_ckpt, tmp_path / 'cache', repo_root, label_pipeline=ignore)
    ds = build(str(folder), teacher_ckpt, tmp_path / 'cache', repo_root)  # the default
    assert np.array(Image.open(ds.get_data_info(0)['seg_map_path'])).shape == (80, 48)


def _change_teacher_config(ctx):
    ctx['teacher'] = dict(cfg_path=ctx['teacher'], decode_head=dict(align_corners=True))


def _change_label_pipeline(ctx):
    ctx['label_pipeline'] = [dict(type='LoadImageFromFile'),
                             dict(type='Resize', scale=(40, 40), keep_ratio=True),
                             dict(type='PackSegInputs')]


def _change_image_stamp(ctx):
    path = osp.join(ctx['images'], 'img2.png')
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched, same bytes
    ctx['changed'] = [2]


def _change_image_path(ctx):
    os.rename(osp.join(ctx['images'], 'img2.png'), osp.join(ctx['images'], 'img2b.png'))
    ctx['changed'] = [2]  # still sorted third


@pytest.mark.parametrize('change', [_change_teacher_config, _change_label_pipeline,
                                    _change_image_stamp, _change_image_path],
                         ids=['teacher_config', 'label_pipeline', 'image_stamp', 'image_path'])
def test_each_part_of_the_cache_key_makes_new_labels(change, images, teacher_ckpt, tmp_path,
                                                     repo_root):
    """Each part of the label cache's key, changed alone, makes the labels again (the
    teacher's weights and an image's bytes: test_changed_teacher_or_image_makes_new_labels;
    the class count cannot change alone)."""
    few = tmp_path / 'few'  # 3 images keep it quick
    few.mkdir()
    for k in range(3):
        shutil.copy2(osp.join(images, f'img{k}.png'), few / f'img{k}.png')
    ctx = dict(images=str(few), teacher=osp.join(repo_root, TEACHER), label_pipeline=None)
    first = build(str(few), teacher_ckpt, tmp_path / 'cache', repo_root)
    change(ctx)
    again = build(ctx['images'], teacher_ckpt, tmp_path / 'cache', repo_root,
                  teacher=ctx['teacher'], label_pipeline=ctx['label_pipeline'])
    changed = ctx.get('changed')
    if changed is None:  # a setup part: a new folder, every image labelled again
        assert again.label_dir != first.label_dir
        assert sorted(again.labelled_here) == [0, 1, 2]
    else:  # an image's identity: that image only
        assert again.label_dir == first.label_dir and again.labelled_here == changed


def test_pipeline_and_classes_default_to_the_teacher_config(images, tmp_path, repo_root):
    teacher = tmp_path / 'teacher.py'
    resize = dict(type='Resize', scale=(32, 32), keep_ratio=True)
    teacher.write_text(f"_base_ = [{osp.join(repo_root, TEACHER)!r}]\n"
                       f"test_pipeline = [dict(type='LoadImageFromFile'), {resize!r}, "
                       "dict(type='LoadAnnotations'), dict(type='PackSegInputs')]\n")
    ds = build(images, None, tmp_path / 'cache', repo_root, teacher=str(teacher),
               pipeline=None, metainfo=None, allow_random_teacher=True, lazy_init=True)
    assert ds.metainfo['classes'] == CLASSES  # the teacher's SyntheticScenesDataset
    # the teacher's test_pipeline; the teacher sees it without LoadAnnotations
    assert ds.label_pipeline == [dict(type='LoadImageFromFile'), resize,
                                 dict(type='PackSegInputs')]
    assert [type(t).__name__ for t in ds.pipeline.transforms] == [
        'LoadImageFromFile', 'Resize', 'LoadAnnotations', 'PackSegInputs']


def test_a_bare_teacher_labels_native_size_with_numbered_classes(images, tmp_path, repo_root):
    from mmseg_dfss.core import load_model_config
    bare = tmp_path / 'bare_teacher.py'
    bare.write_text(f'model = {load_model_config(osp.join(repo_root, TEACHER)).to_dict()!r}\n')
    ds = build(images, None, tmp_path / 'cache', repo_root, teacher=str(bare), pipeline=None,
               metainfo=None, allow_random_teacher=True)
    assert ds.metainfo['classes'] == tuple(f'class_{i}' for i in range(len(CLASSES)))
    for i in range(len(ds)):
        info = ds.get_data_info(i)
        assert Image.open(info['seg_map_path']).size == Image.open(info['img_path']).size
    assert ds[0]['data_samples'].gt_sem_seg.data.shape[-2:] == \
        ds[0]['inputs'].shape[-2:]  # labels loaded with the image, nothing resized
