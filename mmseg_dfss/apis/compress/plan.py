"""The arguments of ``tools/compress.py`` and the checks made before any expensive
work: each bad input is a :class:`CompressError` with one line."""
import argparse
import os
import os.path as osp
import tempfile
from dataclasses import dataclass, field

from mmengine.config import Config, DictAction
from mmengine.logging import print_log

from .errors import CompressError
from .launch import Launch, add_launch_arguments, launch_settings
from .student_spec import DEFAULT_PRESET, PRESETS, adapt_student
from .teacher_spec import read_teacher, resolve_teacher_name

PAPER_EPS = 10000  # DFSS Sec. 4: eps = 10K images kept by ADS
DEFAULT_VAL_IMAGES = 500
DEFAULT_ITERS = 40000
DEFAULT_BATCH_SIZE = 8


def build_parser():
    p = argparse.ArgumentParser(
        prog='tools/compress.py',
        description='From a teacher and a folder of unlabeled images to a judged, exported '
        'student: pool -> select (ADS) -> train (DFSS) -> judge -> ship -> report.')
    p.add_argument('teacher', help='a model name of the installed MMSeg metafiles, an '
                   'mmseg:: config or a config path')
    p.add_argument('--pool', action='append', required=True, metavar='[NAME=]POOL',
                   help='a folder of images (searched recursively) or a COCO annotation '
                   'file; repeat for several pools')
    p.add_argument('--work-dir', required=True, help='every output and cache goes here')
    p.add_argument('--teacher-checkpoint', help="the teacher's weights (path or URL); "
                   "default: a zoo name's metafile Weights")
    p.add_argument('--student', default=DEFAULT_PRESET,
                   help=f'a preset ({", ".join(PRESETS)}) or an MMSeg config '
                   f'(default: {DEFAULT_PRESET})')
    p.add_argument('--eps', type=int, help=f'images ADS keeps (default {PAPER_EPS}, capped '
                   'to the pool)')
    p.add_argument('--val-images', type=int, help='held-out pool images (ranked after the '
                   f'kept ones) for validation and judging (default {DEFAULT_VAL_IMAGES}, '
                   'capped to the pool)')
    p.add_argument('--iters', type=int, default=DEFAULT_ITERS)
    p.add_argument('--batch-size', type=int, default=DEFAULT_BATCH_SIZE)
    p.add_argument('--lr', type=float, default=0.1, help="SGD learning rate (DFAD's 0.1)")
    p.add_argument('--crop', type=int, nargs=2, metavar=('H', 'W'))
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--val-dataset', help='a labelled MMSeg dataset config: judge reports '
                   'true mIoU on its test_dataloader too')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                   help='overrides of the written dfss_config.py')
    p.add_argument('--dry-run', action='store_true', help='write DIR/dfss_config.py and stop')
    p.add_argument('--allow-random-teacher', action='store_true',
                   help='no teacher checkpoint: random weights (tests only)')
    add_launch_arguments(p)
    return p


@dataclass
class Plan:
    """Everything a compress run needs, checked."""
    argv: list
    work_dir: str
    teacher: object
    student_name: str
    student: dict
    student_changes: list
    pools: list  # [(name, dataset dict, number of images)]
    eps: int
    val_images: int
    iters: int
    batch_size: int
    lr: float
    seed: int
    val_dataset: str = None
    cfg_options: dict = field(default_factory=dict)
    dry_run: bool = False
    allow_random_teacher: bool = False
    launch: Launch = field(default_factory=Launch)

    def path(self, *parts):
        return osp.join(self.work_dir, *parts)


def check_work_dir(work_dir):
    """Creates ``work_dir`` and checks a file can be written there."""
    try:
        os.makedirs(work_dir, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=work_dir, prefix='.write-test-'):
            pass
    except OSError as e:
        raise CompressError(f'--work-dir {work_dir!r} is not writable: {e.strerror or e}') \
            from None


def pool_dataset(spec, work_dir):
    """``(name, dataset dict, images)`` of a ``--pool [NAME=]POOL``."""
    name, path = spec.split('=', 1) if '=' in spec and not osp.exists(spec) else (None, spec)
    if osp.isdir(path):
        from ...core.image_header import IMG_EXTENSIONS
        n = sum(1 for _, _, files in os.walk(path, followlinks=True)
                for f in files if f.lower().endswith(tuple(IMG_EXTENSIONS)))
        if n == 0:
            raise CompressError(f'--pool {path!r} has no images (searched recursively for '
                                f'{", ".join(IMG_EXTENSIONS)})')
        ds = dict(type='UnlabeledImageDataset', data_prefix=dict(img_path=osp.abspath(path)))
    elif osp.isfile(path) and path.endswith('.json'):
        import json
        try:
            with open(path, encoding='utf-8') as f:
                n = len(json.load(f).get('images') or [])
        except (OSError, ValueError, AttributeError) as e:
            raise CompressError(f'--pool {path!r} is not a COCO annotation file: {e}') from None
        if n == 0:
            raise CompressError(f'--pool {path!r} lists no images')
        ds = dict(type='COCOPoolDataset', ann_file=osp.abspath(path),
                  index_dir=osp.join(work_dir, 'coco_pool_index'))
    else:
        raise CompressError(f'--pool {path!r} does not exist (a folder of images or a COCO '
                            'annotation .json)')
    return name or osp.basename(osp.normpath(path)), ds, n


def check_pool_names(pools):
    """Pool names tell the pools apart in the comparison, the config and the report:
    distinct, and as ``tools/compare_pools.py --pools NAME=SPEC`` accepts them."""
    from ...core.pool_compare import NAME_RE
    names = [name for name, _, _ in pools]
    for name in names:
        if not NAME_RE.match(name):
            raise CompressError(f'--pool name {name!r} must be letters, digits, _ . + - '
                                '(starting with a letter or digit): give --pool NAME=POOL')
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise CompressError(f'--pool name {twice[0]!r} is given to several pools: give each '
                            'its own name with --pool NAME=POOL')


def _sizes(args, pool_size):
    """eps and val-images: given ones are checked against the pool, defaults are
    capped to it with a warning."""
    val = args.val_images
    eps = args.eps
    if eps is not None and eps < 1 or val is not None and val < 1:
        raise CompressError(f'--eps ({eps}) and --val-images ({val}) must be >= 1')
    if eps is not None and val is not None:
        if eps + val > pool_size:
            raise CompressError(f'the pool has {pool_size} images, fewer than --eps {eps} + '
                                f'--val-images {val} = {eps + val}')
        return eps, val
    if val is None:
        val = min(DEFAULT_VAL_IMAGES, max(1, pool_size // 10))
    if eps is None:
        eps = min(PAPER_EPS, pool_size - val)
        if eps < PAPER_EPS:
            print_log(f'compress: eps capped to the pool: {eps} (the paper keeps '
                      f'{PAPER_EPS}; the pool has {pool_size} images, {val} held out)',
                      logger='current', level=30)
    if eps < 1 or eps + val > pool_size:
        raise CompressError(f'the pool has {pool_size} images, fewer than eps {eps} + '
                            f'val-images {val} = {eps + val}')
    return eps, val


def check_checkpoint(checkpoint):
    """A local checkpoint is opened by the restricted loader now: a refused one stops
    the run before anything is built. A URL is read (once, cached) by the select stage."""
    if checkpoint is None or '://' in str(checkpoint):
        return
    if not osp.isfile(checkpoint):
        raise CompressError(f'--teacher-checkpoint {checkpoint!r} does not exist')
    from ...core.teacher import load_checkpoint_file
    try:
        load_checkpoint_file(checkpoint, 'teacher checkpoint')
    except Exception as e:
        raise CompressError(f'teacher checkpoint {checkpoint!r} refused: '
                            f'{str(e).splitlines()[0] if str(e) else type(e).__name__}') \
            from None


def check_val_dataset(spec):
    """``--val-dataset``: a readable config with a ``test_dataloader`` (else
    ``val_dataloader``) that names a dataset; read, not built, before any work."""
    if not osp.isfile(spec) and '::' not in spec:
        raise CompressError(f'--val-dataset {spec!r} does not exist')
    try:
        cfg = Config.fromfile(spec)
    except Exception as e:  # a config MMEngine cannot read: name it
        raise CompressError(f'--val-dataset {spec!r} cannot be read: {type(e).__name__}: '
                            f'{str(e).splitlines()[0] if str(e) else ""}') from None
    loader = cfg.get('test_dataloader') or cfg.get('val_dataloader')
    if not loader or not loader.get('dataset'):
        raise CompressError(f'--val-dataset {spec!r} has no test_dataloader.dataset or '
                            'val_dataloader.dataset: give a labelled MMSeg dataset config')


def make_plan(argv):
    """Parses ``argv`` and checks it: a :class:`Plan`, or :class:`CompressError`."""
    args = build_parser().parse_args(argv)
    work_dir = osp.abspath(args.work_dir)
    launch = launch_settings(args)
    check_work_dir(work_dir)
    cfg_path, weights, source = resolve_teacher_name(args.teacher)
    checkpoint = args.teacher_checkpoint or weights
    if checkpoint is None and not args.allow_random_teacher:
        raise CompressError(f'teacher {args.teacher!r} has no weights: give '
                            '--teacher-checkpoint (a path or URL)')
    pools = [pool_dataset(p, work_dir) for p in args.pool]
    check_pool_names(pools)
    eps, val = _sizes(args, sum(n for _, _, n in pools))
    check_checkpoint(args.teacher_checkpoint)
    teacher = read_teacher(args.teacher, cfg_path, checkpoint, args.crop, source)
    student, changes = adapt_student(args.student, teacher)
    if args.val_dataset:
        check_val_dataset(args.val_dataset)
    return Plan(argv=list(argv), work_dir=work_dir, teacher=teacher,
                student_name=args.student, student=student, student_changes=changes,
                pools=pools, eps=eps, val_images=val, iters=args.iters,
                batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                val_dataset=args.val_dataset, cfg_options=dict(args.cfg_options or {}),
                dry_run=args.dry_run, allow_random_teacher=args.allow_random_teacher,
                launch=launch)
