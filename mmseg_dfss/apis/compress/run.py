"""The compress command: write the config, then pool -> select -> train -> judge -> ship ->
report, each stage skipped when its stamp says it finished on the same inputs."""
import os.path as osp
import sys
import time

from mmengine.config import Config

from ...core.shared_teacher import resolve_shared
from .dfss_config import config_text, write_config
from .errors import CompressError
from .judge_stage import run_judge
from .launch import prescore, train
from .plan import make_plan
from .report import REPORT_HTML, REPORT_JSON, report_data, write_report
from .pool_stage import pool_key_parts, run_pool
from .select_stage import run_select, select_key_parts
from .ship_stage import run_ship
from .stage_stamp import digest, finished, mark_finished

STAGES = ('pool', 'select', 'train', 'judge', 'ship', 'report')


def say(text):
    print(f'[compress] {text}', flush=True)


def _outputs(result):
    """The file paths a stage result names (checked to exist before reuse)."""
    found = []
    if isinstance(result, dict):
        for k, v in result.items():
            if k in ('kept', 'images'):  # the user's pool images, not our outputs
                continue
            found += _outputs(v)
    elif isinstance(result, list):
        for v in result:
            found += _outputs(v)
    elif isinstance(result, str) and osp.isabs(result) and osp.splitext(result)[1] in (
            '.pth', '.png', '.csv', '.onnx', '.py', '.json', '.html'):
        found.append(result)
    return found


def stage(work_dir, name, key, fn):
    """Runs ``fn()`` unless ``name`` finished on ``key``; one line at start and end."""
    done = finished(work_dir, name, key)
    if done is not None:
        say(f'{name}: reused (finished earlier on the same inputs)')
        return done
    say(f'{name}: started')
    t0 = time.time()
    result = fn()
    result['seconds'] = time.time() - t0
    mark_finished(work_dir, name, key, result, _outputs(result))
    say(f'{name}: done in {result["seconds"]:.1f} s')
    return result


def _all_pools_config(plan):
    """The written config as it would be with every ``--pool`` (what the pool stage
    compares), read without writing it."""
    from mmengine.registry import init_default_scope
    init_default_scope('mmseg')
    return resolve_shared(Config.fromstring(config_text(plan), '.py'))


def _judge_dataset(cfg):
    import copy

    from mmseg.registry import DATASETS
    return DATASETS.build(copy.deepcopy(cfg.val_dataloader.dataset))


def headline(results):
    """The command's last lines: agreement (named as such), the ONNX parity, the
    compression and, with ``--val-dataset``, the accuracy on the labelled set."""
    j, s = results['judge'], results['ship']
    ratio = s['compression']['ratio']
    lines = [f'agreement with the teacher (not accuracy): mIoU {j["miou"]:.2f} on '
             f'{j["num_images"]} held-out images; ONNX max abs diff {s["max_abs_diff"]:.3g}; '
             f'student {ratio["params"]:.1f}x fewer parameters; latency teacher/student here '
             f'{ratio["pytorch_s"]:.2f} (PyTorch), {ratio["onnxruntime_s"]:.2f} (onnxruntime)']
    if j.get('val_dataset'):
        v = j['val_dataset']
        lines.append(f'accuracy on {v["config"]}: mIoU {v["miou"]:.2f} on {v["num_images"]} '
                     'labelled images')
    return lines


def compress(argv):
    """Runs the command line ``argv``; returns the report data (None for --dry-run)."""
    from mmengine.registry import init_default_scope
    plan = make_plan(argv)
    init_default_scope('mmseg')  # the config's BN layers are read from a built teacher
    wd = plan.work_dir
    keys, results = {}, {}
    all_pools = _all_pools_config(plan)
    keys['pool'] = digest('pool', pool_key_parts(all_pools))
    compared = finished(wd, 'pool', keys['pool'])  # a rerun writes the chosen pools at once
    config_path = write_config(plan, compared and compared['used'])
    say(f'config: {config_path}')
    if plan.dry_run:
        say('dry run: stopping after the config')
        return None
    names = [n for n, _, _ in plan.pools]

    def pool():
        prescore(plan.launch, config_path, osp.join(wd, 'pool'))  # --gpus: sharded
        return run_pool(all_pools, osp.join(wd, 'pool'), names)
    results['pool'] = stage(wd, 'pool', keys['pool'], pool)
    config_path = write_config(plan, results['pool']['used'])  # the verdict's pools
    cfg = resolve_shared(Config.fromfile(config_path))  # the teacher named once, in model
    keys['select'] = digest('select', select_key_parts(cfg))
    keys['train'] = digest('train', keys['select'], cfg.to_dict(), *plan.launch.key_parts())
    keys['judge'] = digest('judge', keys['train'], plan.val_dataset)
    keys['ship'] = digest('ship', keys['train'])
    results['select'] = stage(wd, 'select', keys['select'],
                              lambda: run_select(cfg, osp.join(wd, 'select')))
    train_dir = osp.join(wd, 'train', keys['train'][:12])
    results['train'] = stage(wd, 'train', keys['train'],
                             lambda: train(plan.launch, cfg, config_path, train_dir))
    ckpt = results['train']['checkpoint']
    results['judge'] = stage(
        wd, 'judge', keys['judge'],
        lambda: run_judge(cfg, ckpt, osp.join(wd, 'judge'), plan.val_dataset))
    results['ship'] = stage(
        wd, 'ship', keys['ship'],
        lambda: run_ship(cfg, config_path, ckpt, _judge_dataset(cfg), osp.join(wd, 'student'),
                         plan.teacher.crop))
    data = report_data(plan, config_path, results)
    keys['report'] = digest('report', keys['judge'], keys['ship'], data)

    def report():
        js, ht = write_report(wd, data)
        return dict(json=js, html=ht)
    stage(wd, 'report', keys['report'], report)
    say(f'report: {osp.join(wd, REPORT_HTML)} (and {REPORT_JSON})')
    for line in headline(results):
        say(line)
    return data


def main(argv=None):
    """The command line entry: one line and exit 2 on bad input."""
    from ...core.safe_load import CheckpointRefusedError
    from ...core.zoo import MetafileError, ZooConfigError
    try:
        compress(sys.argv[1:] if argv is None else argv)
    except (CompressError, ZooConfigError, MetafileError, CheckpointRefusedError) as e:
        sys.stdout.flush()
        sys.stderr.flush()
        print(f'compress: error: {e}', file=sys.stderr, flush=True)
        raise SystemExit(getattr(e, 'exit_code', 2)) from None
