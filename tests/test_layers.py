"""Imports inside the package point down only (docs/architecture.md): ``core`` at the
bottom, then ``datasets`` and ``models`` (which never import each other), then
``engine`` and ``utils``; tools and benchmarks sit above it all. A newcomer can then
read a layer without the ones above it, and no import cycle can form across layers."""
import ast
import os
import os.path as osp

PACKAGE = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'mmseg_dfss')
LAYERS = {'core': 0, 'datasets': 1, 'models': 1, 'engine': 2, 'utils': 2, 'apis': 3}


def imported_layers(path, layer):
    """``(line, layer)`` of every import of another layer of the package in ``path``,
    lazy imports inside functions included."""
    with open(path, encoding='utf-8') as f:
        tree = ast.parse(f.read(), path)
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:
                continue  # the same layer
            top = osp.relpath(path, PACKAGE).count(os.sep) + 1  # the level of the package
            if node.level == top:
                target = (node.module or '').split('.')[0]
                names = [target] if target else [a.name.split('.')[0] for a in node.names]
            elif node.level == 0 and (node.module or '').startswith('mmseg_dfss.'):
                names = [node.module.split('.')[1]]
        elif isinstance(node, ast.Import):
            names = [a.name.split('.')[1] for a in node.names
                     if a.name.startswith('mmseg_dfss.')]
        for name in names:
            if name in LAYERS and name != layer:
                yield node.lineno, name


def test_imports_point_down_and_siblings_stay_apart():
    wrong = []
    for layer in LAYERS:
        for root, _, files in os.walk(osp.join(PACKAGE, layer)):
            for name in sorted(files):
                if not name.endswith('.py'):
                    continue
                path = osp.join(root, name)
                for line, target in imported_layers(path, layer):
                    if LAYERS[target] >= LAYERS[layer]:
                        wrong.append(f'{osp.relpath(path, PACKAGE)}:{line} imports {target}')
    assert wrong == [], 'imports that do not point down:\n' + '\n'.join(wrong)
