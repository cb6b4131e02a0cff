"""Image files: which names are images, their sizes without decoding, and which I/O
errors are worth a retry.

ADS batches images of one input shape only (no padding inside a score), so it
needs every image's size *before* loading it to fill its batches; a file header
gives it for a few hundred bytes of I/O.
"""
import errno

# file name endings of the images a folder or list pool holds (and a pool spec refuses)
IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.ppm', '.pgm', '.tif', '.tiff', '.webp')

# OSError numbers that say "try again", not "this file is bad": a flaky or busy
# filesystem, too many open files, a stale NFS handle
TRANSIENT_ERRNOS = frozenset(getattr(errno, name) for name in (
    'EIO', 'EAGAIN', 'EINTR', 'EMFILE', 'ENFILE', 'ESTALE', 'ETIMEDOUT', 'EBUSY', 'ENOMEM',
    'ECONNRESET', 'EREMOTEIO') if hasattr(errno, name))
# EXIF orientations that swap width and height (OpenCV's JPEG decoder applies them)
_EXIF_TRANSPOSED = (5, 6, 7, 8)


def is_transient_oserror(exc):
    """True for an ``OSError`` worth retrying (EIO, EMFILE, ESTALE, ...)."""
    return isinstance(exc, OSError) and getattr(exc, 'errno', None) in TRANSIENT_ERRNOS


def read_image_size(path):
    """``(height, width)`` of an image file as OpenCV decodes it, from its header
    only (PIL opens lazily: no pixel is decoded). A JPEG's EXIF rotation by 90/270
    degrees swaps the two. Raises what PIL raises for a file that is no image
    (``PIL.UnidentifiedImageError``, ``OSError``, ...)."""
    from PIL import Image
    with Image.open(path) as img:
        w, h = img.size
        orientation = None
        if img.format in ('JPEG', 'MPO'):
            try:
                orientation = img.getexif().get(0x0112)
            except Exception:  # a damaged EXIF block: the decoder ignores it too
                orientation = None
    return (h, w) if orientation not in _EXIF_TRANSPOSED else (w, h)
