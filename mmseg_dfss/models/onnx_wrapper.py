"""The exportable form of an MMSeg segmentor: raw pixels in, ``test_step``'s results out.

:class:`ExportableSegmentor` is the module :mod:`.onnx_export` traces. For a batch of
same-size images it does, in order, what MMSeg's ``test_step`` does
(``SegDataPreProcessor`` in test mode, ``EncoderDecoder.predict``,
``postprocess_result``):

1. the data_preprocessor's channel swap (``bgr_to_rgb``/``rgb_to_bgr``), then
   ``(x - mean) / std``;
2. its test-time padding (``data_preprocessor.test_cfg``: ``size`` or ``size_divisor``;
   bottom and right, ``pad_val``);
3. the segmentor's inference, ``whole`` or ``slide`` (``model.test_cfg``);
4. the crop back to the input size;
5. for a one-channel (binary) head the sigmoid and ``> decode_head.threshold``, else
   the argmax over classes.

The graph's contract (``INPUT_NAME``, ``OUTPUT_NAMES``): input ``image``, float32
``N x 3 x H x W`` raw 0-255 pixels in ``LoadImageFromFile``'s channel order (BGR), already
resized as the test pipeline resizes; outputs ``seg_logits`` (``N x C x H x W``, as
``test_step``'s ``seg_logits``: the sigmoid for one channel) and ``pred_sem_seg``
(``N x 1 x H x W`` int64 class ids). Left to the caller: the test pipeline's resize
before, the resize of ``seg_logits`` back to the original image size after (then the
argmax or threshold again), flip TTA. SyncBN is reverted to BN and auxiliary heads are
left out (never used at inference).

``onnx``/``onnxruntime`` (the ``deploy`` extra) are imported lazily through
:func:`require`: ``import mmseg_dfss`` needs neither.
"""
import copy

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.logging import print_log

from ..core.teacher import checkpoint_state_dict, load_model_config
from .data_free_distiller import drop_auxiliary_head

INPUT_NAME = 'image'
OUTPUT_NAMES = ('seg_logits', 'pred_sem_seg')
OUTPUT_NAME = OUTPUT_NAMES[0]
PREPROCESSOR_KEYS = ('mean', 'std', 'bgr_to_rgb', 'rgb_to_bgr', 'pad_val', 'test_cfg')


def require(package, extra='pip install "mmseg-dfss[deploy]" (or pip install onnx onnxruntime)'):
    """Imports an optional package, or raises an ``ImportError`` saying what to install."""
    try:
        return __import__(package)
    except ImportError as e:
        raise ImportError(f'ONNX export needs {package!r}: {extra}') from e


def padding_cfg(test_cfg):
    """``(size, size_divisor)`` of a data_preprocessor's ``test_cfg``, as MMSeg's
    ``stack_batch`` takes them (exactly one of the two when ``test_cfg`` is given)."""
    if not test_cfg:
        return None, None
    size, divisor = test_cfg.get('size'), test_cfg.get('size_divisor')
    if (size is None) == (divisor is None):
        raise ValueError(f'data_preprocessor.test_cfg {dict(test_cfg)!r}: give exactly one of '
                         'size and size_divisor (as MMSeg\'s stack_batch requires)')
    if size is not None and (not isinstance(size, (list, tuple)) or len(size) != 2):
        raise ValueError(f'data_preprocessor.test_cfg.size {size!r}: expected (H, W)')
    return (tuple(int(s) for s in size) if size is not None else None,
            int(divisor) if divisor and divisor > 1 else None)


class ExportableSegmentor(nn.Module):
    """Raw BGR 0-255 ``N x 3 x H x W`` -> ``(seg_logits, pred_sem_seg)`` at ``H x W``,
    as ``test_step`` gives them (see the module docstring for the steps).

    Args:
        segmentor: an MMSeg ``EncoderDecoder``-like segmentor in eval mode.
        preprocessor (dict): the config's data_preprocessor (:data:`PREPROCESSOR_KEYS`).
        mode (str): ``'whole'`` or ``'slide'`` (``segmentor.test_cfg``'s crop and
            stride). A slide graph is traced for one input size: its crop grid is
            fixed at export.
    """

    def __init__(self, segmentor, preprocessor=None, mode='whole'):
        super().__init__()
        if mode not in ('whole', 'slide'):
            raise ValueError(f"model.test_cfg.mode {mode!r}: 'whole' or 'slide' expected")
        self.segmentor, self.mode = segmentor, mode
        pre = dict(preprocessor or {})
        if pre.get('bgr_to_rgb') and pre.get('rgb_to_bgr'):
            raise ValueError('data_preprocessor: bgr_to_rgb and rgb_to_bgr cannot both be True')
        self.swap = bool(pre.get('bgr_to_rgb') or pre.get('rgb_to_bgr'))
        self._set_normalisation(pre.get('mean'), pre.get('std'))
        self.pad_val = float(pre.get('pad_val') or 0)
        self.pad_size, self.pad_divisor = padding_cfg(pre.get('test_cfg'))
        channels = getattr(segmentor, 'out_channels', None)
        self.threshold = None
        if channels == 1:
            self.threshold = getattr(segmentor.decode_head, 'threshold', None)
            if self.threshold is None:
                raise ValueError('a one-channel decode_head needs decode_head.threshold')
            self.threshold = float(self.threshold)

    def _set_normalisation(self, mean, std):
        self.normalise = mean is not None
        if not self.normalise:
            return
        if std is None or len(mean) != len(std):
            raise ValueError(f'data_preprocessor: mean {mean!r} and std {std!r} must be '
                             'given together, one value per channel')
        for name, value in (('mean', mean), ('std', std)):
            self.register_buffer(name, torch.tensor(value, dtype=torch.float32).view(
                1, -1, 1, 1), persistent=False)

    def forward(self, image):
        x = image[:, [2, 1, 0], ...] if self.swap else image
        if self.normalise:
            x = (x - self.mean) / self.std
        h, w = x.shape[2], x.shape[3]
        logits = self.infer(self.pad(x, h, w))[:, :, :h, :w]
        if self.threshold is not None:  # postprocess_result: sigmoid, then the threshold
            logits = logits.sigmoid()
            return logits, (logits > self.threshold).long()
        return logits, logits.argmax(1, keepdim=True)

    def pad(self, x, h, w):
        """``stack_batch``'s test-time padding, bottom and right. Sizes stay tensors
        while tracing, so a dynamic graph pads each input by its own size."""
        if self.pad_size is not None:
            ph = torch.clamp(torch.as_tensor(self.pad_size[0]) - h, min=0)
            pw = torch.clamp(torch.as_tensor(self.pad_size[1]) - w, min=0)
        elif self.pad_divisor is not None:
            ph = (self.pad_divisor - h % self.pad_divisor) % self.pad_divisor
            pw = (self.pad_divisor - w % self.pad_divisor) % self.pad_divisor
        else:
            return x
        return F.pad(x, (0, pw, 0, ph), value=self.pad_val)

    def infer(self, x):
        """The segmentor's own whole or slide inference on the padded batch."""
        metas = [dict(img_shape=x.shape[2:], ori_shape=x.shape[2:], pad_shape=x.shape[2:])
                 ] * x.shape[0]
        if self.mode == 'slide':
            return self.segmentor.slide_inference(x, metas)
        return self.segmentor.encode_decode(x, metas)


def preprocessor_cfg(cfg, segmentor=None):
    """The ``data_preprocessor`` dict a config tests with (``model.data_preprocessor``,
    else the top-level one), read from the config, not the built module's internals
    (renamed between MMSeg 1.2 and onedl-mmsegmentation 1.4)."""
    model = cfg.get('model', cfg)
    dp = model.get('data_preprocessor') or cfg.get('data_preprocessor')
    if dp is None and segmentor is not None:
        print_log('ONNX export: the config has no data_preprocessor; the graph does no '
                  'channel swap, normalisation or padding', logger='current', level=30)
    return {k: copy.deepcopy(dp.get(k)) for k in PREPROCESSOR_KEYS} if dp else {}


def load_segmentor_weights(segmentor, checkpoint):
    """Loads ``checkpoint`` (path or URL, weights_only through the project's safe
    loading) strictly, except ``auxiliary_head.*`` weights, which are left out with
    the head (a zoo checkpoint has them, an exported student has none)."""
    state = checkpoint_state_dict(checkpoint, 'segmentor checkpoint')
    aux = [k for k in state if k.startswith('auxiliary_head.')]
    state = {k: v for k, v in state.items() if not k.startswith('auxiliary_head.')}
    if aux:
        print_log(f'ONNX export: {len(aux)} auxiliary_head weights of {checkpoint} left out '
                  '(not used at inference)', logger='current')
    own = segmentor.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    shapes = sorted(k for k in set(own) & set(state)
                    if getattr(state[k], 'shape', None) != own[k].shape)
    if missing or unexpected or shapes:
        raise KeyError(f'checkpoint {checkpoint!r} does not match the config: missing keys '
                       f'{missing[:10]}, unexpected keys {unexpected[:10]}, shape mismatches '
                       f'{shapes[:10]}' + (' (a DataFreeDistiller checkpoint? export the '
                                           'student with tools/export_student.py first)'
                                           if any(k.startswith('student.') for k in unexpected)
                                           else ''))
    segmentor.load_state_dict(state, strict=True)


def segmentor_model_cfg(cfg):
    """The ``model`` dict of a segmentor config, ready to build offline: its
    data_preprocessor (the top-level one if the model has none), no pretrained
    download, no auxiliary head."""
    if 'model' not in cfg:
        raise KeyError(f'config {getattr(cfg, "filename", cfg)!r} has no `model` entry')
    model_cfg = load_model_config(cfg.model)
    if 'data_preprocessor' not in model_cfg and cfg.get('data_preprocessor') is not None:
        model_cfg.data_preprocessor = copy.deepcopy(cfg.data_preprocessor)
    if model_cfg.get('type') == 'DataFreeDistiller':
        raise ValueError('ONNX export takes a segmentor config; this is a DataFreeDistiller '
                         'config: export the student first (tools/export_student.py, or '
                         'StudentExportHook) and give its student_config.py + student.pth')
    model_cfg.pop('pretrained', None)  # weights come from the checkpoint (no download)
    backbone = model_cfg.get('backbone')
    if isinstance(backbone, dict) and (backbone.get('init_cfg') or {}).get('type') == 'Pretrained':
        backbone.pop('init_cfg')
    return drop_auxiliary_head(model_cfg, notice=False)


def build_exportable(config, checkpoint=None, mode=None):
    """Builds the segmentor of ``config`` (a path or ``Config``) on CPU, loads
    ``checkpoint`` strictly with the project's safe loading (random weights without
    one), reverts SyncBN and wraps it as :class:`ExportableSegmentor`.

    ``mode``: ``'whole'`` or ``'slide'``; default the config's ``model.test_cfg.mode``.

    Returns:
        (wrapper, segmentor, Config)
    """
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import DefaultScope
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    cfg = Config.fromfile(config) if isinstance(config, str) else config
    model_cfg = segmentor_model_cfg(cfg)
    with DefaultScope.overwrite_default_scope('mmseg'):  # its data_preprocessor too
        segmentor = revert_sync_batchnorm(MODELS.build(model_cfg))
    if not hasattr(segmentor, 'encode_decode'):
        raise TypeError(f'ONNX export: {type(segmentor).__name__} has no encode_decode '
                        '(an MMSeg EncoderDecoder-like segmentor is needed)')
    if checkpoint is not None:
        load_segmentor_weights(segmentor, checkpoint)
    else:
        segmentor.init_weights()
        print_log('ONNX export: no checkpoint, random weights', logger='current', level=30)
    segmentor.eval()
    mode = mode or inference_mode(segmentor)
    wrapper = ExportableSegmentor(segmentor, preprocessor_cfg(model_cfg, segmentor), mode)
    return wrapper.eval(), segmentor, cfg


def inference_mode(segmentor):
    """``'whole'`` or ``'slide'``: the segmentor's ``test_cfg.mode``."""
    return (getattr(segmentor, 'test_cfg', None) or {}).get('mode', 'whole')


def config_test_shape(cfg, default=(512, 512)):
    """(H, W) of one test image of a config, when the config says it: the ``Resize``
    scale of the test pipeline (MMCV scales are (w, h); exact when images have that
    aspect, as Cityscapes' 2048x1024 does), else the ``slide`` crop, else
    ``crop_size``, else ``default``."""
    pipeline = cfg.get('test_pipeline') or ((cfg.get('test_dataloader') or {}).get(
        'dataset') or {}).get('pipeline') or []
    for t in pipeline:
        if t.get('type') == 'Resize' and isinstance(t.get('scale'), (list, tuple)):
            w, h = t['scale']
            return int(h), int(w)
    test_cfg = (cfg.get('model') or {}).get('test_cfg') or {}
    crop = test_cfg.get('crop_size')
    if test_cfg.get('mode') == 'slide' and crop:
        return (crop, crop) if isinstance(crop, int) else tuple(crop)
    crop = cfg.get('crop_size')
    return tuple(crop) if crop else tuple(default)
