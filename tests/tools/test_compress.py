"""tools/compress.py end to end on a tiny synthetic pool: the report's promises, a
rerun that recomputes and rewrites nothing, the exported student's config giving the
reported agreement, and each bad input's one line."""
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
from cli_utils import snapshot as _snapshot
import torch

from mmseg_dfss.apis.compress import main
from mmseg_dfss.models.onnx_export import PARITY_ATOL

TEACHER = 'configs/synthetic/deeplabv3_r18-tiny_synthetic.py'
STUDENT = 'configs/synthetic/deeplabv3_mbv2-tiny_synthetic.py'
STAGES = ('pool', 'select', 'train', 'judge', 'ship', 'report')


def _args(pool, work_dir, teacher_ckpt, *extra):
    return [TEACHER, '--pool', pool, '--work-dir', str(work_dir), '--teacher-checkpoint',
            teacher_ckpt, '--student', STUDENT, '--eps', '16', '--val-images', '4',
            '--iters', '2', '--batch-size', '2', *extra]


def _flat_pool(folder, n=8):
    """``n`` images of one grey level each (no texture: entropy 0 bits)."""
    import cv2
    import numpy as np
    os.makedirs(folder, exist_ok=True)
    for i in range(n):
        cv2.imwrite(osp.join(folder, f'flat_{i}.png'), np.full((64, 64, 3), 30 * i, np.uint8))
    return str(folder)


@pytest.fixture(scope='module')
def compressed(tmp_path_factory, synthetic_root, teacher_ckpt, tool):
    """One tiny run on two pools: the synthetic pool and 8 flat images (``flat``)."""
    root = tmp_path_factory.mktemp('compress')
    work_dir = root / 'run'
    pool = osp.join(synthetic_root, 'pool')
    flat = _flat_pool(root / 'flat')
    proc = tool('tools/compress.py', *_args(pool, work_dir, teacher_ckpt, '--pool',
                                            f'flat={flat}'))
    return work_dir, pool, proc, flat


def test_report_holds_every_stage_and_says_agreement_is_not_accuracy(compressed):
    work_dir, pool, proc, flat = compressed
    with open(work_dir / 'report.json') as f:
        report = json.load(f)
    kept, judged = report['select']['kept'], report['judge']['images']
    assert report['select']['eps'] == len(kept) == 16
    assert len(judged) == 4 and not set(kept) & set(judged)  # held out, never trained on
    for path in kept + judged:
        assert osp.isabs(path) and osp.isfile(path) and path.startswith((pool, flat))
    assert 0 <= report['judge']['miou'] <= 100
    assert set(report['judge']['per_class']) <= set(report['teacher']['classes'])
    assert osp.isfile(report['ship']['onnx'])
    assert report['ship']['max_abs_diff'] <= PARITY_ATOL
    table = report['ship']['compression']
    for role in ('teacher', 'student'):
        assert table[role]['params'] > 0 and table[role]['flops'] > 0
        assert table[role]['pytorch_s'] > 0 and table[role]['onnxruntime_s'] > 0
    assert table['teacher']['params'] > table['student']['params']
    html = (work_dir / 'report.html').read_text()
    assert 'Agreement is not accuracy' in html
    assert html.count('src="data:image/png;base64,') >= 4  # histogram, gallery, bars, worst
    assert 'src="http' not in html and '<link' not in html and '<script' not in html
    last = proc.stdout.strip().splitlines()[-2:]
    assert str(work_dir / 'report.html') in last[0]
    assert f'mIoU {report["judge"]["miou"]:.2f}' in last[1]
    for cache in ('ads_cache', 'teacher_labels', 'train'):  # every cache is under DIR
        assert os.listdir(work_dir / cache)


def _ads_pools(cfg):
    """``{source name: image folder}`` of the ADS wrapper of a written config."""
    ads = cfg.train_dataloader.dataset
    pools = ads.dataset.get('datasets') or [ads.dataset]
    names = ads.get('source_names') or ['pool']
    return {n: p.data_prefix.img_path for n, p in zip(names, pools)}


def test_pool_stage_compares_the_pools_and_the_config_trains_on_its_verdict(compressed):
    from mmengine.config import Config

    from mmseg_dfss.core.pool_compare import choose_pools
    work_dir, pool, _, flat = compressed
    with open(work_dir / 'report.json') as f:
        report = json.load(f)
    p = report['pool']
    assert set(p['pools']) == {'pool', 'flat'}
    assert (p['pools']['pool']['num_images'], p['pools']['flat']['num_images']) == (64, 8)
    assert p['pools']['flat']['unreadable'] == 0
    assert p['pools']['flat']['entropy']['mean'] == 0  # one grey level per image
    assert p['pools']['pool']['entropy']['mean'] > 1
    d = p['pools']['pool']['distance']
    assert 0 < d['p5'] <= d['p25'] <= d['median']
    assert sum(q['selected_in_merge'] for q in p['pools'].values()) == 16
    assert (p['used'], p['verdict']) == choose_pools(dict(p, best_pool=p['best'],
                                                          original=None))
    # the written config trains on exactly the pools the verdict uses
    cfg = Config.fromfile(str(work_dir / 'dfss_config.py'))
    folders = dict(pool=pool, flat=flat)
    assert _ads_pools(cfg) == {n: folders[n] for n in p['used']} or (
        len(p['used']) == 1 and list(_ads_pools(cfg).values()) == [folders[p['used'][0]]])
    assert all(k.startswith(tuple(folders[n] for n in p['used'])) for k in
               report['select']['kept'])
    html = (work_dir / 'report.html').read_text()
    assert p['verdict'] in html.replace('&#x27;', "'")
    assert report['commands']['pool'].startswith(
        f'python tools/compare_pools.py {work_dir / "dfss_config.py"} --pools pool={pool} '
        f'flat={flat} --eps 16 ')
    for key in ('distance_hist', 'entropy_hist', 'merge_mix', 'summary', 'scores'):
        assert osp.isfile(p[key])


def test_written_config_is_short_and_uses_the_chosen_pools(tmp_path, synthetic_root,
                                                           teacher_ckpt):
    """About 20 lines for one pool; with several, the verdict's pools only."""
    from mmengine.config import Config

    from mmseg_dfss.apis.compress.dfss_config import config_text, write_config
    from mmseg_dfss.apis.compress.plan import make_plan
    pool = osp.join(synthetic_root, 'pool')
    flat = _flat_pool(tmp_path / 'flat')
    plan = make_plan(_args(pool, tmp_path / 'w', teacher_ckpt))
    lines = config_text(plan).splitlines()
    code = [line for line in lines if not line.startswith('#')]
    assert len(code) <= 26 and len(lines) <= 30, '\n'.join(lines)
    plan = make_plan(_args(pool, tmp_path / 'w', teacher_ckpt, '--pool', f'flat={flat}'))
    assert _ads_pools(Config.fromstring(config_text(plan), '.py')) == dict(pool=pool, flat=flat)
    cfg = Config.fromfile(write_config(plan, ['flat']))
    assert list(_ads_pools(cfg).values()) == [flat]
    assert 'source_names' not in cfg.train_dataloader.dataset


def test_rerun_recomputes_and_rewrites_nothing(compressed, teacher_ckpt, tool):
    work_dir, pool, _, flat = compressed
    before = _snapshot(work_dir)
    proc = tool('tools/compress.py', *_args(pool, work_dir, teacher_ckpt, '--pool',
                                            f'flat={flat}'))
    assert _snapshot(work_dir) == before  # no file written, no log folder made
    for name in STAGES:
        assert f'[compress] {name}: reused' in proc.stdout


def test_exported_config_evaluates_to_the_reported_agreement(compressed):
    from mmengine.config import Config
    from mmseg.apis import init_model

    from mmseg_dfss.apis.compress.judge_stage import IOU_METRIC_ROUNDING, true_miou
    work_dir, _, _, _ = compressed
    with open(work_dir / 'report.json') as f:
        report = json.load(f)
    cfg = str(work_dir / 'student' / 'student_config.py')
    assert 'DataFreeDistiller' not in Config.fromfile(cfg).pretty_text  # plain MMSeg
    model = init_model(cfg, str(work_dir / 'student' / 'student.pth'), device='cpu')
    torch.manual_seed(0)
    got = true_miou(model, cfg)
    assert got['num_images'] == len(report['judge']['images'])
    assert got['miou'] == pytest.approx(report['judge']['miou'], abs=IOU_METRIC_ROUNDING)
    # the test set pairs each judged image with its own teacher label: the teacher
    # evaluated with the same config agrees with itself (up to argmax ties across runs)
    from mmseg_dfss.core.teacher import build_frozen_segmentor
    teacher = build_frozen_segmentor(report['teacher']['config'],
                                     report['teacher']['checkpoint'])
    assert true_miou(teacher, cfg)['miou'] > 99


def _labelled_set(root, images, student, classes):
    """A labelled MMSeg dataset of ``images`` whose labels are the student's own
    prediction on the first half and its prediction + 1 (mod C) on the second, so its
    true mIoU is known; pixels whose top-2 logits are within twice EXPORT_ATOL (whose
    argmax another run may decide otherwise) are labelled 255 (ignored)."""
    import cv2
    import numpy as np

    from mmseg_dfss.models.student_export import EXPORT_ATOL
    for sub in ('img', 'ann'):
        os.makedirs(osp.join(root, sub), exist_ok=True)
    pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
                dict(type='PackSegInputs')]
    preds, labels = [], []
    for k, path in enumerate(images):
        cv2.imwrite(osp.join(root, 'img', f'{k}.png'), cv2.imread(path))
    text = (f"test_dataloader = dict(batch_size=1, num_workers=0, sampler=dict("
            f"type='DefaultSampler', shuffle=False), dataset=dict(type='BaseSegDataset', "
            f"data_root={str(root)!r}, data_prefix=dict(img_path='img', seg_map_path='ann'), "
            f"img_suffix='.png', seg_map_suffix='.png', metainfo=dict(classes="
            f"{tuple(classes)!r}), pipeline={pipeline!r}))\n")
    cfg_path = osp.join(root, 'labelled.py')
    with open(cfg_path, 'w') as f:
        f.write(text)
    for k, path in enumerate(images):  # the student's logits at the image's own size
        img = cv2.imread(path)
        cv2.imwrite(osp.join(root, 'ann', f'{k}.png'), np.zeros(img.shape[:2], np.uint8))
    from mmengine.config import Config
    from mmseg.registry import DATASETS
    ds = DATASETS.build(Config.fromfile(cfg_path).test_dataloader.dataset)
    for k in range(len(ds)):
        data = ds[k]
        with torch.no_grad():
            out, = student.test_step(dict(inputs=[data['inputs']],
                                          data_samples=[data['data_samples']]))
        logits = out.seg_logits.data.numpy()
        top2 = np.sort(logits, axis=0)[-2:]
        pred = logits.argmax(0)
        label = pred if k < len(ds) // 2 else (pred + 1) % len(classes)
        label = np.where(top2[1] - top2[0] > 2 * EXPORT_ATOL, label, 255).astype(np.uint8)
        cv2.imwrite(osp.join(root, 'ann', f'{k}.png'), label)
        preds.append(pred)
        labels.append(label)
    return cfg_path, np.stack(preds), np.stack(labels)


def test_val_dataset_reports_the_true_miou_of_a_labelled_set(compressed, tmp_path):
    """--val-dataset: the judge stage reports the student's mIoU on a labelled MMSeg
    dataset (judge.val_dataset), as IoUMetric computes it from the labels."""
    import numpy as np
    from mmengine.config import Config

    from mmseg_dfss.apis.compress.judge_stage import IOU_METRIC_ROUNDING, run_judge
    from mmseg_dfss.core.shared_teacher import resolve_shared
    from mmseg_dfss.utils.label_free import load_student
    work_dir, pool, _, _ = compressed
    report = _report(work_dir)
    cfg = resolve_shared(Config.fromfile(str(work_dir / 'dfss_config.py')))
    ckpt = report['train']['checkpoint']
    classes = report['teacher']['classes']
    images = sorted(report['select']['kept'])[:6]
    val_cfg, preds, labels = _labelled_set(tmp_path / 'labelled', images,
                                           load_student(cfg, ckpt, 'cpu'), classes)
    got = run_judge(cfg, ckpt, str(tmp_path / 'judge'), val_cfg)['val_dataset']
    valid = labels != 255
    assert valid.mean() > 0.5 and (preds[3:] != labels[3:])[valid[3:]].all()
    ious = {}
    for c, name in enumerate(classes):
        union = (((preds == c) | (labels == c)) & valid).sum()
        if union:
            ious[name] = 100 * ((preds == c) & (labels == c) & valid).sum() / union
    assert got['num_images'] == 6 and got['config'] == val_cfg
    assert got['miou'] == pytest.approx(np.mean(list(ious.values())), abs=IOU_METRIC_ROUNDING)
    assert got['per_class'] == pytest.approx(ious)
    assert 0 < got['miou'] < 100  # half right, half wrong


def _one_line(capsys, argv):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err and 'Traceback' not in '\n'.join(err)
    return err[-1]


def test_bad_inputs_say_one_line(tmp_path, capsys, synthetic_root, teacher_ckpt):
    pool = osp.join(synthetic_root, 'pool')
    wd = str(tmp_path / 'w')

    line = _one_line(capsys, ['deeplabv3_r50_cityscape', '--pool', pool, '--work-dir', wd])
    assert "no model 'deeplabv3_r50_cityscape'" in line
    assert 'deeplabv3_r50-d8_4xb2-80k_cityscapes-512x1024' in line  # a close name

    missing = str(tmp_path / 'no_such_pool')
    line = _one_line(capsys, _args(missing, wd, teacher_ckpt))
    assert repr(missing) in line and 'does not exist' in line
    empty = tmp_path / 'empty'
    (empty / 'sub').mkdir(parents=True)
    line = _one_line(capsys, _args(str(empty), wd, teacher_ckpt))
    assert repr(str(empty)) in line and 'no images' in line

    line = _one_line(capsys, _args(pool, wd, teacher_ckpt)[:-8] + [
        '--eps', '60', '--val-images', '10'])
    assert 'has 64 images' in line and '60' in line and '10' in line

    binary = tmp_path / 'binary_student.py'
    binary.write_text(f"_base_ = [{osp.abspath(STUDENT)!r}]\n"
                      'model = dict(decode_head=dict(num_classes=2, out_channels=1))\n')
    argv = _args(pool, wd, teacher_ckpt)
    argv[argv.index('--student') + 1] = str(binary)
    line = _one_line(capsys, argv)
    assert 'cannot take' in line and '7 classes' in line

    class Evil:
        def __reduce__(self):
            return (os.system, ('true', ))
    evil = str(tmp_path / 'evil.pth')
    torch.save({'state_dict': {}, 'x': Evil()}, evil)
    line = _one_line(capsys, _args(pool, wd, evil))
    assert repr(evil) in line and 'refused' in line

    no_loader = tmp_path / 'unlabelled.py'
    no_loader.write_text("model = dict(type='EncoderDecoder')\n")
    line = _one_line(capsys, _args(pool, wd, teacher_ckpt, '--val-dataset', str(no_loader)))
    assert repr(str(no_loader)) in line and 'no test_dataloader.dataset' in line

    blocker = tmp_path / 'a_file'
    blocker.write_text('')
    line = _one_line(capsys, _args(pool, str(blocker / 'run'), teacher_ckpt))
    assert '--work-dir' in line and 'not writable' in line


def test_bad_input_line_is_the_last_output(tmp_path, repo_root):
    """On the terminal (stdout and stderr together), the one line comes last."""
    env = dict(os.environ, PYTHONPATH=repo_root)
    proc = subprocess.run([sys.executable, 'tools/compress.py', 'no_such_model_name', '--pool',
                           str(tmp_path), '--work-dir', str(tmp_path / 'w')], cwd=repo_root,
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=300)
    assert proc.returncode == 2
    lines = proc.stdout.strip().splitlines()
    assert lines[-1].startswith("compress: error: mmseg-dfss: no model 'no_such_model_name'")
    assert 'Traceback' not in proc.stdout


def _report(work_dir):
    with open(osp.join(work_dir, 'report.json')) as f:
        return json.load(f)


@pytest.mark.slow
def test_sigkill_during_training_resumes_to_the_same_numbers(tmp_path, synthetic_root,
                                                            teacher_ckpt, repo_root, tool):
    """A run killed after its second checkpoint continues from it; its report's
    selection, agreement and per-class figures equal an uninterrupted run's."""
    import glob
    import signal
    import time
    pool = osp.join(synthetic_root, 'pool')
    extra = ['--cfg-options', 'model.student.decode_head.dropout_ratio=0.0']

    def argv(wd):
        a = _args(pool, wd, teacher_ckpt, *extra)
        a[a.index('--iters') + 1] = '10'
        return a

    tool('tools/compress.py', *argv(tmp_path / 'whole'))
    killed = tmp_path / 'killed'
    env = dict(os.environ, PYTHONPATH=repo_root, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    proc = subprocess.Popen([sys.executable, 'tools/compress.py', *argv(killed)], cwd=repo_root,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 600
    while not glob.glob(str(killed / 'train' / '*' / 'iter_4.pth')):
        assert proc.poll() is None and time.time() < deadline, 'no checkpoint before exit'
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / 'report.json').exists()
    out = tool('tools/compress.py', *argv(killed)).stdout
    assert 'Resuming' in out or 'resumed' in out.lower() or glob.glob(
        str(killed / 'train' / '*' / 'iter_10.pth'))
    a, b = _report(tmp_path / 'whole'), _report(killed)
    assert [osp.basename(p) for p in a['select']['kept']] == \
        [osp.basename(p) for p in b['select']['kept']]
    assert a['judge']['miou'] == b['judge']['miou']
    assert a['judge']['per_class'] == b['judge']['per_class']


@pytest.mark.slow
def test_changed_argument_reruns_only_the_stages_after_it(tmp_path, synthetic_root,
                                                          teacher_ckpt, tool):
    """A new --lr retrains, judges, ships and reports again, but reuses the selection."""
    pool = osp.join(synthetic_root, 'pool')
    tool('tools/compress.py', *_args(pool, tmp_path / 'w', teacher_ckpt))
    scores = tmp_path / 'w' / 'select' / 'ads_scores.csv'
    st = os.stat(scores)
    out = tool('tools/compress.py', *_args(pool, tmp_path / 'w', teacher_ckpt, '--lr',
                                           '0.05')).stdout
    assert '[compress] select: reused' in out
    for name in ('train', 'judge', 'ship', 'report'):
        assert f'[compress] {name}: started' in out
    assert os.stat(scores).st_mtime_ns == st.st_mtime_ns


def test_dry_run_writes_only_the_config_naming_the_teacher_once(tmp_path, synthetic_root,
                                                                teacher_ckpt, capsys):
    from mmengine.config import Config

    from mmseg_dfss.core.shared_teacher import resolve_shared
    wd = tmp_path / 'w'
    main(_args(osp.join(synthetic_root, 'pool'), wd, teacher_ckpt, '--dry-run'))
    assert sorted(p for p in os.listdir(wd) if not p.startswith('.')) == ['dfss_config.py']
    text = (wd / 'dfss_config.py').read_text()
    text = '\n'.join(line for line in text.splitlines() if not line.startswith('#'))
    assert text.count(osp.abspath(TEACHER)) == 1 and text.count(teacher_ckpt) == 1
    cfg = resolve_shared(Config.fromfile(str(wd / 'dfss_config.py')))
    ads = cfg.train_dataloader.dataset
    held_out = cfg.val_dataloader.dataset.dataset
    assert ads.teacher == cfg.model.teacher == held_out.teacher
    assert ads.teacher_checkpoint == cfg.val_dataloader.dataset.teacher_checkpoint == teacher_ckpt
    assert (ads.num_samples, held_out.num_skipped, held_out.num_samples) == (16, 16, 4)
    assert ads.cache_dir.startswith(str(wd))
    assert cfg.val_dataloader.dataset.cache_dir.startswith(str(wd))
