"""Every relative link in README.md and docs/*.md reaches a file of the repository and,
with a #fragment, a heading of that file (GitHub's anchor rules)."""
import os.path as osp
import re

from doc_commands import REPO, doc_files

LINK = re.compile(r'\[[^\]]*\]\(([^)\s]+)\)')


def anchor(heading):
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces to -."""
    text = re.sub(r'[^\w\- ]', '', heading.strip().lower())
    return text.replace(' ', '-')


def anchors(path):
    with open(path) as f:
        text = re.sub(r'```.*?```', '', f.read(), flags=re.S)
    return {anchor(m) for m in re.findall(r'^#+\s+(.*)$', text, re.M)}


def test_anchor_rules():
    assert anchor('`tools/dist_train.sh` on a machine without CUDA (CPU / gloo)') == (
        'toolsdist_trainsh-on-a-machine-without-cuda-cpu--gloo')
    assert anchor('Two OpenMMLab lines: the maintained one by default') == (
        'two-openmmlab-lines-the-maintained-one-by-default')


def test_every_relative_link_resolves():
    broken = []
    for doc in (d for d in doc_files() if d.endswith('.md')):
        with open(osp.join(REPO, doc)) as f:
            text = f.read()
        for target in LINK.findall(text):
            if re.match(r'[a-z]+://|mailto:', target):
                continue
            path, _, fragment = target.partition('#')
            full = osp.normpath(osp.join(REPO, osp.dirname(doc), path)) if path else (
                osp.join(REPO, doc))
            if not osp.exists(full):
                broken.append(f'{doc}: {target} (no such file)')
            elif fragment and full.endswith('.md') and fragment not in anchors(full):
                broken.append(f'{doc}: {target} (no such heading)')
    assert broken == []
