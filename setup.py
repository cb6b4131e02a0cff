"""mmseg-dfss: DFSS data-free distillation for semantic segmentation (MMSeg 1.x plugin).

The OpenMMLab stack comes from one of two extras, never both in one environment (they
share the import names mmengine/mmcv/mmseg): ``maintained`` (default: onedl-mmengine,
onedl-mmcv, onedl-mmsegmentation) or ``legacy`` (OpenMMLab's 1.2 line; its mmcv must be
compiled with ops, which ``DFSS_STACK=1.2 bash scripts/setup_env.sh`` does first).
"""
from setuptools import find_packages, setup


def read_module(path):
    scope = {}
    with open(path) as f:
        exec(f.read(), scope)
    return scope


STACKS = read_module('mmseg_dfss/core/stack.py')['REQUIREMENTS']

setup(
    name='mmseg-dfss',
    version=read_module('mmseg_dfss/version.py')['__version__'],
    description='DFSS: distribution-guided data-free distillation for semantic '
    'segmentation, as an MMSegmentation 1.x plugin',
    long_description=open('README.md').read(),
    long_description_content_type='text/markdown',
    packages=find_packages(include=['mmseg_dfss', 'mmseg_dfss.*']),
    python_requires='>=3.10',
    install_requires=[
        'torch>=2.1',
        # mmseg.utils imports its CLIP tokenizer, which needs these two
        'ftfy',
        'regex',
        'numpy',
        'Pillow',
        'tqdm',
    ],
    extras_require={
        'maintained': STACKS['maintained'],
        'legacy': STACKS['1.2'],
        # ONNX export of the student (tools/export_onnx.py) and its parity check
        'deploy': ['onnx', 'onnxruntime'],
        'tests': ['pytest', 'pytest-timeout', 'h5py', 'onnx', 'onnxruntime'],
        'plots': ['matplotlib', 'scikit-learn'],
        # the official NYUv2 labelled .mat is MATLAB v7.3 (HDF5)
        'convert': ['h5py'],
    },
    license='Apache License 2.0',
    zip_safe=False,
)
