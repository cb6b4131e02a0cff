"""Every tool's and benchmark's --help is whole: its description ends a sentence, and
tools/train.py lists the plugin's own flag (issue 26 item 8)."""
import glob
import json
import os
import os.path as osp
import subprocess
import sys

import pytest

# runs each script's --help in one interpreter (imports shared), returns {script: text}
DRIVER = r'''
import contextlib, io, json, runpy, sys
out = {}
for script in sys.argv[1:]:
    buf = io.StringIO()
    sys.argv = [script, '--help']
    with contextlib.redirect_stdout(buf):
        try:
            runpy.run_path(script, run_name='__main__')
        except SystemExit:
            pass
    out[script] = buf.getvalue()
sys.stdout.write(json.dumps(out))
'''


@pytest.fixture(scope='module')
def helps(repo_root):
    scripts = sorted(glob.glob(osp.join(repo_root, 'tools', '*.py'))
                     + glob.glob(osp.join(repo_root, 'benchmarks', '*.py')))
    scripts = [osp.relpath(s, repo_root) for s in scripts]
    proc = subprocess.run([sys.executable, '-c', DRIVER, *scripts], cwd=repo_root,
                          capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, PYTHONPATH=repo_root))
    assert proc.returncode == 0, proc.stderr[-3000:]
    # the driver's JSON is the last line (a tool may print before argparse runs)
    return json.loads(proc.stdout[proc.stdout.index('{"'):])


MMSEG_PARSERS = ('tools/train.py', 'tools/test.py')  # MMSeg's own argument parsers


def _description(text):
    """The paragraph after argparse's usage block."""
    paragraphs = [p for p in text.split('\n\n') if p.strip()]
    usage = next(i for i, p in enumerate(paragraphs) if p.startswith('usage:'))
    return ' '.join(paragraphs[usage + 1].split())


def test_every_description_is_a_whole_sentence(helps):
    assert len(helps) >= 20
    cut = {script: _description(text)[-60:] for script, text in helps.items()
           if script not in MMSEG_PARSERS and not _description(text).endswith(('.', '?', ')', ':'))}
    assert cut == {}


def test_train_help_lists_allow_random_teacher(helps):
    text = helps['tools/train.py']
    assert '--resume' in text and '--cfg-options' in text  # MMSeg's parser
    assert '\n  --allow-random-teacher\n' in text
