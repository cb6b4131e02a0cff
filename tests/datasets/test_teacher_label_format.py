"""How a teacher label is written: atomically, never through a link planted under its
name (the label folder may be shared)."""
import os

import numpy as np
from PIL import Image

from mmseg_dfss.datasets.teacher_label_format import write_label


def test_planted_links_are_replaced_not_written_through(tmp_path):
    """Links under the label's name and under a guessable temporary name (path + pid):
    the user's file they point at keeps its bytes."""
    victim = tmp_path / 'users_image.png'
    victim.write_bytes(b'the user\'s bytes')
    label_path = tmp_path / 'labels' / 'abc.png'
    label_path.parent.mkdir()
    os.symlink(victim, label_path)
    os.symlink(victim, f'{label_path}.{os.getpid()}.tmp')
    write_label(str(label_path), np.array([[0, 3], [2, 1]]), num_classes=4)
    assert victim.read_bytes() == b'the user\'s bytes'
    assert not label_path.is_symlink()
    np.testing.assert_array_equal(np.asarray(Image.open(label_path)), [[0, 3], [2, 1]])
    assert sorted(os.listdir(label_path.parent)) == sorted(  # no temporary of ours left
        ['abc.png', f'abc.png.{os.getpid()}.tmp'])


def test_a_wide_label_keeps_classes_above_255(tmp_path):
    path = tmp_path / 'wide.png'
    write_label(str(path), np.array([[0, 299]]), num_classes=300)
    np.testing.assert_array_equal(np.asarray(Image.open(path)), [[0, 299]])
