"""Reads what a training run logged, as numbers: MMEngine's LocalVisBackend writes
every logged scalar to ``<work_dir>/<timestamp>/vis_data/scalars.json`` (one JSON
object per logging step), so tests check values rather than grep the text log."""
import glob
import json
import math
import os.path as osp


def read_scalars(work_dir, run=-1):
    """(train rows, other rows) of the ``run``-th run in ``work_dir`` (default: the
    newest). Train rows carry ``loss``; validation/test rows carry the metrics."""
    runs = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')))
    assert runs, f'no */vis_data/scalars.json under {work_dir}'
    with open(runs[run]) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [r for r in rows if 'loss' in r], [r for r in rows if 'loss' not in r]


def train_steps(rows, *keys):
    """{step: (values of keys)} of the train rows; every value must be a finite number."""
    out = {}
    for r in rows:
        values = tuple(r[k] for k in keys)
        assert all(isinstance(v, (int, float)) and math.isfinite(v) for v in values), r
        out[r['step']] = values
    return out


def read_test_metrics(work_dir):
    """The metrics a ``tools/test.py`` run logged (``<timestamp>/<timestamp>.json``)."""
    runs = sorted(p for p in glob.glob(osp.join(work_dir, '*', '*.json'))
                  if osp.basename(p) == osp.basename(osp.dirname(p)) + '.json')
    assert runs, f'no <timestamp>/<timestamp>.json under {work_dir}'
    with open(runs[-1]) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    assert len(rows) == 1, rows
    return rows[0]
