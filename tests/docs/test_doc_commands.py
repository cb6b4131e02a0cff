"""Every command in README.md and docs/*.md names a script that exists and only options
that script accepts (its --help), and every config or script path it names exists: a
renamed tool, flag or config fails here (issue 26, "docs that are tested"). Commands that
can run on a CPU in seconds are run as written in tests/docs/test_doc_runs.py."""
import os.path as osp
import re

import pytest
from doc_commands import REPO, all_script_helps, doc_commands

REPO_PATH = re.compile(r'(configs|tools|benchmarks|scripts)/[\w./-]+\.(py|sh)$')
# launchers whose extra arguments go to a Python tool
FORWARDS = {'tools/dist_train.sh': 'tools/train.py', 'tools/slurm_train.sh': 'tools/train.py',
            'tools/dist_test.sh': 'tools/test.py', 'tools/slurm_test.sh': 'tools/test.py'}


@pytest.fixture(scope='module')
def commands():
    found = doc_commands()
    assert len(found) > 100  # the extraction still sees the docs' commands
    return found


@pytest.fixture(scope='module')
def helps():
    return all_script_helps()


def _options(argv):
    """The ``--long`` options a command passes (placeholders' brackets dropped)."""
    opts = []
    for word in argv[2:]:
        word = word.strip('[]')
        if word.startswith('--') and len(word) > 2:
            opts.append(word.split('=', 1)[0])
    return opts


def test_every_documented_script_exists(commands):
    missing = [f'{doc}:{n}: {argv[1]}' for doc, n, argv in commands
               if not osp.isfile(osp.join(REPO, argv[1]))]
    assert missing == []


def test_every_documented_option_is_accepted(commands, helps):
    unknown = []
    for doc, n, argv in commands:
        target = FORWARDS.get(argv[1], argv[1])
        if target not in helps:
            continue  # a shell script with its own arguments (scripts/*.sh)
        accepted = set(re.findall(r'(?<![\w-])(--[\w-]+)', helps[target]))
        unknown += [f'{doc}:{n}: {argv[1]} {opt}' for opt in _options(argv)
                    if opt not in accepted]
    assert unknown == []


def test_every_documented_repository_path_exists(commands):
    """configs/... and tools/... paths the commands read (a user's own files, and what
    --out writes, are not checked)."""
    missing = []
    for doc, n, argv in commands:
        for prev, word in zip(argv[1:], argv[2:]):
            if prev == '--out' or not REPO_PATH.match(word):
                continue
            if not osp.isfile(osp.join(REPO, word)):
                missing.append(f'{doc}:{n}: {word}')
    assert missing == []
