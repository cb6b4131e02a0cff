"""Teacher -> student distillation on unlabeled (ADS-sampled) images, paper Sec. 3.4."""
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.config import ConfigDict
from mmengine.logging import print_log
from mmseg.models.segmentors import BaseSegmentor
from mmseg.registry import MODELS

from ..core.teacher import build_frozen_segmentor, load_model_config

# keys of SegDataPreProcessor that change what the network sees
NORM_KEYS = ('mean', 'std', 'bgr_to_rgb', 'rgb_to_bgr')


def _num_classes(segmentor, what):
    head = getattr(segmentor, 'decode_head', None)
    if isinstance(head, nn.ModuleList):  # CascadeEncoderDecoder: the last head decides
        head = head[-1]
    num = getattr(head, 'out_channels', None) or getattr(head, 'num_classes', None)
    if num is None:
        raise TypeError(f'DataFreeDistiller: cannot read the number of classes of the {what} '
                        f'({type(segmentor).__name__} has no decode_head.out_channels)')
    return num


def _normalisation(dp):
    dp = dp or {}
    return {k: (list(dp[k]) if isinstance(dp.get(k), (list, tuple)) else dp.get(k))
            for k in NORM_KEYS if k in dp}


@MODELS.register_module()
class DataFreeDistiller(BaseSegmentor):
    """An MMSeg segmentor that trains ``student`` to mimic a frozen ``teacher``.

    ``loss()`` runs the teacher without gradients and the student on the same
    normalised batch, upsamples both logit maps to the input resolution
    (bilinear, ``align_corners=False``) and returns ``distill_loss`` (WDPD, Eq. 12)
    with each sample's ``ads_weight`` w_i from its metainfo (1 when absent, e.g. a
    plain image pool). ``predict()``/``_forward()``/``extract_feat()`` are the
    student's, so MMSeg's validation/test loops, metrics and visualisation work
    unchanged, and the student is what gets exported.

    The teacher is frozen: built with strict checkpoint loading, no parameter
    requires grad, and it stays in eval mode whatever ``train()`` is called with,
    so its BN running statistics never change. ``init_weights()`` initialises the
    student only.

    Normalisation: the batch is normalised once, by this model's
    ``data_preprocessor``, and both networks see that tensor. The teacher must see
    inputs as in its own training, so its config's mean/std/channel order (when
    it has a ``data_preprocessor``) must equal this one, else building fails. A
    student config whose normalisation differs is trained (and exported) with this
    one, and a warning says so. Without ``data_preprocessor`` the teacher's is used.

    Args:
        teacher (dict | str): segmentor config, or a config file (``mmseg::`` ok).
        student (dict | str): segmentor config, or a config file.
        teacher_checkpoint (str, optional): teacher weights (strict). None gives a
            random teacher (tests/benchmarks only; a warning says so).
        distill_loss (dict): the loss, a :class:`WDPDLoss` config by default.
        data_preprocessor (dict, optional): ``SegDataPreProcessor`` config.
    """

    def __init__(self,
                 teacher,
                 student,
                 teacher_checkpoint=None,
                 distill_loss=dict(type='WDPDLoss'),
                 data_preprocessor=None,
                 init_cfg=None):
        teacher_cfg = load_model_config(teacher)
        student_cfg = load_model_config(student)
        data_preprocessor = self._check_normalisation(data_preprocessor, teacher_cfg,
                                                      student_cfg)
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.teacher = build_frozen_segmentor(teacher_cfg, teacher_checkpoint, what='teacher')
        self.teacher._is_init = True  # never re-initialised by init_weights()
        self.student = MODELS.build(student_cfg)
        n_t = _num_classes(self.teacher, 'teacher')
        n_s = _num_classes(self.student, 'student')
        if n_t != n_s:
            raise ValueError(f'DataFreeDistiller: the teacher predicts {n_t} classes and the '
                             f'student {n_s}; set the student decode_head num_classes={n_t}')
        self.distill_loss = MODELS.build(distill_loss)
        self.align_corners = False
        self.nonfinite_teacher_samples = 0

    @staticmethod
    def _check_normalisation(data_preprocessor, teacher_cfg, student_cfg):
        teacher_dp = teacher_cfg.get('data_preprocessor')
        if data_preprocessor is None:
            if teacher_dp is None:
                raise ValueError('DataFreeDistiller: give `data_preprocessor` (neither it nor '
                                 'the teacher config defines how inputs are normalised)')
            data_preprocessor = teacher_dp
        data_preprocessor = ConfigDict(data_preprocessor)
        data_preprocessor.setdefault('_scope_', 'mmseg')  # built by MMEngine's BaseModel
        ours = _normalisation(data_preprocessor)
        if teacher_dp is not None:
            theirs = _normalisation(teacher_dp)
            diff = {k: (theirs.get(k), ours.get(k)) for k in set(ours) | set(theirs)
                    if theirs.get(k) != ours.get(k)}
            if diff:
                raise ValueError(
                    'DataFreeDistiller: the teacher config normalises inputs differently from '
                    'model.data_preprocessor (teacher vs distiller): '
                    + ', '.join(f'{k}: {a} vs {b}' for k, a, b in
                                ((k, *v) for k, v in sorted(diff.items())))
                    + '; the teacher must see inputs as in its own training')
        student_dp = student_cfg.get('data_preprocessor')
        if student_dp is not None and _normalisation(student_dp) != ours:
            print_log(f'DataFreeDistiller: the student config normalises inputs with '
                      f'{_normalisation(student_dp)}; it is trained and exported with '
                      f'the distiller\'s {ours} instead', logger='current', level=30)
        return data_preprocessor

    def init_weights(self):
        """Initialises the student; the teacher keeps its checkpoint weights."""
        self.student.init_weights()
        self._is_init = True

    def train(self, mode=True):
        super().train(mode)
        self.teacher.eval()
        return self

    @staticmethod
    def _logits(segmentor, inputs, data_samples, what):
        out = segmentor._forward(inputs, data_samples)
        if not isinstance(out, torch.Tensor):
            raise TypeError(f'DataFreeDistiller: the {what}\'s _forward() returned '
                            f'{type(out).__name__}, expected a (B, C, H, W) logits tensor')
        return F.interpolate(out, size=inputs.shape[2:], mode='bilinear', align_corners=False)

    def sample_weights(self, data_samples, like):
        """w_i from each sample's ``ads_weight`` metainfo (1.0 when absent)."""
        return like.new_tensor([float(ds.metainfo.get('ads_weight', 1.0))
                                for ds in data_samples])

    def loss(self, inputs, data_samples):
        with torch.no_grad():
            teacher_logits = self._logits(self.teacher, inputs, data_samples, 'teacher')
        student_logits = self._logits(self.student, inputs, data_samples, 'student')
        weights = self.sample_weights(data_samples, student_logits)
        finite = torch.isfinite(teacher_logits).flatten(1).all(dim=1)
        if finite.all():
            return {self.distill_loss.loss_name:
                    self.distill_loss(student_logits, teacher_logits, weights)}
        return self._loss_without_nonfinite_teacher(student_logits, teacher_logits, weights,
                                                    finite, data_samples)

    def _loss_without_nonfinite_teacher(self, student_logits, teacher_logits, weights, finite,
                                        data_samples):
        """Samples whose teacher logits are not finite carry no supervision: they are
        left out of the batch mean (the others' loss is unchanged), counted in
        ``nonfinite_teacher_samples`` and logged (``train/nonfinite_teacher``)."""
        from mmengine.logging import MessageHub
        bad = int((~finite).sum())
        self.nonfinite_teacher_samples += bad
        paths = [ds.metainfo.get('img_path', '?') for ds, ok in zip(data_samples, finite)
                 if not ok]
        print_log(f'DataFreeDistiller: {bad} sample(s) with non-finite teacher logits left out '
                  f'of the loss ({self.nonfinite_teacher_samples} so far): {paths}',
                  logger='current', level=30)
        MessageHub.get_current_instance().update_scalar('train/nonfinite_teacher',
                                                        self.nonfinite_teacher_samples)
        # the student's own (detached) logits as target: exactly zero loss for them
        target = torch.where(finite[:, None, None, None], teacher_logits,
                             student_logits.detach())
        loss = self.distill_loss(student_logits, target, weights)
        return {self.distill_loss.loss_name: loss * finite.numel() / max(1, int(finite.sum()))}

    def predict(self, inputs, data_samples=None):
        return self.student.predict(inputs, data_samples)

    def _forward(self, inputs, data_samples=None):
        return self.student._forward(inputs, data_samples)

    def extract_feat(self, inputs):
        return self.student.extract_feat(inputs)

    def encode_decode(self, inputs, batch_data_samples):
        return self.student.encode_decode(inputs, batch_data_samples)
