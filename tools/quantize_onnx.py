"""Quantizes an exported student ONNX graph to INT8, calibrated without original data.

    python tools/quantize_onnx.py FILE.onnx --out FILE_int8.onnx --calib-images SPEC
        [--num N] [--check-images SPEC] [--num-check N] [--min-agreement F]
        [--shape H W] [--seed S] [--cfg-options k=v ...]

SPEC is a folder of images (searched recursively), or ads:CONFIG: the pool images
that the DFSS config's ADSDataset keeps (the images ADS found closest to the
teacher's training data, Eq. 8-9), read from its score cache. Nothing is scored
again; with no cache, run `python tools/ads_score.py CONFIG` first. ads:CONFIG is
the recommended SPEC: in the data-free setting there are no original images to
calibrate with, and ADS has already picked the closest ones.

  --num N             calibration images (default 200): evenly over the ADS ranks of
                      the kept images, or drawn with --seed from a folder.
  --check-images SPEC images of the parity check, never used to calibrate. Default:
                      for ads:CONFIG, the --num-check (100) held-out pool images ADS
                      ranks just after its eps cut; for a folder, a tenth of it held
                      back (drawn with --seed) and never used to calibrate.
  --shape H W         the input size, needed only when the graph's height/width are
                      dynamic (tools/export_onnx.py --dynamic).
  --cfg-options       overrides of the ads:CONFIG (e.g. its cache_dir, data_root,
                      teacher_checkpoint), as in tools/train.py.

Calibration inputs are what the graph takes: each image read as MMSeg reads it (BGR),
resized to the graph's input size, raw 0-255 (the normalisation is inside the graph).
The quantization is onnxruntime's (quant_pre_process, then quantize_static: QDQ,
per-channel INT8 weights, UINT8 activations, MinMax calibration); the last Conv and
the final Resize of the logits stay FP32 and are named in the log. docs/deploy.md
says why these settings.

Unreadable images are counted and skipped. The argmax agreement of the INT8 and the
FP32 graph over the check images' pixels is printed in every case; exit 1 when it is
below --min-agreement (default 0.95), exit 2 on an error (e.g. no cache).
"""
import argparse
import sys

import mmseg_dfss  # noqa: F401  (registers the plugin)
from mmengine.config import DictAction

from mmseg_dfss.core.cached_scores import MissingScoresError
from mmseg_dfss.datasets.calibration_images import DEFAULT_NUM_CHECK, calibration_sets
from mmseg_dfss.models.onnx_quantize import (DEFAULT_MIN_AGREEMENT, DEFAULT_NUM,
                                             QuantizationError, quantize_and_check)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('onnx', help='the FP32 graph (tools/export_onnx.py)')
    p.add_argument('--out', required=True, help='the INT8 .onnx file to write')
    p.add_argument('--calib-images', required=True, metavar='SPEC',
                   help='a folder of images, or ads:CONFIG (the images ADS kept)')
    p.add_argument('--num', type=int, default=DEFAULT_NUM, help='calibration images')
    p.add_argument('--check-images', metavar='SPEC', default=None,
                   help='parity-check images (default: see above)')
    p.add_argument('--num-check', type=int, default=DEFAULT_NUM_CHECK,
                   help='ADS held-out check images for ads:CONFIG')
    p.add_argument('--min-agreement', type=float, default=DEFAULT_MIN_AGREEMENT,
                   help='smallest argmax agreement with FP32 accepted (share of pixels)')
    p.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'), default=None,
                   help='input size, for a graph whose size is dynamic')
    p.add_argument('--seed', type=int, default=0, help='draws from a folder')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='overrides of an ads:CONFIG')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from mmengine.registry import init_default_scope
    init_default_scope('mmseg')
    try:
        sets = calibration_sets(args.calib_images, num=args.num, check=args.check_images,
                                num_check=args.num_check, seed=args.seed,
                                cfg_options=args.cfg_options)
        print(f'calibration: {sets.describe["source"]}\ncheck: {sets.describe["check"]}')
        r = quantize_and_check(args.onnx, args.out, sets.calibration, sets.check,
                               shape=args.shape, min_agreement=args.min_agreement)
    except (MissingScoresError, QuantizationError, FileNotFoundError, ValueError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    par = r['parity']
    print(f'calibrated on {r["calibration_used"]} images '
          f'({len(r["calibration_skipped"])} unreadable skipped) at '
          f'{r["shape"][0]}x{r["shape"][1]}; FP32 nodes: {", ".join(r["fp32_nodes"]) or "none"}')
    print(f'INT8 vs FP32 argmax agreement: {par["agreement"] * 100:.2f}% of {par["pixels"]} '
          f'pixels of {par["images"]} check images ({len(par["skipped"])} unreadable skipped)')
    if not r['passed']:
        print(f'parity check failed: agreement {par["agreement"] * 100:.2f}% < '
              f'--min-agreement {args.min_agreement * 100:.2f}%; {args.out} was written for '
              'inspection', file=sys.stderr)
        return 1
    print(f'written: {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
