"""``tools/compress.py``: from a teacher and a folder of images to a judged, exported
student (see :func:`compress`)."""
from .errors import CompressError
from .run import compress, main

__all__ = ['CompressError', 'compress', 'main']
