"""Exports an MMSeg segmentor (usually an exported student: student_config.py +
student.pth) to ONNX and checks onnxruntime against MMSeg's own test_step.

    python tools/export_onnx.py work_dirs/dfss/student/student_config.py \\
        work_dirs/dfss/student/student.pth --out student.onnx --shape 256 341 --dynamic

The graph (what test_step does for a batch of same-size images):
  input   image         float32 N x 3 x H x W, raw 0-255 pixels in the channel order
                        MMSeg's LoadImageFromFile gives (BGR), already resized as the
                        config's test pipeline resizes (H x W: --shape, or any with
                        --dynamic).
  inside                the data_preprocessor's channel swap and (x - mean) / std; its
                        test-time padding (test_cfg size or size_divisor, bottom and
                        right) and the crop back; the model's test_cfg inference
                        (whole, or slide: see below); for a one-channel head the
                        sigmoid and > decode_head.threshold.
  output  seg_logits    N x C x H x W float32, test_step's seg_logits at the input
                        size (the sigmoid for a one-channel head).
  output  pred_sem_seg  N x 1 x H x W int64, test_step's pred_sem_seg at the input size
                        (argmax, or the threshold for one channel).
  caller  resizing the image before; resizing seg_logits back to the original image
          size after (bilinear, the decode head's align_corners), then the argmax or
          the threshold again, as MMSeg's postprocess_result does; flip TTA.
  metadata  align_corners, mode (whole or slide), outputs, and threshold for a
          one-channel head (onnxruntime: get_modelmeta().custom_metadata_map).

Slide inference (model.test_cfg.mode='slide'): a static graph slides over the crop
grid of --shape, exactly as test_step does at that size; export at the size of the
images. A --dynamic graph cannot slide (the grid depends on the size): it is one
whole-image forward, checked against test_step run in whole mode, and its difference
from slide test_step is printed, not failed.

The check: onnxruntime and test_step run on the same random image (and with --dynamic
on a batch of 2 at a second size). It passes when the max abs difference of seg_logits
is at most --atol and pred_sem_seg agrees on every pixel decided by more than that
tolerance (a top-2 margin above 2 x atol; for one channel, further than atol from the
threshold). Other pixels are counted, never compared: two correct float32 paths may
decide them differently.

Exit status: 0 written and checked; 1 the parity check failed (the graph is written);
2 the export failed (the message names the module whose op does not export) or was
refused (a config or checkpoint it cannot export, and why), and nothing was written
(an existing --out stays as it was); 3 a needed package is missing (the message says
what to install).
"""
import argparse
import sys

import mmseg_dfss  # noqa: F401  (registers the plugin; checkpoints load under torch>=2.6)
from mmseg_dfss.models.onnx_export import (OPSET, PARITY_ATOL, OnnxExportError,
                                           OnnxParityError, export_and_check)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config', help='an MMSeg segmentor config (e.g. student_config.py)')
    p.add_argument('checkpoint', help='its checkpoint (a path or URL; loaded weights_only)')
    p.add_argument('--out', required=True, help='the .onnx file to write')
    p.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'), default=None,
                   help="input size (default: the config's test size: the test Resize "
                   'scale, else the slide crop, else crop_size)')
    p.add_argument('--dynamic', action='store_true',
                   help='batch, height and width are dynamic axes (checked at two sizes)')
    p.add_argument('--opset', type=int, default=OPSET)
    p.add_argument('--atol', type=float, default=PARITY_ATOL,
                   help='largest max abs difference of seg_logits accepted')
    p.add_argument('--dynamo', action='store_true',
                   help="torch.onnx's dynamo exporter instead of TorchScript tracing; needs "
                   'onnxscript (see docs/deploy.md: its dynamic Resize fails in onnxruntime)')
    return p.parse_args(argv)


def describe(r):
    return (f'max abs diff {r["max_abs_diff"]:.3g}, prediction agreement '
            f'{r["agreement"] * 100:.4f}% of the {r["decisive"] * 100:.2f}% decisive pixels '
            f'(all pixels {r["agreement_all"] * 100:.4f}%)')


def main(argv=None):
    args = parse_args(argv)
    try:
        results = export_and_check(args.config, args.checkpoint, args.out, shape=args.shape,
                                   dynamic=args.dynamic, opset=args.opset, dynamo=args.dynamo,
                                   atol=args.atol)
    except ImportError as e:
        print(f'missing package: {e}', file=sys.stderr)
        return 3
    except OnnxExportError as e:
        print(f'export failed: {e}', file=sys.stderr)
        return 2
    except (ValueError, KeyError, TypeError) as e:  # the exporter's own refusals
        print(f'export refused: {type(e).__name__}: {e}', file=sys.stderr)
        return 2
    except OnnxParityError as e:
        print(f'parity check failed: {e}', file=sys.stderr)
        return 1
    for r in results:
        print(f'parity at {"x".join(map(str, r["shape"]))}: {describe(r)}')
        if 'vs_slide' in r:
            print(f'  whole-image graph vs slide test_step (stated, not checked): '
                  f'{describe(r["vs_slide"])}')
    print(f'written: {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
