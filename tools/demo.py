"""The embedded demo: DFSS end to end on the synthetic scenes, on a CPU.

    python tools/demo.py [--work-dir work_dirs/demo] [--tiny]

Every step is a real run of the project's tools with the shipped configs (see the
printed commands); each finished step leaves its outputs under the work dir and is
reused when the demo runs again.
"""
import argparse
import glob
import json
import os
import os.path as osp
import subprocess
import sys
import time

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TEACHER_CFG = 'configs/synthetic/deeplabv3_r18-tiny_synthetic.py'
STUDENT_CFG = 'configs/synthetic/deeplabv3_mbv2-tiny_synthetic.py'

# (num_train, num_test, pool_size, teacher iters, student iters)
SETTINGS = {
    'default': dict(num_train=300, num_test=100, pool_size=2000, teacher_iters=1500,
                    student_iters=1500),
    'tiny': dict(num_train=24, num_test=8, pool_size=64, teacher_iters=20, student_iters=20),
}


def log(msg):
    print(f'[demo {time.strftime("%H:%M:%S")}] {msg}', flush=True)


def run(cmd, log_file):
    """Runs a project tool, its output to ``log_file``; fails loudly with the tail."""
    log('$ ' + ' '.join(cmd))
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get('PYTHONPATH', ''))
    with open(log_file, 'w') as f:
        proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        with open(log_file) as f:
            tail = f.read()[-4000:]
        sys.exit(f'demo step failed ({proc.returncode}); see {log_file}:\n{tail}')


def data_options(data_root):
    scenes = osp.join(data_root, 'scenes')
    return [f'{split}_dataloader.dataset.data_root={scenes}'
            for split in ('train', 'val', 'test')]


def schedule_options(iters):
    return [f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={iters}',
            f'param_scheduler.0.end={iters}', f'default_hooks.checkpoint.interval={iters}',
            'default_hooks.visualization.draw=False']


def train(name, cfg, work_dir, iters, options):
    """tools/train.py; reused when its final checkpoint exists."""
    out = osp.join(work_dir, name)
    ckpt = osp.join(out, f'iter_{iters}.pth')
    if osp.isfile(ckpt):
        log(f'{name}: reusing {ckpt}')
        return ckpt
    os.makedirs(out, exist_ok=True)
    run([sys.executable, 'tools/train.py', cfg, '--work-dir', out, '--cfg-options',
         *options, *schedule_options(iters)], osp.join(work_dir, f'{name}.train.log'))
    return ckpt


def evaluate(name, cfg, ckpt, work_dir, options):
    """tools/test.py on the synthetic test split; returns mIoU in [0, 1]."""
    result_file = osp.join(work_dir, f'{name}.metrics.json')
    if osp.isfile(result_file) and osp.getmtime(result_file) > osp.getmtime(ckpt):
        with open(result_file) as f:
            return json.load(f)['mIoU'] / 100.0
    out = osp.join(work_dir, f'{name}_test')
    run([sys.executable, 'tools/test.py', cfg, ckpt, '--work-dir', out, '--cfg-options',
         *options], osp.join(work_dir, f'{name}.test.log'))
    metrics = sorted(glob.glob(osp.join(out, '*', '*.json')), key=osp.getmtime)[-1]
    with open(metrics) as f:
        result = json.load(f)
    with open(result_file, 'w') as f:
        json.dump(result, f)
    return result['mIoU'] / 100.0


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--work-dir', default='work_dirs/demo')
    p.add_argument('--tiny', action='store_true', help='a minutes-long smoke run')
    p.add_argument('--seed', type=int, default=0)
    args = p.parse_args()
    setting = SETTINGS['tiny' if args.tiny else 'default']
    work_dir = osp.abspath(args.work_dir)
    os.makedirs(work_dir, exist_ok=True)
    start = time.time()

    from mmseg_dfss.datasets.synthetic import generate_synthetic
    data_root = osp.join(work_dir, 'data')
    log(f'1/3 synthetic scenes and pool -> {data_root}')
    generate_synthetic(data_root, seed=args.seed, num_train=setting['num_train'],
                       num_test=setting['num_test'], pool_size=setting['pool_size'])
    opts = data_options(data_root) + [f'randomness.seed={args.seed}']

    log('2/3 teacher: DeepLabV3-R18 (tiny) trained on the synthetic rooms with labels')
    teacher_ckpt = train('teacher', TEACHER_CFG, work_dir, setting['teacher_iters'], opts)
    log('3/3 evaluation on the synthetic test split')
    rows = [('Teacher (R18, original data + labels)', evaluate('teacher', TEACHER_CFG,
                                                               teacher_ckpt, work_dir, opts))]

    table = ['| model | mIoU |', '| --- | --- |'] + [f'| {n} | {m:.3f} |' for n, m in rows]
    text = '\n'.join(table)
    with open(osp.join(work_dir, 'results.md'), 'w') as f:
        f.write(text + '\n')
    print('\n' + text + '\n')
    log(f'done in {time.time() - start:.0f}s; outputs in {work_dir}')


if __name__ == '__main__':
    main()
