"""``import mmseg_dfss`` hides onedl-mmsegmentation's "Could not import OneDL" line, and
only that line."""
import subprocess
import sys

from mmseg_dfss.core.onedl_notice import ONEDL_NOTICE, import_mmseg_datasets_quietly


def test_only_the_notice_is_dropped(tmp_path, monkeypatch, capsys):
    (tmp_path / 'noisy_mod.py').write_text(
        f'print({ONEDL_NOTICE!r})\nprint("a line the user needs")\n'
        f'print({ONEDL_NOTICE!r})\nVALUE = 7\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, 'noisy_mod', raising=False)
    module = import_mmseg_datasets_quietly('noisy_mod')
    assert module.VALUE == 7
    assert capsys.readouterr().out == 'a line the user needs\n'


def test_import_prints_no_notice():
    out = subprocess.run([sys.executable, '-c', 'import mmseg_dfss'], capture_output=True,
                         text=True, check=True).stdout
    assert ONEDL_NOTICE not in out
