"""Teacher -> student distillation on unlabeled (ADS-sampled) images, paper Sec. 3.4."""
import copy

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.config import ConfigDict
from mmengine.logging import print_log
from mmseg.models.segmentors import BaseSegmentor
from mmseg.registry import MODELS

from ..core.teacher import (build_segmentor, check_teacher_checkpoint, freeze,
                            load_checkpoint_strict, load_model_config, teacher_record)

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
    one, and a warning says so. Without ``data_preprocessor`` the teacher's is used.

    Args:
        teacher (dict | str): segmentor config, a config file (``mmseg::`` ok), or
            ``dict(cfg_path=..., **overrides)``.
        student (dict | str): same forms as ``teacher``.
        teacher_checkpoint (str): teacher weights (strict): a path or any URL
            MMEngine's ``CheckpointLoader`` reads.
        distill_loss (dict): the loss, a :class:`WDPDLoss` config by default.
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
        if teacher_checkpoint is not None:
            check_teacher_checkpoint(teacher_checkpoint, True, 'DataFreeDistiller',
                                     key='model.teacher_checkpoint')
        teacher_cfg = load_model_config(teacher)
        student_cfg = load_model_config(student)
        data_preprocessor = self._check_normalisation(data_preprocessor, teacher_cfg,
                                                      student_cfg)
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.teacher_spec = copy.deepcopy(teacher)
        self.teacher_checkpoint = teacher_checkpoint
        self.allow_random_teacher = allow_random_teacher
        self.teacher = freeze(build_segmentor(teacher_cfg))
        if teacher_checkpoint is None and allow_random_teacher:  # explicitly allowed
            self.teacher.init_weights()
            print_log('DataFreeDistiller: no teacher_checkpoint, the teacher has random '
                      'weights (allow_random_teacher=True)', logger='current', level=30)
        self.teacher._is_init = True  # never re-initialised by init_weights()
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
        if self.teacher_checkpoint is not None:
            load_checkpoint_strict(self.teacher, self.teacher_checkpoint, 'teacher')
            freeze(self.teacher)
        record = teacher_record(self.teacher_spec, self.teacher_checkpoint, self.teacher)
        buffer = getattr(self, DIGEST_BUFFER)
        saved = _hex(buffer)
        if any(buffer.tolist()) and saved != record['weights_digest']:
            raise RuntimeError(
                f'DataFreeDistiller: teacher_checkpoint {self.teacher_checkpoint!r} does not '
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
                    f'distiller uses {ours["spec"]!r} (checkpoint {ours["checkpoint"]!r}). Set '
                    'train_dataloader.dataset.teacher / .teacher_checkpoint and '
                    'model.teacher / model.teacher_checkpoint to the same model')

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
        """Training mode for the student; the teacher stays in eval mode. Entering
        training loads the teacher's weights (MMEngine's loops call this first)."""
        super().train(mode)
        self.teacher.eval()
        if mode:
            self.load_teacher()
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
        self.check_same_teacher(data_samples)
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
