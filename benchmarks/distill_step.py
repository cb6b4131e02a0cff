"""Cost of a DFSS distillation iteration vs its lower bound, on the same batch.

    OMP_NUM_THREADS=1 python benchmarks/distill_step.py [--config CFG] [--batch-size 4]
        [--crop 128] [--repeats 5] [--device cpu|cuda]

The teacher and student come from a DFSS config (default: the paper's NYUv2 pair,
DeepLabV3-R50-D8 -> DeepLabV3-MobileNetV2, random init, teacher_checkpoint=None).

(a) distill: ``DataFreeDistiller.train_step`` (teacher no-grad forward, student
    forward/backward, both logits upsampled to the input, WDPD loss, SGD step);
(b) bound: the teacher's no-grad forward plus the student's own supervised
    ``train_step`` (cross-entropy on labels, SGD step) on the same batch, i.e. what
    any distillation has to pay. Prints median seconds per iteration of each and
    the ratio a/b (target <= 1.10); (a) and (b) alternate, so drift hits both.
Peak memory: CUDA (``--device cuda`` or ``cuda:N``): ``max_memory_allocated``
growth per method; CPU: each method runs 2 iterations in a forked child, which
reports its peak RSS growth. The batch is built on the CPU and moved by the
models' data preprocessors, as in training.
"""
import argparse
import copy
import os
import os.path as osp
import resource
import statistics
import sys
import time

import torch

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO)
DEFAULT = 'configs/dfss/deeplabv3_r50_to_mbv2_nyuv2.py'


def build(cfg_path, device):
    from mmengine.config import Config
    from mmengine.model import revert_sync_batchnorm
    from mmengine.optim import OptimWrapper
    from mmseg.registry import MODELS

    import mmseg_dfss  # noqa: F401
    cfg = Config.fromfile(osp.join(REPO, cfg_path))
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.teacher_checkpoint = None
    model_cfg.allow_random_teacher = True
    model_cfg.distill_loss.mode = 'wdd'  # per-sample weights without the hook
    torch.manual_seed(0)
    distiller = MODELS.build(model_cfg)
    distiller.init_weights()
    distiller = revert_sync_batchnorm(distiller).to(device).train()
    # an identical student trained with labels, for the bound
    student = copy.deepcopy(distiller.student)
    student.data_preprocessor = copy.deepcopy(distiller.data_preprocessor)
    opt = lambda m: OptimWrapper(torch.optim.SGD(  # noqa: E731
        [p for p in m.parameters() if p.requires_grad], lr=0.01, momentum=0.9))
    return distiller, opt(distiller), student, opt(student), distiller.teacher


def batch(n, crop, num_classes, seed=0):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    g = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for i in range(n):
        inputs.append(torch.randint(0, 256, (3, crop, crop), generator=g, dtype=torch.uint8))
        ds = SegDataSample(metainfo=dict(img_shape=(crop, crop), ori_shape=(crop, crop),
                                         ads_weight=float(i + 1) / n))
        ds.gt_sem_seg = PixelData(data=torch.randint(0, num_classes, (1, crop, crop),
                                                     generator=g))
        samples.append(ds)
    return dict(inputs=inputs, data_samples=samples)


def make_steps(distiller, d_opt, student, s_opt, teacher):
    def distill(data):
        distiller.train_step(copy.copy(data), d_opt)

    def bound(data):
        with torch.no_grad():
            pre = student.data_preprocessor(copy.copy(data), True)
            teacher._forward(pre['inputs'])
        student.train_step(copy.copy(data), s_opt)

    return dict(distill=distill, bound=bound)


def is_cuda(device):
    """True for 'cuda', 'cuda:1', torch.device('cuda', 0), ..."""
    return torch.device(device).type == 'cuda'


def sync(device):
    if is_cuda(device):
        torch.cuda.synchronize(device)  # kernels are asynchronous: time them to the end


def peak_memory(step, data, device):
    if is_cuda(device):  # never fork a process that holds a CUDA context
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        for _ in range(2):
            step(data)
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: peak RSS growth of 2 iterations
        os.close(read)
        with open(f'/proc/{os.getpid()}/status') as f:
            rss = next(int(line.split()[1]) for line in f if line.startswith('VmRSS'))
        for _ in range(2):
            step(data)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        os.write(write, str((peak - rss) / 1024).encode())
        os._exit(0)
    os.close(write)
    value = float(os.read(read, 64).decode())
    os.waitpid(pid, 0)
    return value


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--config', default=DEFAULT)
    p.add_argument('--batch-size', type=int, default=4)
    p.add_argument('--crop', type=int, default=128)
    p.add_argument('--repeats', type=int, default=5)
    p.add_argument('--warmup', type=int, default=2)
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    args = p.parse_args()
    from mmengine.logging import MMLogger
    # warnings only: init_weights would log hundreds of per-parameter INFO lines
    MMLogger.get_instance('mmengine', log_level='WARNING')

    distiller, d_opt, student, s_opt, teacher = build(args.config, args.device)
    num_classes = distiller.student.decode_head.num_classes
    data = batch(args.batch_size, args.crop, num_classes)
    steps = make_steps(distiller, d_opt, student, s_opt, teacher)
    for _ in range(args.warmup):
        for step in steps.values():
            step(data)
    times = {k: [] for k in steps}
    for _ in range(args.repeats):
        for name, step in steps.items():
            sync(args.device)
            t0 = time.perf_counter()
            step(data)
            sync(args.device)
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    memory = {k: peak_memory(step, data, args.device) for k, step in steps.items()}
    print(f'config: {args.config}  device: {args.device}  batch: {args.batch_size}x3x'
          f'{args.crop}x{args.crop}  threads: {torch.get_num_threads()}  '
          f'repeats: {args.repeats} (median)')
    for k in steps:
        print(f'{k:8s} {med[k] * 1000:9.1f} ms/iter   peak memory +{memory[k]:.0f} MiB   '
              f'(all: {", ".join(f"{t * 1000:.0f}" for t in times[k])} ms)')
    ratio = med['distill'] / med['bound']
    print(f'ratio distill / (teacher no-grad forward + student supervised step): {ratio:.3f} '
          f'(target <= 1.10: {"met" if ratio <= 1.10 else "NOT met"})')


if __name__ == '__main__':
    main()
