"""The exported student is written as new files: a link planted under ``student.pth`` or
``student_config.py`` in the output folder is replaced, its target never written."""
import os
import os.path as osp

import torch
from mmengine.config import Config

from mmseg_dfss.models.student_export import export_student

DFSS = 'configs/synthetic/dfss_r18-tiny_to_mbv2-tiny_synthetic.py'


def test_links_planted_under_the_export_names_are_never_written_through(tmp_path, repo_root):
    out = tmp_path / 'student'
    out.mkdir()
    victims = {}
    for name in ('student.pth', 'student_config.py'):
        victims[name] = tmp_path / f'users_{name}'
        victims[name].write_bytes(b'the user\'s bytes')
        os.symlink(victims[name], out / name)
    cfg = Config.fromfile(osp.join(repo_root, DFSS))
    ckpt, cfg_path = export_student(cfg, {'w': torch.ones(2)}, str(out))
    assert all(v.read_bytes() == b'the user\'s bytes' for v in victims.values())
    assert not osp.islink(ckpt) and not osp.islink(cfg_path)
    assert torch.load(ckpt, weights_only=True)['state_dict']['w'].tolist() == [1.0, 1.0]
    assert Config.fromfile(cfg_path).model.type == 'EncoderDecoder'
    assert sorted(os.listdir(out)) == ['student.pth', 'student_config.py']
