"""The student presets exist on the installed line, and a student takes the teacher's
classes, normalisation and crop (each change logged)."""
import pytest
import torch

from mmseg_dfss.apis.compress import CompressError
from mmseg_dfss.apis.compress.student_spec import PRESETS, adapt_student
from mmseg_dfss.apis.compress.teacher_spec import TeacherSpec
from mmseg_dfss.core.teacher import build_segmentor, load_model_config


def _teacher(num_classes=7):
    return TeacherSpec(given='t', cfg_path='t.py', checkpoint=None, num_classes=num_classes,
                       classes=[f'c{i}' for i in range(num_classes)],
                       preprocessor=dict(type='SegDataPreProcessor', mean=[1., 2., 3.],
                                         std=[4., 5., 6.], bgr_to_rgb=False),
                       crop=(64, 96))


@pytest.mark.parametrize('preset', sorted(PRESETS))
def test_preset_takes_the_teacher_classes_norm_and_crop(preset):
    spec, changes = adapt_student(preset, _teacher(), log=False)
    model = load_model_config(spec)
    assert model.decode_head.num_classes == 7
    assert model.data_preprocessor.mean == [1., 2., 3.]
    assert model.data_preprocessor.std == [4., 5., 6.]
    assert model.data_preprocessor.bgr_to_rgb is False
    assert tuple(model.data_preprocessor.size) == (64, 96)
    assert any('num_classes' in c for c in changes) and any('mean' in c for c in changes)


def test_adapted_student_predicts_the_teacher_classes(mmseg_scope):
    spec, _ = adapt_student('deeplabv3-mbv2', _teacher(5), log=False)
    model = build_segmentor(load_model_config(spec)).eval()
    with torch.no_grad():
        out = model._forward(torch.zeros(1, 3, 64, 96))
    assert out.shape[1] == 5


def test_unknown_student_names_the_presets():
    with pytest.raises(CompressError, match='neither a preset'):
        adapt_student('mobilenet-v9', _teacher())
