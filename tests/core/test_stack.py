"""One supported OpenMMLab line per environment: ``import mmseg_dfss`` and the set-up
refuse a mixed, incomplete or too old stack with one line that says what to do, and
``mmseg::`` config bases resolve on the installed line."""
import os
import os.path as osp
import subprocess
import sys

import pytest

from mmseg_dfss.core import stack

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def fake_distribution(site, name, version):
    """A ``<name>-<version>.dist-info`` that importlib.metadata reports as installed."""
    info = osp.join(site, f'{name.replace("-", "_")}-{version}.dist-info')
    os.makedirs(info)
    with open(osp.join(info, 'METADATA'), 'w') as f:
        f.write(f'Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n')


def import_with(tmp_path, dists):
    """``import mmseg_dfss`` in a fresh interpreter that also sees ``dists``."""
    site = str(tmp_path / 'site')
    os.makedirs(site)
    for name, version in dists:
        fake_distribution(site, name, version)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([site, REPO]))
    return subprocess.run([sys.executable, '-c', 'import mmseg_dfss'], env=env,
                          capture_output=True, text=True, timeout=120)


def test_installed_line_is_accepted():
    line = stack.check_stack()
    assert line in (stack.MAINTAINED, stack.LEGACY)
    other = stack.LEGACY if line == stack.MAINTAINED else stack.MAINTAINED
    assert stack.lines_present() == [line]
    assert not any(d in stack.installed_distributions()
                   for d in sum(stack.DISTRIBUTIONS[other].values(), ()))


def test_mixed_stack_import_fails_with_one_line(tmp_path):
    line = stack.check_stack()
    other = {stack.MAINTAINED: ('mmsegmentation', '1.2.2'),
             stack.LEGACY: ('onedl-mmsegmentation', '1.4.2')}[line]
    proc = import_with(tmp_path, [other])
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith('mmseg_dfss.core.stack.StackError: mmseg-dfss: both OpenMMLab lines')
    assert f'{other[0]} {other[1]}' in last
    assert 'DFSS_STACK=1.2 bash scripts/setup_env.sh' in last and 'maintained' in last


@pytest.mark.parametrize('found, words', [
    ({'onedl-mmengine': '0.10.12', 'onedl-mmsegmentation': '1.4.2'}, ['missing mmcv']),
    ({}, ['missing mmcv, mmengine, mmseg', 'found: nothing']),
    ({'mmengine': '0.10.7', 'mmcv': '2.1.0', 'mmsegmentation': '1.1.2'},
     ['older than supported', 'mmsegmentation 1.1.2 (< 1.2.2)']),
    ({'onedl-mmengine': '0.10.12', 'onedl-mmcv': '2.3.6', 'onedl-mmsegmentation': '1.3.0'},
     ['older than supported', 'onedl-mmsegmentation 1.3.0 (< 1.4.2)']),
    ({'onedl-mmengine': '0.10.12', 'onedl-mmcv': '2.3.6', 'onedl-mmsegmentation': '1.4.2',
      'mmcv': '2.1.0'}, ['both OpenMMLab lines', 'mmcv 2.1.0']),
])
def test_bad_stacks_are_refused_in_one_line(found, words):
    with pytest.raises(stack.StackError) as err:
        stack.detect_stack(found)
    msg = str(err.value)
    assert '\n' not in msg
    for word in words:
        assert word in msg
    assert 'scripts/setup_env.sh' in msg


@pytest.mark.parametrize('found, line', [
    ({'onedl-mmengine': '0.10.12', 'onedl-mmcv': '2.3.6', 'onedl-mmsegmentation': '1.4.2'},
     stack.MAINTAINED),
    ({'mmengine': '0.10.7', 'mmcv': '2.1.0', 'mmsegmentation': '1.2.2'}, stack.LEGACY),
])
def test_complete_lines_are_detected(found, line):
    assert stack.detect_stack(found) == line


def test_mmseg_bases_resolve_on_the_installed_line(tmp_path):
    """A config with an ``mmseg::`` base reads after ``import mmseg_dfss`` on either line."""
    from mmengine.config import Config
    from mmengine.config.utils import MODULE2PACKAGE
    cfg = tmp_path / 'cfg.py'
    cfg.write_text("_base_ = ['mmseg::_base_/models/deeplabv3_r50-d8.py']\n")
    assert Config.fromfile(str(cfg)).model.decode_head.type == 'ASPPHead'
    assert MODULE2PACKAGE['mmseg'] == {stack.MAINTAINED: 'onedl-mmsegmentation',
                                       stack.LEGACY: 'mmsegmentation'}[stack.check_stack()]


def test_setup_env_refuses_a_virtualenv_of_the_other_line(tmp_path):
    """``scripts/setup_env.sh`` stops before installing anything into a virtualenv that
    holds the other line."""
    venv = tmp_path / 'venv'
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip', str(venv)], check=True)
    site = subprocess.run([str(venv / 'bin' / 'python'), '-c',
                           'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
                          capture_output=True, text=True, check=True).stdout.strip()
    fake_distribution(site, 'mmsegmentation', '1.2.2')
    env = dict(os.environ, DFSS_VENV=str(venv), DFSS_STACK='maintained')
    proc = subprocess.run(['bash', osp.join(REPO, 'scripts', 'setup_env.sh')], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "holds the OpenMMLab line(s) '1.2', not the requested maintained line" in proc.stderr
    assert os.listdir(site) == ['mmsegmentation-1.2.2.dist-info']  # nothing installed
