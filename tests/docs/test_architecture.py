"""docs/architecture.md names every module of the package (issue 23: a newcomer finds
each step by its file name), and names only modules that exist, so the map cannot drift
from the tree as files are added, split or moved."""
import os
import os.path as osp
import re

from doc_commands import REPO

PACKAGE = osp.join(REPO, 'mmseg_dfss')
NOT_MAPPED = {'version.py'}  # the version string, no step of the data flow


def modules():
    """Paths (relative to the package) of its modules, ``__init__.py`` files left out."""
    for root, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith('.py') and name != '__init__.py' and name not in NOT_MAPPED:
                yield osp.relpath(osp.join(root, name), PACKAGE).replace(os.sep, '/')


def named(text, module):
    """Whether ``text`` names ``module``: its path, or its file name in a section that
    names its folder (``## 7. ... `apis/compress/` `` then `` `plan.py` ``)."""
    folder, name = osp.split(module)
    if f'`{module}`' in text:
        return True
    return any(f'`{name}`' in section and f'{folder}/' in section
               for section in text.split('\n## '))


def test_architecture_names_every_module_and_no_other():
    with open(osp.join(REPO, 'docs', 'architecture.md')) as f:
        text = f.read()
    missing = sorted(m for m in modules() if not named(text, m))
    assert missing == [], f'docs/architecture.md does not name: {missing}'
    cited = set(re.findall(r'`((?:core|datasets|models|engine|utils|apis)/[\w/]+\.py)`', text))
    gone = sorted(p for p in cited if not osp.isfile(osp.join(PACKAGE, p)))
    assert gone == [], f'docs/architecture.md names modules that do not exist: {gone}'
