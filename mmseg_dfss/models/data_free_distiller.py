"""Teacher -> student distillation on unlabeled (ADS-sampled) images, paper Sec. 3.4."""
import copy

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.config import ConfigDict
from mmengine.logging import print_log
from mmseg.models.segmentors import BaseSegmentor
from mmseg.registry import MODELS

from ..core.teacher import (build_frozen_segmentor, build_segmentor, check_teacher_checkpoint,
                            freeze, load_checkpoint_strict, load_model_config,
                            resolve_teacher_checkpoint, teacher_record)

# keys of SegDataPreProcessor that change what the network sees
NORM_KEYS = ('mean', 'std', 'bgr_to_rgb', 'rgb_to_bgr')
# the sha256 of the teacher weights a run distils from, saved in its checkpoints
DIGEST_BUFFER = 'teacher_weights_digest'


def _num_classes(segmentor, what):
    head = getattr(segmentor, 'decode_head', None)
    if isinstance(head, nn.ModuleList):  # CascadeEncoderDecoder: the last head decides
        head = head[-1]
    num = getattr(head, 'out_channels', None) or getattr(head, 'num_classes', None)
    if num is None:
        raise TypeError(f'DataFreeDistiller: cannot read the number of classes of the {what} '
                        f'({type(segmentor).__name__} has no decode_head.out_channels)')
    return num


def _drop_teacher_from_state_dict(module, state_dict, prefix, local_metadata):
    """State-dict post-hook: a distiller checkpoint carries no teacher weights (they come
    from ``teacher_checkpoint``); registered as a hook because MMEngine's
    ``get_state_dict`` runs the hooks but not a ``state_dict()`` override."""
    for key in [k for k in state_dict if k.startswith(prefix + 'teacher.')]:
        del state_dict[key]


def _teacher_keys_are_not_missing(module, incompatible_keys):
    """Load post-hook: absent teacher weights (and the digest of checkpoints written
    before it existed) are expected, not "missing keys"."""
    missing = incompatible_keys.missing_keys
    missing[:] = [k for k in missing
                  if not (k.startswith('teacher.') or k == DIGEST_BUFFER)]


def _hex(digest_tensor):
    return bytes(digest_tensor.detach().cpu().tolist()).hex()


def drop_auxiliary_head(student_cfg, notice=True):
    """The student config without its ``auxiliary_head`` (zoo DeepLabV3/PSPNet/
    BiSeNet/STDC configs have one). Distillation supervises the final logits only
    (Eq. 12): an auxiliary head would get no gradient, which DDP refuses
    ("Expected to have finished reduction in the prior iteration"), and would be
    exported as dead weight. ``notice`` logs one line saying so."""
    if student_cfg.get('auxiliary_head') is None:
        return student_cfg
    student_cfg = ConfigDict(copy.deepcopy(dict(student_cfg)))
    head = student_cfg.pop('auxiliary_head')
    heads = head if isinstance(head, (list, tuple)) else [head]
    if notice:
        print_log(f'DataFreeDistiller: the student\'s auxiliary_head '
                  f'({", ".join(str(h.get("type")) for h in heads)}) is dropped: distillation '
                  'supervises its final logits only', logger='current')
    return student_cfg


def distiller_data_preprocessor(data_preprocessor, teacher_dp):
    """The preprocessor config the distiller (and the exported student) uses: the
    teacher's when none is given; else the given one, with the teacher's ``type``
    and normalisation keys filling in what it leaves out (e.g. it sets ``size``
    only, as ``--cfg-options model.data_preprocessor.size=...`` does)."""
    if data_preprocessor is None:
        return copy.deepcopy(teacher_dp)
    data_preprocessor = copy.deepcopy(dict(data_preprocessor))
    for key in ('type', ) + NORM_KEYS:
        if teacher_dp is not None and key not in data_preprocessor and key in teacher_dp:
            data_preprocessor[key] = copy.deepcopy(teacher_dp[key])
    return data_preprocessor


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
    plain image pool), averaged over each sample's real pixels (its ``img_shape``;
    padding added by the preprocessor is left out, and a one-time warning says how
    much of the batch it is) and computed in fp32 under mixed precision (``--amp``).
    The student's ``auxiliary_head``, which distillation does not supervise, is
    dropped at build (one log line). ``predict()``/``_forward()``/``extract_feat()``
    are the student's, so MMSeg's validation/test loops, metrics and visualisation
    work unchanged, and the student is what gets exported.

    The teacher is frozen: no parameter requires grad, and it stays in eval mode
    whatever ``train()`` is called with, so its BN running statistics never change.
    ``init_weights()`` initialises the student only.

    The teacher's weights are needed for training only. They are loaded (strictly,
    from any ``CheckpointLoader`` scheme) when training starts: on the first
    ``train()`` (MMEngine's train loop calls it before the first iteration) or
    ``loss()``, never for validation or testing, so ``tools/test.py`` runs on a
    machine without ``teacher_checkpoint``. Checkpoints of this model carry no teacher
    weights, only their sha256 (the ``teacher_weights_digest`` buffer): a resumed run
    reloads ``teacher_checkpoint`` and stops if its weights are not the ones the run
    started with.

    One teacher per run: samples selected by :class:`ADSDataset` carry the identity of
    the teacher that scored them (``ads_teacher``: config and weights digests); a batch
    scored by another teacher than this one stops training with an error naming both.

    Normalisation: the batch is normalised once, by this model's
    ``data_preprocessor``, and both networks see that tensor. The teacher must see
    inputs as in its own training, so its config's mean/std/channel order (when
    it has a ``data_preprocessor``) must equal this one, else building fails. A
    student config whose normalisation differs is trained (and exported) with this
    one, and a warning says so. Without ``data_preprocessor`` the teacher's is used;
    the teacher's ``type`` and normalisation fill in what ``data_preprocessor``
    leaves out (so ``--cfg-options model.data_preprocessor.size=...`` alone works).

    Args:
        teacher (dict | str): segmentor config, a config file (``mmseg::`` ok), or
            ``dict(cfg_path=..., **overrides)``.
        student (dict | str): same forms as ``teacher``.
        teacher_checkpoint (str): teacher weights (strict): a path or any URL
            MMEngine's ``CheckpointLoader`` reads, or ``'metafile'``: the Weights the
            installed metafile lists for a teacher given as a zoo config.
        distill_loss (dict): the loss, a :class:`WDPDLoss` config by default; called
            as ``loss(student_logits, teacher_logits, weights, valid_shapes=...)``.
        data_preprocessor (dict, optional): ``SegDataPreProcessor`` config.
        allow_random_teacher (bool): allow ``teacher_checkpoint=None``, a random-weight
            teacher (tests and benchmarks only). Default False: None is an error when
            training starts (testing a checkpoint needs no teacher at all).
    """

    def __init__(self,
                 teacher,
                 student,
                 teacher_checkpoint=None,
                 distill_loss=dict(type='WDPDLoss'),
                 data_preprocessor=None,
                 init_cfg=None,
                 allow_random_teacher=False):
        for key, spec in (('teacher', teacher), ('student', student)):
            if not spec:
                raise ValueError(f'DataFreeDistiller: model.{key} is not set: give a segmentor '
                                 "config, a config path or dict(cfg_path='...py')")
        if teacher_checkpoint is not None:
            check_teacher_checkpoint(teacher_checkpoint, True, 'DataFreeDistiller',
                                     key='model.teacher_checkpoint')
        teacher_cfg = load_model_config(teacher)
        student_cfg = drop_auxiliary_head(load_model_config(student))
        data_preprocessor = self._check_normalisation(data_preprocessor, teacher_cfg,
                                                      student_cfg)
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.teacher_spec = copy.deepcopy(teacher)
        self.teacher_checkpoint = teacher_checkpoint
        self.allow_random_teacher = allow_random_teacher
        if teacher_checkpoint is None and allow_random_teacher:  # explicitly allowed
            self.teacher = build_frozen_segmentor(teacher_cfg, None, 'DataFreeDistiller teacher',
                                                  allow_random_teacher=True)
        else:  # weights from teacher_checkpoint when training starts (load_teacher)
            self.teacher = freeze(build_segmentor(teacher_cfg))
        self.teacher.is_init = True  # never re-initialised by init_weights()
        self._teacher_record = None  # set when the weights are loaded (load_teacher)
        self.register_buffer(DIGEST_BUFFER, torch.zeros(32, dtype=torch.uint8))
        self.register_state_dict_post_hook(_drop_teacher_from_state_dict)
        self.register_load_state_dict_post_hook(_teacher_keys_are_not_missing)
        self.student = MODELS.build(student_cfg)
        n_t = _num_classes(self.teacher, 'teacher')
        n_s = _num_classes(self.student, 'student')
        if n_t != n_s:
            raise ValueError(f'DataFreeDistiller: the teacher predicts {n_t} classes and the '
                             f'student {n_s}; set the student decode_head num_classes={n_t}')
        self.distill_loss = MODELS.build(distill_loss)
        self.align_corners = False
        self.nonfinite_teacher_samples = 0
        self._padding_warned = False

    # ----------------------------------------------------------------- teacher
    def load_teacher(self):
        """Loads ``teacher_checkpoint`` into the teacher (once) and checks its digest
        against the one restored from a checkpoint of this run. Returns the teacher's
        record (spec, checkpoint, config and weights digests)."""
        if self._teacher_record is not None:
            return self._teacher_record
        # checked here, not when built: testing never needs the teacher
        check_teacher_checkpoint(self.teacher_checkpoint, self.allow_random_teacher,
                                 'DataFreeDistiller', key='model.teacher_checkpoint')
        checkpoint = resolve_teacher_checkpoint(self.teacher_spec, self.teacher_checkpoint)
        if checkpoint is not None:
            load_checkpoint_strict(self.teacher, checkpoint, 'teacher')
            freeze(self.teacher)
        record = teacher_record(self.teacher_spec, checkpoint, self.teacher)
        buffer = getattr(self, DIGEST_BUFFER)
        saved = _hex(buffer)
        if any(buffer.tolist()) and saved != record['weights_digest']:
            raise RuntimeError(
                f'DataFreeDistiller: teacher_checkpoint {checkpoint!r} does not '
                f'hold the teacher weights this run started with (sha256 {saved[:16]}... in '
                f'the loaded checkpoint, {record["weights_digest"][:16]}... in the file); '
                'restore that file to resume. To start a new distillation from this '
                "run's student, export it (tools/export_student.py) and load it as "
                "model.student.init_cfg=dict(type='Pretrained', checkpoint=...)")
        buffer.copy_(torch.tensor(list(bytes.fromhex(record['weights_digest'])),
                                  dtype=torch.uint8))
        self._teacher_record = record
        return record

    def check_same_teacher(self, data_samples):
        """Stops when a sample was selected (ADS) by another teacher than this one."""
        ours = self.load_teacher()
        seen = set()
        for ds in data_samples:
            theirs = ds.metainfo.get('ads_teacher')
            if not theirs:
                continue
            key = (theirs.get('config_digest'), theirs.get('weights_digest'))
            if key in seen:
                continue
            seen.add(key)
            what = [name for name, a, b in (
                ('configs', theirs.get('config_digest'), ours['config_digest']),
                ('weights', theirs.get('weights_digest'), ours['weights_digest'])) if a != b]
            if theirs.get('checkpoint') is None and ours['checkpoint'] is None:
                what = [w for w in what if w != 'weights']  # two random teachers (opt-in)
            if what:
                raise RuntimeError(
                    'DataFreeDistiller: the training samples were selected by ADS with a '
                    'different teacher than the one distilled from (their '
                    f'{" and ".join(what)} differ): ADS scored with '
                    f'{theirs.get("spec")!r} (checkpoint {theirs.get("checkpoint")!r}), the '
                    f'distiller uses {ours["spec"]!r} (checkpoint {ours["checkpoint"]!r}). Leave '
                    'train_dataloader.dataset.teacher / .teacher_checkpoint unset (they '
                    'follow model.teacher / model.teacher_checkpoint) or set them alike')

    @staticmethod
    def _check_normalisation(data_preprocessor, teacher_cfg, student_cfg):
        teacher_dp = teacher_cfg.get('data_preprocessor')
        data_preprocessor = distiller_data_preprocessor(data_preprocessor, teacher_dp)
        if data_preprocessor is None:
            raise ValueError('DataFreeDistiller: give `data_preprocessor` (neither it nor '
                             'the teacher config defines how inputs are normalised)')
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
        self.is_init = True

    def train(self, mode=True):
        """Training mode for the student; the teacher stays in eval mode. Entering
        training loads the teacher's weights (MMEngine's loops call this first)."""
        super().train(mode)
        self.teacher.eval()
        if mode:
            self.load_teacher()
        return self

    @staticmethod
    def _logits(segmentor, inputs, data_samples, what):
        """The segmentor's logits upsampled to the input size, in fp32 (under
        ``--amp`` the networks run in fp16/bf16, the loss does not)."""
        out = segmentor._forward(inputs, data_samples)
        if not isinstance(out, torch.Tensor):
            raise TypeError(f'DataFreeDistiller: the {what}\'s _forward() returned '
                            f'{type(out).__name__}, expected a (B, C, H, W) logits tensor')
        with torch.autocast(device_type=out.device.type, enabled=False):
            out = out.float() if out.dtype in (torch.float16, torch.bfloat16) else out
            return F.interpolate(out, size=inputs.shape[2:], mode='bilinear',
                                 align_corners=False)

    def valid_shapes(self, inputs, data_samples):
        """Each sample's ``(h, w)`` of real pixels, from its ``img_shape`` metainfo
        (MMSeg's preprocessor pads right and bottom up to ``size``/``size_divisor``);
        the whole input when absent. Warns once when the batch holds padding."""
        height, width = inputs.shape[2:]
        shapes = []
        for ds in data_samples:
            shape = ds.metainfo.get('img_shape')
            shapes.append((min(int(shape[0]), height), min(int(shape[1]), width))
                          if shape is not None else (height, width))
        if not self._padding_warned and any(hw != (height, width) for hw in shapes):
            self._padding_warned = True
            share = 1 - sum(h * w for h, w in shapes) / (len(shapes) * height * width)
            dp = self.data_preprocessor
            key = ('size_divisor' if getattr(dp, 'size', None) is None
                   and getattr(dp, 'size_divisor', None) else 'size')
            crop = (max(h for h, _ in shapes), max(w for _, w in shapes))
            print_log(f'DataFreeDistiller: {share:.0%} of this training batch is padding '
                      f'(images of {sorted(set(shapes))} padded to {height}x{width} by the '
                      f'data preprocessor). The loss leaves padding out, but both networks '
                      f'still compute on it: set model.data_preprocessor.{key} to fit the '
                      f'pool crops (e.g. model.data_preprocessor.size={crop})',
                      logger='current', level=30)
        return shapes

    def sample_weights(self, data_samples, like):
        """w_i from each sample's ``ads_weight`` metainfo (1.0 when absent)."""
        return like.new_tensor([float(ds.metainfo.get('ads_weight', 1.0))
                                for ds in data_samples])

    def loss(self, inputs, data_samples):
        self.check_same_teacher(data_samples)
        with torch.no_grad():
            teacher_logits = self._logits(self.teacher, inputs, data_samples, 'teacher')
        student_logits = self._logits(self.student, inputs, data_samples, 'student')
        weights = self.sample_weights(data_samples, student_logits)
        shapes = self.valid_shapes(inputs, data_samples)
        finite = torch.isfinite(teacher_logits).flatten(1).all(dim=1)
        with torch.autocast(device_type=student_logits.device.type, enabled=False):
            if finite.all():
                return {self.distill_loss.loss_name:
                        self.distill_loss(student_logits, teacher_logits, weights,
                                          valid_shapes=shapes)}
            return self._loss_without_nonfinite_teacher(student_logits, teacher_logits,
                                                        weights, finite, data_samples, shapes)

    def _loss_without_nonfinite_teacher(self, student_logits, teacher_logits, weights, finite,
                                        data_samples, shapes=None):
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
        loss = self.distill_loss(student_logits, target, weights, valid_shapes=shapes)
        return {self.distill_loss.loss_name: loss * finite.numel() / max(1, int(finite.sum()))}

    def predict(self, inputs, data_samples=None):
        return self.student.predict(inputs, data_samples)

    def _forward(self, inputs, data_samples=None):
        return self.student._forward(inputs, data_samples)

    def extract_feat(self, inputs):
        return self.student.extract_feat(inputs)

    def encode_decode(self, inputs, batch_data_samples):
        return self.student.encode_decode(inputs, batch_data_samples)
