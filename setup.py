"""mmseg-dfss: DFSS data-free distillation for semantic segmentation (MMSeg 1.x plugin)."""
from setuptools import find_packages, setup


def read_version():
    scope = {}
    with open('mmseg_dfss/version.py') as f:
        exec(f.read(), scope)
    return scope['__version__']


setup(
    name='mmseg-dfss',
    version=read_version(),
    description='DFSS: distribution-guided data-free distillation for semantic '
    'segmentation, as an MMSegmentation 1.x plugin',
    long_description=open('README.md').read(),
    long_description_content_type='text/markdown',
    packages=find_packages(include=['mmseg_dfss', 'mmseg_dfss.*']),
    python_requires='>=3.8',
    install_requires=[
        'torch>=1.8',
        'mmengine>=0.10.0,<0.11.0',
        # compiled, with ops: mmseg 1.2 imports mmcv.ops (mmcv-lite is not enough)
        'mmcv>=2.0.0rc4,<2.2.0',
        'mmsegmentation>=1.2.0,<1.3.0',
        # mmseg.utils imports its CLIP tokenizer, which needs these two
        'ftfy',
        'regex',
        'pycocotools',
        'numpy',
        'Pillow',
        'tqdm',
    ],
    extras_require={
        'tests': ['pytest', 'pytest-timeout', 'h5py'],
        'plots': ['matplotlib', 'scikit-learn'],
        # the official NYUv2 labelled .mat is MATLAB v7.3 (HDF5)
        'convert': ['h5py'],
        # ONNX export of the student (tools/export_onnx.py) and its parity check
        'deploy': ['onnx', 'onnxruntime'],
    },
    license='Apache License 2.0',
    zip_safe=False,
)
