"""Parameters and FLOPs of segmentor configs (teacher/student), as MMSeg's
tools/analysis_tools/get_flops.py computes them: mmengine.analysis's
get_model_complexity_info on the model's tensor forward (backbone + decode head,
SyncBN reverted to BN). MMSeg 1.2.2's own get_flops.py fails with mmengine 0.10.7
('"input_shape" and "inputs" cannot be both set'), hence this script.

    python benchmarks/model_complexity.py configs/teachers/deeplabv3_r50-d8_nyuv2.py \
        configs/students/deeplabv3_mbv2-d8_nyuv2.py --shape 256 341

Parameters count every parameter of the model (an auxiliary head included); FLOPs
count one multiply-add as one FLOP (mmengine's convention), for one image.
"""
import argparse
import os.path as osp
import sys

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO)

from mmseg_dfss.models.complexity import segmentor_complexity  # noqa: E402


def complexity(config, shape):
    from mmseg.registry import MODELS

    from mmseg_dfss.core import load_model_config
    return segmentor_complexity(MODELS.build(load_model_config(config)), shape)


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('configs', nargs='+', help='segmentor configs (mmseg:: paths allowed)')
    p.add_argument('--shape', type=int, nargs=2, default=[256, 341], metavar=('H', 'W'))
    args = p.parse_args()
    from mmseg.utils import register_all_modules
    register_all_modules()
    for config in args.configs:
        params, aux, flops = complexity(config, tuple(args.shape))
        print(f'{config}: params {params / 1e6:.2f}M (auxiliary head {aux / 1e6:.2f}M), '
              f'FLOPs {flops / 1e9:.2f}G at 3x{args.shape[0]}x{args.shape[1]}')


if __name__ == '__main__':
    main()
