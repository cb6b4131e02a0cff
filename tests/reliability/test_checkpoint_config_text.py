"""A checkpoint made only of tensors, numbers and strings passes ``weights_only`` but
carries its config as Python text, which MMEngine and MMSeg run with
``Config.fromstring``: a resume (``meta.config``, for its gpu_ids check), an inferencer
with ``model=None`` (``message_hub.runtime_info.cfg``, else ``meta.cfg``), and the
project's student export (``meta.cfg``). With the plugin imported, text planted there
never runs, in both forms (a call of ``__import__``; an ``import`` statement): the
loader removes it with a warning, and literal text still works."""
import os.path as osp
import shutil

import pytest
import torch
from mmengine.config import Config

import mmseg_dfss  # noqa: F401  (registers the safe loaders)
from mmseg_dfss.core import safe_torch_load

TEACHER = 'configs/synthetic/deeplabv3_r18-tiny_synthetic.py'
PLACES = (('meta', 'cfg'), ('meta', 'config'), ('message_hub', 'runtime_info', 'cfg'))


def attacks(marker):
    """The two forms of text that runs code, each making the folder ``marker``."""
    return {'call': f"gpu_ids = [__import__('os').mkdir({marker!r})]\nmodel = dict()\n",
            'import': f'import os\ngpu_ids = [os.mkdir({marker!r})]\nmodel = dict()\n'}


def plant(checkpoint, text):
    """``checkpoint`` with ``text`` in every place MMEngine/MMSeg read config text."""
    for keys in PLACES:
        parent = checkpoint
        for key in keys[:-1]:
            parent = parent.setdefault(key, {})
        parent[keys[-1]] = text
    return checkpoint


@pytest.fixture(scope='module')
def teacher_text(repo_root):
    return Config.fromfile(osp.join(repo_root, TEACHER)).pretty_text


@pytest.mark.parametrize('form', ['call', 'import'])
def test_the_loader_removes_text_that_would_run(tmp_path, teacher_ckpt, form, monkeypatch):
    import mmengine.logging
    warnings = []
    monkeypatch.setattr(mmengine.logging, 'print_log',
                        lambda msg, logger=None, level=20: warnings.append((level, msg)))
    marker = str(tmp_path / 'code_ran')
    path = str(tmp_path / 'planted.pth')
    state = torch.load(teacher_ckpt, weights_only=True)['state_dict']
    torch.save(plant({'state_dict': state, 'meta': {'iter': 1}}, attacks(marker)[form]), path)
    from mmengine.runner.checkpoint import _load_checkpoint
    ckpt = _load_checkpoint(path, map_location='cpu')  # resume, load_from, inferencer
    assert 'cfg' not in ckpt['meta'] and 'config' not in ckpt['meta']
    assert 'cfg' not in ckpt['message_hub']['runtime_info']
    assert ckpt['meta']['iter'] == 1 and set(ckpt['state_dict']) == set(state)
    assert not osp.exists(marker)
    refused = 'call of __import__ at line 1' if form == 'call' else 'import statement at line 1'
    assert [place for level, msg in warnings for place in ('meta.cfg', 'meta.config',
            'message_hub.runtime_info.cfg') if f'planted.pth: {place}: {refused}' in msg
            and level == 30] == ['meta.cfg', 'meta.config', 'message_hub.runtime_info.cfg']


def test_literal_text_is_rewritten_and_still_reads(tmp_path, teacher_ckpt, teacher_text):
    path = str(tmp_path / 'clean.pth')
    state = torch.load(teacher_ckpt, weights_only=True)['state_dict']
    torch.save(plant({'state_dict': state, 'meta': {}}, teacher_text), path)
    ckpt = safe_torch_load(path)
    expected = Config.fromstring(teacher_text, '.py').to_dict()
    for keys in PLACES:
        text = ckpt
        for key in keys:
            text = text[key]
        assert Config.fromstring(text, '.py').to_dict() == expected


def _inferencer(weights):
    from mmseg.apis import MMSegInferencer
    return MMSegInferencer(model=None, weights=weights, device='cpu')


@pytest.mark.parametrize('form', ['call', 'import'])
def test_mmseg_inferencer_never_runs_planted_text(tmp_path, teacher_ckpt, teacher_text, form):
    """MMSegInferencer(model=None, weights=CKPT) builds the model from the checkpoint's
    config: with literal text it does; with planted text it stops, nothing having run."""
    state = torch.load(teacher_ckpt, weights_only=True)['state_dict']
    clean = str(tmp_path / 'clean.pth')
    torch.save(plant({'state_dict': state, 'meta': {}}, teacher_text), clean)
    model = _inferencer(clean).model
    assert torch.equal(model.state_dict()['decode_head.conv_seg.weight'],
                       state['decode_head.conv_seg.weight'])

    marker = str(tmp_path / 'code_ran')
    planted = str(tmp_path / 'planted.pth')
    torch.save(plant({'state_dict': state, 'meta': {}}, attacks(marker)[form]), planted)
    with pytest.raises(ValueError, match='Cannot find the config in the checkpoint'):
        _inferencer(planted)
    assert not osp.exists(marker)


@pytest.mark.parametrize('form', ['call', 'import'])
def test_student_export_never_runs_planted_text(tmp_path, teacher_ckpt, form):
    """tools/export_student.py CKPT OUT without --config reads the checkpoint's meta.cfg:
    planted text stops it, asking for --config, and never runs."""
    from mmseg_dfss.models.student_export import export_student_from_checkpoint
    state = torch.load(teacher_ckpt, weights_only=True)['state_dict']
    marker = str(tmp_path / 'code_ran')
    path = str(tmp_path / 'distiller.pth')
    torch.save(plant({'state_dict': {f'student.{k}': v for k, v in state.items()}, 'meta': {}},
                     attacks(marker)[form]), path)
    with pytest.raises(ValueError, match=r'stores no config \(or its text was refused'):
        export_student_from_checkpoint(path, str(tmp_path / 'out'))
    assert not osp.exists(marker)


@pytest.fixture(scope='module')
def trained(tmp_path_factory, repo_root, synthetic_root):
    """tools/train.py on the synthetic teacher, 2 iterations, a checkpoint at 2."""
    from conftest import run_tool
    work = tmp_path_factory.mktemp('trained')
    run_tool('tools/train.py', TEACHER, '--work-dir', work, '--cfg-options',
             *_options(synthetic_root, 2))
    return str(work / 'iter_2.pth')


def _options(synthetic_root, max_iters):
    return [f'{k}_dataloader.dataset.data_root={synthetic_root}/scenes'
            for k in ('train', 'val', 'test')] + [
        f'train_cfg.max_iters={max_iters}', 'train_cfg.val_interval=1000',
        'default_hooks.checkpoint.interval=1', 'default_hooks.logger.interval=1',
        'default_hooks.visualization.draw=False', 'train_dataloader.batch_size=2']


@pytest.mark.slow
@pytest.mark.parametrize('form', ['call', 'import'])
def test_a_real_resume_never_runs_planted_text(tmp_path, trained, synthetic_root, form):
    """tools/train.py --resume on a real checkpoint whose meta.config (read by MMEngine's
    Runner.resume for gpu_ids), meta.cfg and message hub cfg hold planted text: the run
    resumes at iteration 2 and goes on to 3, and the text never ran."""
    from conftest import run_tool
    marker = str(tmp_path / 'code_ran')
    work = tmp_path / 'work'
    work.mkdir()
    checkpoint = safe_torch_load(trained)
    assert 'config' not in checkpoint['meta']  # MMEngine writes meta.cfg; plant both
    torch.save(plant(checkpoint, attacks(marker)[form]), str(work / 'iter_2.pth'))
    (work / 'last_checkpoint').write_text(str(work / 'iter_2.pth'))
    proc = run_tool('tools/train.py', TEACHER, '--work-dir', work, '--resume',
                    '--cfg-options', *_options(synthetic_root, 3))
    assert not osp.exists(marker)
    resumed = safe_torch_load(str(work / 'iter_3.pth'))
    assert resumed['meta']['iter'] == 3
    assert 'is not a literal' in proc.stdout + proc.stderr
    shutil.rmtree(work)
