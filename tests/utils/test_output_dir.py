"""A tool writes only into a folder that is new, empty or its own (issue 26 item 3)."""
import json
import os

import pytest
from conftest import run_python

from mmseg_dfss.utils.output_dir import MARKER, OutputDirError, claim_output_dir


def test_new_empty_and_own_folders_are_claimed(tmp_path):
    new = tmp_path / 'a' / 'b'
    assert claim_output_dir(str(new), 'tool_x') == str(new)
    (new / 'result.csv').write_text('1\n')
    claim_output_dir(str(new), 'tool_x')  # its own folder, again
    empty = tmp_path / 'empty'
    empty.mkdir()
    claim_output_dir(str(empty), 'tool_x')
    assert (empty / MARKER).read_text().strip() == 'tool_x'


def test_foreign_folders_are_refused_untouched(tmp_path):
    other = tmp_path / 'other'
    claim_output_dir(str(other), 'tool_y')
    with pytest.raises(OutputDirError, match='written by tool_y'):
        claim_output_dir(str(other), 'tool_x')
    unmarked = tmp_path / 'unmarked'
    unmarked.mkdir()
    (unmarked / 'summary.json').write_text('{"eps": 600}')
    with pytest.raises(OutputDirError, match=str(unmarked)):
        claim_output_dir(str(unmarked), 'tool_x')
    assert os.listdir(unmarked) == ['summary.json']
    os.symlink(tmp_path / 'empty_target', tmp_path / 'link')
    (tmp_path / 'empty_target').mkdir()
    with pytest.raises(OutputDirError, match='symbolic link'):
        claim_output_dir(str(tmp_path / 'link'), 'tool_x')


def test_compare_predictions_leaves_compare_pools_output_alone(tmp_path, repo_root):
    """The label-free doc's command once overwrote the demo's compare_pools summary."""
    demo_compare = tmp_path / 'compare'
    demo_compare.mkdir()
    (demo_compare / 'summary.json').write_text(json.dumps({'eps': 600}))
    proc = run_python('tools/compare_predictions.py', 'CONFIG', 'CKPT', '--images', 'DIR',
                      '--out', demo_compare)
    assert proc.returncode == 1
    assert f'--out {demo_compare} holds files not written by it' in proc.stderr
    assert json.loads((demo_compare / 'summary.json').read_text()) == {'eps': 600}


def test_compare_predictions_names_a_missing_images_folder(tmp_path, repo_root):
    """label_free.md's figure command on a demo without the benchmark's fresh rooms."""
    missing = tmp_path / 'agreement_data' / 'scenes' / 'img_dir' / 'test'
    proc = run_python('tools/compare_predictions.py',
                      'configs/synthetic/dfss_r18-tiny_to_mbv2-tiny_synthetic.py', 'CKPT',
                      '--images', missing, '--out', tmp_path / 'out')
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: --images '{missing}'")
    assert 'Traceback' not in proc.stderr
