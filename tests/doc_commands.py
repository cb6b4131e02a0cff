"""The commands that README.md and docs/*.md tell a user to run, as written (and those
of scripts/refresh_figures.sh, which replays the documented figure commands).

A command is a line (continuations joined) of a fenced ``bash`` block, or an inline code
span, that runs ``python tools/*.py``, ``python benchmarks/*.py`` or ``bash tools|scripts/*``
(environment assignments and ``time`` before it, ``&&``/``;``/``|`` after it allowed).
"""
import functools
import glob
import os.path as osp
import re
import shlex

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
RUNNERS = re.compile(r'(?:^|[\s;&|(])((?:python|bash)\s+(?:tools|benchmarks|scripts)/[\w./-]+'
                     r'(?:\.py|\.sh))')
FENCE = re.compile(r'^```(\w*)\s*$')


def doc_files():
    """README.md, docs/*.md, and the scripts that replay documented commands."""
    return (['README.md'] + sorted(osp.relpath(p, REPO)
                                   for p in glob.glob(osp.join(REPO, 'docs', '*.md')))
            + ['scripts/refresh_figures.sh'])


def _candidates(text):
    """(line number, text) of bash-block lines (continuations joined) and inline spans."""
    lang, pending, start = None, '', 0
    for n, line in enumerate(text.splitlines(), 1):
        fence = FENCE.match(line.strip())
        if fence:
            lang = None if lang is not None else fence.group(1)
            continue
        if lang is not None:
            if lang not in ('bash', 'sh', ''):
                continue
            if not pending:
                start = n
            if line.rstrip().endswith('\\'):
                pending += line.rstrip()[:-1] + ' '
                continue
            yield start, pending + line
            pending = ''
        else:
            for span in re.findall(r'`([^`]+)`', line):
                yield n, span


def _split(command):
    """The one tool invocation in a shell line: from its runner to the first ``&&``,
    ``;``, ``|``, ``#`` or ``>``; None if the words cannot be split."""
    try:
        words = shlex.split(command, comments=True)
    except ValueError:
        return None
    for i, w in enumerate(words):
        if w in ('python', 'bash') and i + 1 < len(words) and re.match(
                r'(tools|benchmarks|scripts)/[\w./-]+\.(py|sh)$', words[i + 1]):
            rest = []
            for w2 in words[i + 2:]:
                if w2 in ('&&', ';', '|', '||', '>', '2>&1') or w2.startswith(('>', '|')):
                    break
                rest.append(w2)
            return [w, words[i + 1], *rest]
    return None


def doc_commands():
    """[(doc, line, argv)] of every documented command, argv starting with the runner."""
    found = []
    for doc in doc_files():
        with open(osp.join(REPO, doc)) as f:
            text = f.read()
        if doc.endswith('.sh'):  # the whole file is one bash block
            text = '```bash\n' + text + '\n```\n'
        for n, candidate in _candidates(text):
            if not RUNNERS.search(candidate):
                continue
            argv = _split(candidate)
            if argv is not None:
                found.append((doc, n - doc.endswith('.sh'), argv))  # minus the added fence
    return found


# runs each script's --help in one interpreter (imports shared); prints {script: text}
_HELP_DRIVER = r'''
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
sys.stdout.write('\n' + json.dumps(out))
'''


def script_helps(scripts):
    """{script: its --help text} for repo-relative ``scripts``, in one subprocess."""
    import json
    import os
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, '-c', _HELP_DRIVER, *scripts], cwd=REPO,
                          capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, PYTHONPATH=REPO))
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout.rsplit('\n', 1)[-1])


@functools.lru_cache(maxsize=1)
def all_script_helps():
    """:func:`script_helps` of every script in ``tools/`` and ``benchmarks/``, computed once
    per test session (the doc-command and help-text tests share it)."""
    scripts = sorted(glob.glob(osp.join(REPO, 'tools', '*.py'))
                     + glob.glob(osp.join(REPO, 'tools', 'dataset_converters', '*.py'))
                     + glob.glob(osp.join(REPO, 'benchmarks', '*.py')))
    return script_helps([osp.relpath(s, REPO) for s in scripts])
