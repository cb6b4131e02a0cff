"""Data preprocessors that never pad, for exact per-sample ADS scores (Sec. 3.3).

A zoo teacher's ``SegDataPreProcessor`` may pad every batch: ``size`` /
``size_divisor`` when training, ``test_cfg=dict(size=..., size_divisor=...)`` at
test time (e.g. Cityscapes' ``size=(512, 1024)``). Padded pixels would enter the
BN statistics of Eq. 9 and the confidence score, so a score would depend on the
preprocessor rather than on the image. ADS batches only images of one shape, so
stacking needs no padding at all: :func:`non_padding_preprocessor` returns a copy
of the teacher's preprocessor with its normalisation (mean/std, channel order)
and every padding setting removed.
"""
import copy

# attributes of MMSeg's SegDataPreProcessor that pad or change the batch's shape
PADDING_ATTRS = ('size', 'size_divisor', 'test_cfg', 'batch_augments')


def non_padding_preprocessor(preprocessor):
    """A copy of ``preprocessor`` that normalises like it and never pads.

    The copy is shallow: it shares the normalisation buffers (``mean``/``std``)
    and therefore the device with the original, which is left unchanged. Padding
    settings (:data:`PADDING_ATTRS`) are set to None on the copy. Call it with
    ``training=False``: it then stacks images of one shape only (MMSeg's
    preprocessor raises on a batch of different shapes, which callers avoid by
    batching per shape).
    """
    plain = copy.copy(preprocessor)
    for name in PADDING_ATTRS:
        if getattr(plain, name, None) is not None:
            setattr(plain, name, None)
    return plain


__all__ = ['non_padding_preprocessor', 'PADDING_ATTRS']
