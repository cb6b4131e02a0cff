"""Exports an MMSeg segmentor (usually an exported student: student_config.py +
student.pth) to ONNX and checks onnxruntime against MMSeg's own test_step.

    python tools/export_onnx.py work_dirs/dfss/student/student_config.py \
        work_dirs/dfss/student/student.pth --out student.onnx --shape 256 341 --dynamic

Graph input ``image``: float N x 3 x H x W, raw 0-255 BGR pixels (as MMSeg's
LoadImageFromFile gives); the config's data_preprocessor (channel swap, mean/std) is in
the graph. Output ``seg_logits``: N x classes x H x W, test_step's seg_logits of a
whole-image forward (a slide test_cfg is not in the graph). After exporting, onnxruntime
and test_step run on the same random image(s); the max abs logit difference and the
argmax agreement are printed, and the tool exits 1 above --atol (default 1e-3).
Exit 2: the export itself failed (the message names the module whose op does not export).
"""
import argparse
import sys

import mmseg_dfss  # noqa: F401  (registers the plugin; checkpoints load under torch>=2.6)
from mmseg_dfss.models.onnx_export import (OPSET, PARITY_ATOL, OnnxExportError,
                                           OnnxParityError, export_and_check)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('config', help='an MMSeg segmentor config (e.g. student_config.py)')
    p.add_argument('checkpoint', help='its checkpoint (a path or URL; loaded weights_only)')
    p.add_argument('--out', required=True, help='the .onnx file to write')
    p.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'), default=None,
                   help="input size (default: the config's test size: the slide crop, the "
                   'test Resize scale, else crop_size)')
    p.add_argument('--dynamic', action='store_true',
                   help='batch, height and width are dynamic axes (checked at two sizes)')
    p.add_argument('--opset', type=int, default=OPSET)
    p.add_argument('--atol', type=float, default=PARITY_ATOL,
                   help='largest max abs logit difference accepted')
    p.add_argument('--dynamo', action='store_true',
                   help="torch.onnx's dynamo exporter instead of TorchScript tracing "
                   '(see docs/deploy.md: its dynamic Resize fails in onnxruntime)')
    args = p.parse_args(argv)
    try:
        results = export_and_check(args.config, args.checkpoint, args.out, shape=args.shape,
                                   dynamic=args.dynamic, opset=args.opset, dynamo=args.dynamo,
                                   atol=args.atol)
    except OnnxExportError as e:
        print(f'export failed: {e}', file=sys.stderr)
        return 2
    except OnnxParityError as e:
        print(f'parity check failed: {e}', file=sys.stderr)
        return 1
    for r in results:
        print(f'parity at {"x".join(map(str, r["shape"]))}: max abs logit diff '
              f'{r["max_abs_diff"]:.3g}, argmax agreement {r["argmax_agreement"] * 100:.4f}%')
    print(f'written: {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
