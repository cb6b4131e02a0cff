"""``DIR/report.json`` and ``DIR/report.html``: every stage's numbers and figures, and
the command that reproduces each stage. The HTML is one file (figures embedded as
base64 PNG, nothing fetched). Agreement with the teacher is named as such: it is not
accuracy."""
import base64
import html
import json
import os.path as osp

from ...core.atomic_file import atomic_write
from ...datasets.teacher_labeled import AGREEMENT_NOTE

REPORT_JSON = 'report.json'
REPORT_HTML = 'report.html'
NOT_ACCURACY = ('Agreement is not accuracy: the mIoU here measures how often the student '
                'predicts what the teacher predicts on held-out pool images. A teacher that '
                'is wrong on these images makes the student look right when it copies the '
                'mistake. Only a labelled set (--val-dataset) measures accuracy.')


def pool_spec(dataset):
    """What ``tools/compare_pools.py --pools NAME=SPEC`` takes for a compress pool."""
    return dataset.get('ann_file') or dataset['data_prefix']['img_path']


def stage_commands(work_dir, results, pool_specs=(), eps='EPS', allow_random=False):
    """The commands that rerun each stage alone with the project's tools (the pool stage
    compares ``pool_specs``, ``[(name, spec)]``, at ``eps``)."""
    cfg = osp.join(work_dir, 'dfss_config.py')
    train = results.get('train') or {}
    ckpt = train.get('checkpoint', 'BEST_CHECKPOINT')
    judge = results.get('judge') or {}
    crop = (results.get('ship') or {}).get('compression', {}).get('shape', ['H', 'W'])
    pools = ' '.join(f'{name}={spec}' for name, spec in pool_specs)
    random = ' --allow-random-teacher' if allow_random else ''
    return {
        'pool': f'python tools/compare_pools.py {cfg} --pools {pools} --eps {eps} --original '
                f'none --out {osp.join(work_dir, "pool")}{random}',
        'select': f'python tools/ads_score.py {cfg} --plot {osp.join(work_dir, "select")}',
        'train': f'python tools/train.py {cfg} --work-dir {train.get("work_dir", "DIR")} '
                 '--resume',
        'judge': f'python tools/compare_predictions.py {cfg} {ckpt} --images held-out '
                 f'--num-images {judge.get("num_images", "N")} --cache-dir '
                 f'{osp.join(work_dir, "teacher_labels")} --out '
                 f'{osp.join(work_dir, "compare_predictions")}',
        'ship': f'python tools/export_student.py {ckpt} {osp.join(work_dir, "student")} '
                f'--config {cfg} && python tools/export_onnx.py '
                f'{osp.join(work_dir, "student", "student_config.py")} '
                f'{osp.join(work_dir, "student", "student.pth")} --out '
                f'{osp.join(work_dir, "student", "student.onnx")} --shape {crop[0]} {crop[1]}',
        'compression': f'python benchmarks/compression.py {cfg} --shape {crop[0]} {crop[1]}',
        'test': f'python tools/test.py {osp.join(work_dir, "student", "student_config.py")} '
                f'{osp.join(work_dir, "student", "student.pth")}',
    }


def report_data(plan, config_path, results):
    """The nested, JSON-able report: absolute paths, mIoU on MMSeg's 0-100 scale."""
    t = plan.teacher
    return dict(
        command='python tools/compress.py ' + ' '.join(plan.argv),
        config=config_path,
        teacher=dict(given=t.given, config=t.cfg_path, checkpoint=t.checkpoint,
                     num_classes=t.num_classes, classes=list(t.classes), crop=list(t.crop)),
        student=dict(given=plan.student_name, config=plan.student.get('cfg_path'),
                     changes=list(plan.student_changes)),
        pools=[dict(name=n, images=k) for n, _, k in plan.pools],
        note=NOT_ACCURACY,
        commands=stage_commands(plan.work_dir, results,
                                [(n, pool_spec(ds)) for n, ds, _ in plan.pools], plan.eps,
                                plan.allow_random_teacher),
        **{k: v for k, v in results.items()})


def _img(path, alt):
    if not path or not osp.isfile(path):
        return ''
    with open(path, 'rb') as f:
        data = base64.b64encode(f.read()).decode('ascii')
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _table(rows):
    """An HTML table; a float cell is shown to 4 significant digits (:func:`_num`)."""
    cells = ''.join('<tr>' + ''.join(f'<td>{html.escape(str(_num(c)))}</td>' for c in r)
                    + '</tr>' for r in rows)
    return f'<table>{cells}</table>'


def _num(v):
    """A float shown to 4 significant digits (report.json keeps the full value)."""
    return f'{v:.4g}' if isinstance(v, float) else v


def _fmt_ms(s):
    return f'{s * 1e3:.3g} ms'


def pool_html(pool, command):
    """The pool stage's section: per-pool figures (Sec. 3.2), the verdict, the figures."""
    e = html.escape
    rows = [('pool', 'images', 'unreadable', 'entropy mean (bits)', 'd p5', 'd p25',
             'd median', 'kept by merged ADS', 'used')]
    for name in pool.get('ranking', []):
        p = pool['pools'][name]
        d = p['distance']
        rows.append((name, p['num_images'], p['unreadable'], f'{p["entropy"]["mean"]:.3f}',
                     d['p5'], d['p25'], d['median'],
                     p['selected_in_merge'], 'yes' if name in pool['used'] else 'no'))
    return ['<h2>Pool (DFSS Sec. 3.2: task relevance, Eq. 5; scale and richness, Eq. 6)</h2>',
            _table(rows), f'<p><b>Verdict</b>: {e(pool.get("verdict", ""))}</p>',
            *[_img(pool.get(k), k) for k in ('distance_hist', 'entropy_hist', 'merge_mix')],
            f'<p><code>{e(command)}</code></p>']


def report_html(data):
    """The self-contained HTML of :func:`report_data`."""
    e = html.escape
    sel, tr, ju, sh = (data.get(k) or {} for k in ('select', 'train', 'judge', 'ship'))
    cmds = data['commands']
    parts = [
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>DFSS compress report'
        '</title><style>body{font-family:sans-serif;max-width:1100px;margin:auto}'
        'img{max-width:100%}td{border:1px solid #ccc;padding:2px 6px}'
        'table{border-collapse:collapse}code{background:#eee;word-break:break-all}'
        '.warn{background:#fff3cd;padding:8px}</style></head><body>',
        '<h1>DFSS compress report</h1>',
        f'<p><code>{e(data["command"])}</code></p>',
        f'<p class="warn"><b>{e(NOT_ACCURACY)}</b></p>',
        f'<p>Config: <code>{e(data["config"])}</code></p>',
        '<h2>Teacher and student</h2>',
        _table([('teacher', data['teacher']['given']),
                ('teacher config', data['teacher']['config']),
                ('teacher checkpoint', data['teacher']['checkpoint']),
                ('classes', ', '.join(data['teacher']['classes'])),
                ('crop', 'x'.join(map(str, data['teacher']['crop']))),
                ('student', data['student']['given']),
                ('student config', data['student']['config'])]
               + [('student change', c) for c in data['student']['changes']]),
        *pool_html(data.get('pool') or {}, cmds['pool']),
        '<h2>Select (ADS, DFSS Sec. 3.3)</h2>',
        _table([('pool images', sel.get('pool_size')), ('unreadable', sel.get('unreadable')),
                ('kept (eps)', sel.get('eps')), ('largest kept d', sel.get('kept_d_max'))]
               + [(f'pool {p["name"]}', p['images']) for p in data['pools']]),
        _img(sel.get('histogram'), 'histogram of d'), _img(sel.get('gallery'), 'gallery'),
        f'<p><code>{e(cmds["select"])}</code></p>',
        '<h2>Train (DFSS, WDPD loss)</h2>',
        _table([('iterations', tr.get('iters')), ('best checkpoint', tr.get('checkpoint')),
                ('best validation agreement mIoU', tr.get('best_agreement_miou'))]),
        f'<p><code>{e(cmds["train"])}</code></p>',
        '<h2>Judge: agreement with the teacher</h2>',
        f'<p class="warn">{e(AGREEMENT_NOTE)}</p>',
        _table([('agreement mIoU (0-100)', f'{ju.get("miou", float("nan")):.2f}'),
                ('held-out images', ju.get('num_images'))]
               + ([('true mIoU (accuracy) on ' + ju['val_dataset']['config'],
                    f'{ju["val_dataset"]["miou"]:.2f}'),
                   ('its labelled images', ju['val_dataset']['num_images'])]
                  if ju.get('val_dataset') else [])),
        _table([('class', 'agreement IoU')] + [(c, f'{v:.2f}') for c, v in
                                                sorted((ju.get('per_class') or {}).items(),
                                                       key=lambda kv: kv[1])]),
        _img(ju.get('per_class_figure'), 'per-class agreement'),
        '<h3>Worst images first</h3>',
        *[_img(p, 'worst image') for p in ju.get('worst', [])],
        f'<p><code>{e(cmds["judge"])}</code></p>',
        '<h2>Ship</h2>',
        _table([('student.pth', sh.get('checkpoint')), ('student_config.py', sh.get('config')),
                ('student.onnx', sh.get('onnx')),
                ('ONNX max |onnxruntime - PyTorch|', sh.get('max_abs_diff')),
                ('parity tolerance', sh.get('parity_atol'))]),
        f'<p><code>{e(cmds["ship"])}</code></p><p><code>{e(cmds["test"])}</code></p>',
    ]
    comp = sh.get('compression')
    if comp:
        t, s, r = comp['teacher'], comp['student'], comp['ratio']
        parts += [
            f'<h3>Compression at 1x3x{comp["shape"][0]}x{comp["shape"][1]} on '
            f'{e(comp["machine"])} ({comp["threads"]} thread{"s" if comp["threads"] != 1 else ""}, batch 1)</h3>',
            _table([('', 'teacher', 'student', 'teacher / student'),
                    ('parameters', f'{t["params"] / 1e6:.3g} M', f'{s["params"] / 1e6:.3g} M',
                     f'{r["params"]:.1f}x'),
                    ('FLOPs', f'{t["flops"] / 1e9:.3g} G', f'{s["flops"] / 1e9:.3g} G',
                     f'{r["flops"]:.1f}x'),
                    ('PyTorch latency', _fmt_ms(t['pytorch_s']), _fmt_ms(s['pytorch_s']),
                     f'{r["pytorch_s"]:.1f}x'),
                    ('onnxruntime latency', _fmt_ms(t['onnxruntime_s']),
                     _fmt_ms(s['onnxruntime_s']), f'{r["onnxruntime_s"]:.1f}x')]),
            f'<p><code>{e(cmds["compression"])}</code></p>']
    parts.append('</body></html>')
    return '\n'.join(parts)


def write_report(work_dir, data):
    """Writes both files; returns their paths."""
    js, ht = osp.join(work_dir, REPORT_JSON), osp.join(work_dir, REPORT_HTML)
    with atomic_write(js, encoding='utf-8') as f:
        json.dump(data, f, indent=1, sort_keys=False)
    with atomic_write(ht, encoding='utf-8') as f:
        f.write(report_html(data))
    return js, ht
