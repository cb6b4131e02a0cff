"""What the one command costs over the tools it composes: the wall time of
``tools/compress.py`` divided by the sum of the same stages run as separate tools
(compare_pools.py, ads_score.py, train.py, compare_predictions.py, export_student.py, export_onnx.py,
benchmarks/compression.py), each on a fresh work dir (cold caches) of the same config.
Target <= 1.05: the command builds the teacher once per stage, scores the pool once
(the pool stage; select and the held-out set read the ADS cache).

    OMP_NUM_THREADS=1 python benchmarks/compress_cost.py --pool-size 64 --size 64 --iters 4

The teacher is the synthetic R18-tiny with random weights (--allow-random-teacher);
the student the synthetic MobileNetV2-tiny.
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import tempfile
import time

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TEACHER = 'configs/synthetic/deeplabv3_r18-tiny_synthetic.py'
STUDENT = 'configs/synthetic/deeplabv3_mbv2-tiny_synthetic.py'


def run(cmd):
    """Wall seconds of one command (run from the repository, its output discarded)."""
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get('PYTHONPATH', ''))
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, *cmd], cwd=REPO, env=env, capture_output=True,
                          text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f'{" ".join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}')
    return seconds


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--pool-size', type=int, default=64)
    p.add_argument('--size', type=int, default=64)
    p.add_argument('--eps', type=int, default=32)
    p.add_argument('--val-images', type=int, default=8)
    p.add_argument('--iters', type=int, default=4)
    args = p.parse_args()
    sys.path.insert(0, REPO)
    from mmseg_dfss.datasets.synthetic import generate_synthetic
    with tempfile.TemporaryDirectory() as tmp:
        generate_synthetic(osp.join(tmp, 'syn'), seed=0, num_train=2, num_test=2,
                           pool_size=args.pool_size, size=args.size, progress=False)
        common = [TEACHER, '--pool', osp.join(tmp, 'syn', 'pool'), '--student', STUDENT,
                  '--eps', str(args.eps), '--val-images', str(args.val_images),
                  '--iters', str(args.iters), '--batch-size', '2', '--allow-random-teacher']
        tools_dir = osp.join(tmp, 'tools')
        run(['tools/compress.py', *common, '--work-dir', tools_dir, '--dry-run'])
        cfg = osp.join(tools_dir, 'dfss_config.py')
        parts = {}
        parts['pool'] = run(['tools/compare_pools.py', cfg, '--pools',
                             f'pool={osp.join(tmp, "syn", "pool")}', '--eps', str(args.eps),
                             '--original', 'none', '--out', osp.join(tools_dir, 'pool'),
                             '--allow-random-teacher'])
        parts['select'] = run(['tools/ads_score.py', cfg, '--plot', osp.join(tools_dir, 'sel'),
                               '--allow-random-teacher'])
        parts['train'] = run(['tools/train.py', cfg, '--allow-random-teacher'])
        ckpt = sorted(p for p in os.listdir(osp.join(tools_dir, 'train'))
                      if p.startswith('best_mIoU'))[-1]
        ckpt = osp.join(tools_dir, 'train', ckpt)
        parts['judge'] = run(['tools/compare_predictions.py', cfg, ckpt, '--images', 'held-out',
                              '--num-images', str(args.val_images), '--cache-dir',
                              osp.join(tools_dir, 'teacher_labels'), '--out',
                              osp.join(tools_dir, 'judge'), '--allow-random-teacher'])
        student = osp.join(tools_dir, 'student')
        parts['export_student'] = run(['tools/export_student.py', ckpt, student, '--config',
                                       cfg])
        parts['export_onnx'] = run(['tools/export_onnx.py',
                                    osp.join(student, 'student_config.py'),
                                    osp.join(student, 'student.pth'), '--out',
                                    osp.join(student, 'student.onnx'), '--shape',
                                    str(args.size), str(args.size)])
        parts['compression'] = run(['benchmarks/compression.py', cfg, '--shape', str(args.size),
                                    str(args.size)])
        one = run(['tools/compress.py', *common, '--work-dir', osp.join(tmp, 'one')])
    total = sum(parts.values())
    print(json.dumps(dict(tools=parts, tools_total=total, compress=one), indent=1))
    print(f'tools/compress.py {one:.1f} s / separate tools {total:.1f} s = {one / total:.2f} '
          '(target <= 1.05)')


if __name__ == '__main__':
    main()
