"""Does agreement with the teacher predict accuracy? Measured on the demo's models.

    OMP_NUM_THREADS=1 python benchmarks/agreement_vs_accuracy.py \
        [--demo-dir work_dirs/demo] [--work-dir work_dirs/agreement_vs_accuracy]
        [--num-pool 300] [--num-rooms 100]

Run after ``python tools/demo.py`` (whose DFSS run, ``tools/compress.py`` into
``DEMO/compress``, keeps 3 checkpoints) and more DFSS runs of the demo's config under
``DEMO/dfss/<name>/`` (``--full``'s, or others). For each model (the labelled
reference, the compress run at 1/3, 2/3 and all of its iterations, the last checkpoint
of every other DFSS run), it reports:

- mIoU against the teacher (``TeacherLabeledDataset``) on synthetic images no model
  trained on: a fresh open-world pool (generator seed 1) and fresh rooms (seed 1,
  labels unused);
- true mIoU on the demo's labelled test rooms;

and the Spearman rank correlation between each agreement and the true mIoU. The demo's
folder is only read; the fresh images (``WORK/agreement_data``), their teacher labels
(``WORK/teacher_labels``), the per-model rows (reused by a rerun) and ``agreement.json``
go to ``--work-dir``.
"""
import argparse
import glob
import json
import os.path as osp
import sys

import numpy as np
import torch

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO)
TEACHER_CFG = osp.join(REPO, 'configs/synthetic/deeplabv3_r18-tiny_synthetic.py')
STUDENT_CFG = osp.join(REPO, 'configs/synthetic/deeplabv3_mbv2-tiny_synthetic.py')
DFSS_CFG = osp.join(REPO, 'configs/synthetic/dfss_r18-tiny_to_mbv2-tiny_synthetic.py')
PIPELINE = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
            dict(type='PackSegInputs')]


def spearman(a, b):
    """Spearman's rho: Pearson correlation of the ranks (ties get their mean rank)."""
    def ranks(x):
        x = np.asarray(x, float)
        order = np.argsort(x, kind='stable')
        r = np.empty(len(x))
        r[order] = np.arange(len(x), dtype=float)
        for v in np.unique(x):
            r[x == v] = r[x == v].mean()
        return r
    ra, rb = ranks(a), ranks(b)
    return float(np.corrcoef(ra, rb)[0, 1])


def miou(model, ds):
    from mmengine.evaluator import Evaluator
    ev = Evaluator(dict(type='IoUMetric', iou_metrics=['mIoU']))
    ev.dataset_meta = ds.metainfo
    for i in range(len(ds)):
        data = ds[i]
        batch = dict(inputs=[data['inputs']], data_samples=[data['data_samples']])
        with torch.no_grad():
            ev.process(data_samples=model.test_step(batch), data_batch=batch)
    return ev.evaluate(len(ds))['mIoU']


def _iters(path):
    return int(osp.basename(path).split('_')[-1][:-4])


def models(demo):
    """``[(name, checkpoint, loader)]`` of the demo's trained models that exist: the
    labelled reference, every checkpoint of the DFSS run of ``tools/compress.py`` (its
    training folder from ``DEMO/compress/report.json``), the last of each other DFSS run
    under ``DEMO/dfss/`` (``--full``'s)."""
    from mmengine.config import Config

    from mmseg_dfss.core import build_frozen_segmentor
    from mmseg_dfss.utils.label_free import load_student
    dfss_cfg = Config.fromfile(DFSS_CFG)  # the same student architecture as compress's
    out = []
    ref = osp.join(demo, 'student_labels', 'iter_1500.pth')
    if osp.isfile(ref):
        out.append(('reference (rooms + labels)', ref,
                    lambda: build_frozen_segmentor(STUDENT_CFG, ref, 'student')))
    runs = []
    report = osp.join(demo, 'compress', 'report.json')
    if osp.isfile(report):
        with open(report) as f:
            train_dir = json.load(f)['train']['work_dir']
        runs.append(('compress', sorted(glob.glob(osp.join(train_dir, 'iter_*.pth')),
                                        key=_iters)))
    for run in sorted(d for d in glob.glob(osp.join(demo, 'dfss', '*')) if osp.isdir(d)):
        runs.append((osp.basename(run), sorted(glob.glob(osp.join(run, 'iter_*.pth')),
                                               key=_iters)[-1:]))
    for name, ckpts in runs:
        for ck in ckpts:
            out.append((f'DFSS {name} @ {_iters(ck)} it', ck,
                        lambda ck=ck: load_student(dfss_cfg, ck, 'cpu')))
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--demo-dir', default=osp.join(REPO, 'work_dirs', 'demo'),
                   help='the demo run to evaluate (read only)')
    p.add_argument('--work-dir', default=osp.join(REPO, 'work_dirs', 'agreement_vs_accuracy'),
                   help='where the fresh images, their labels and the results go')
    p.add_argument('--num-pool', type=int, default=300)
    p.add_argument('--num-rooms', type=int, default=100)
    p.add_argument('--out', help='JSON of the results (default: WORK/agreement.json)')
    args = p.parse_args()
    from mmengine.logging import MMLogger
    from mmengine.registry import init_default_scope
    from mmseg.registry import DATASETS

    import mmseg_dfss  # noqa: F401
    from mmseg_dfss.datasets.synthetic import generate_synthetic
    init_default_scope('mmseg')
    MMLogger.get_instance('mmengine', log_level='WARNING')
    demo = osp.abspath(args.demo_dir)
    work = osp.abspath(args.work_dir)
    fresh = osp.join(work, 'agreement_data')
    if not osp.isdir(osp.join(fresh, 'pool')):
        generate_synthetic(fresh, seed=1, num_train=1, num_test=args.num_rooms,
                           pool_size=args.num_pool, progress=False)
    teacher_ckpt = osp.join(demo, 'teacher', 'iter_1500.pth')
    sets = {}
    for key, folder in (('fresh pool', osp.join(fresh, 'pool')),
                        ('fresh rooms', osp.join(fresh, 'scenes', 'img_dir', 'test'))):
        sets[key] = DATASETS.build(dict(
            type='TeacherLabeledDataset',
            dataset=dict(type='UnlabeledImageDataset', data_prefix=dict(img_path=folder)),
            teacher=TEACHER_CFG, teacher_checkpoint=teacher_ckpt,
            cache_dir=osp.join(work, 'teacher_labels'), pipeline=PIPELINE,
            metainfo_from='SyntheticScenesDataset', progress=False))
    sets['true (test rooms)'] = DATASETS.build(dict(
        type='SyntheticScenesDataset', data_root=osp.join(demo, 'data', 'scenes'),
        data_prefix=dict(img_path='img_dir/test', seg_map_path='ann_dir/test'),
        pipeline=PIPELINE))
    rows = []
    done_file = osp.join(work, 'agreement_rows.json')  # a rerun evaluates new models only
    done = json.load(open(done_file)) if osp.isfile(done_file) else {}
    for name, ckpt, load in models(demo):
        key = f'{ckpt}|{osp.getmtime(ckpt)}'
        if key not in done:
            model = load()
            done[key] = dict(model=name,
                             **{k: float(miou(model, ds)) for k, ds in sets.items()})
            with open(done_file, 'w') as f:
                json.dump(done, f, indent=1)
        rows.append(done[key])
        print(rows[-1], flush=True)
    true = [r['true (test rooms)'] for r in rows]
    rho = {k: spearman([r[k] for r in rows], true) for k in ('fresh pool', 'fresh rooms')}
    lines = ['| model | agreement, fresh pool | agreement, fresh rooms | true mIoU |',
             '| --- | --- | --- | --- |']
    lines += [f'| {r["model"]} | {r["fresh pool"]:.1f} | {r["fresh rooms"]:.1f} | '
              f'{r["true (test rooms)"]:.1f} |' for r in rows]
    lines += ['', f'Spearman rho vs true mIoU over {len(rows)} models: fresh pool '
              f'{rho["fresh pool"]:.2f}, fresh rooms {rho["fresh rooms"]:.2f}']
    print('\n'.join(lines))
    with open(args.out or osp.join(work, 'agreement.json'), 'w') as f:
        json.dump(dict(rows=rows, spearman=rho, num_pool=len(sets['fresh pool']),
                       num_rooms=len(sets['fresh rooms'])), f, indent=1)


if __name__ == '__main__':
    main()
