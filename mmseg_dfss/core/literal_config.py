"""Reads the config text a checkpoint carries as literals, never as code.

MMEngine stores a run's config in its checkpoints as Python text (``meta['cfg']``,
``meta['config']``) and reads it back with ``Config.fromstring``, which executes it. A
checkpoint is data from a stranger, so this module parses that text with :mod:`ast` and
accepts only what MMEngine's ``Config.pretty_text`` writes: module-level assignments
``name = value`` whose values are ``dict(key=...)`` calls with keyword arguments,
``{...}`` dicts, lists, tuples, sets, strings, numbers, ``True``/``False``/``None`` and a
sign on a number. Anything else (an import, any other call, attribute access, a name, an
operator, ``_base_``) is refused with :class:`LiteralConfigError` naming the construct
and its line. :func:`literal_config_text` writes parsed literals back as text that is
safe to hand to ``Config.fromstring``.
"""
import ast
import keyword
import sys

# MMEngine reads these files/modules when it loads a config text: never from a checkpoint
REFUSED_NAMES = {'_base_': 'names other config files to read'}


class LiteralConfigError(ValueError):
    """Config text holds something other than literal assignments; nothing of it ran."""

    def __init__(self, source, construct, line=None):
        self.source, self.construct, self.line = source, construct, line
        where = f' at line {line}' if line else ''
        super().__init__(f'{source}: {construct}{where} is not a literal; config text from a '
                         'checkpoint is read as literals only (dicts, lists, tuples, strings, '
                         'numbers), never executed')

    def __reduce__(self):
        return type(self), (self.source, self.construct, self.line)


def _construct(node):
    """What a refused node is, in words."""
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return 'import statement'
    if isinstance(node, ast.Call):
        func, parts = node.func, []
        while isinstance(func, ast.Attribute):
            parts.append(func.attr)
            func = func.value
        if isinstance(func, ast.Call):  # __import__('os').mkdir(...): the first call runs first
            return _construct(func)
        name = func.id if isinstance(func, ast.Name) else type(func).__name__
        return f"call of {'.'.join([name] + parts[::-1])}"
    if isinstance(node, ast.Attribute):
        return f'attribute access (.{node.attr})'
    if isinstance(node, ast.Name):
        return f'name {node.id}'
    if isinstance(node, ast.Constant):
        return f'constant of type {type(node.value).__name__}'
    return f'{type(node).__name__} expression'


class _Reader:

    def __init__(self, source):
        self.source = source

    def refuse(self, node, construct=None):
        raise LiteralConfigError(self.source, construct or _construct(node),
                                 getattr(node, 'lineno', None))

    def value(self, node):
        if isinstance(node, ast.Constant):
            if type(node.value) in (str, int, float, complex, bool, type(None)):
                return node.value
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            operand = node.operand
            if isinstance(operand, ast.Constant) and type(operand.value) in (int, float,
                                                                              complex):
                return -operand.value if isinstance(node.op, ast.USub) else operand.value
        elif isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            for elt in node.elts:
                if isinstance(elt, ast.Starred):
                    self.refuse(elt, 'unpacking (*)')
            items = [self.value(elt) for elt in node.elts]
            kind = {ast.List: list, ast.Tuple: tuple, ast.Set: set}[type(node)]
            return self.hashable(node, kind, items) if kind is set else kind(items)
        elif isinstance(node, ast.Dict):
            out = {}
            for key, value in zip(node.keys, node.values):
                if key is None:
                    self.refuse(value, 'dict unpacking (**)')
                out[self.hashable(key, None, self.value(key))] = self.value(value)
            return out
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id == 'dict'):
            if node.args:
                self.refuse(node, 'dict(...) with positional arguments')
            for kw in node.keywords:
                if kw.arg is None:
                    self.refuse(kw.value, 'dict unpacking (**)')
            return {kw.arg: self.value(kw.value) for kw in node.keywords}
        self.refuse(node)

    def hashable(self, node, kind, value):
        try:
            return set(value) if kind is set else (hash(value), value)[1]
        except TypeError:
            self.refuse(node, 'unhashable key or set item')

    def module(self, tree):
        out = {}
        for stmt in tree.body:
            if (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)
                    and isinstance(stmt.value.value, str)):
                continue  # a docstring
            if not isinstance(stmt, ast.Assign):
                self.refuse(stmt, _construct(stmt) if isinstance(
                    stmt, (ast.Import, ast.ImportFrom)) else f'{type(stmt).__name__} statement')
            if len(stmt.targets) != 1 or not isinstance(stmt.targets[0], ast.Name):
                self.refuse(stmt, 'assignment to something other than one name')
            name = stmt.targets[0].id
            if name in REFUSED_NAMES:
                self.refuse(stmt, f'{name} ({REFUSED_NAMES[name]})')
            out[name] = self.value(stmt.value)
        return out


def parse_literal_config(text, source='config text'):
    """The ``{name: value}`` assignments of ``text``, read without executing anything.

    Raises:
        LiteralConfigError: ``text`` holds a construct other than the literal forms
            above (named, with its line), or is not valid Python.
    """
    if not isinstance(text, str):
        raise LiteralConfigError(source, f'a {type(text).__name__} instead of config text')
    try:
        tree = ast.parse(text, filename=source, mode='exec')
        return _Reader(source).module(tree)
    except SyntaxError as e:
        raise LiteralConfigError(source, f'a syntax error ({e.msg})', e.lineno) from None
    except (RecursionError, MemoryError):
        raise LiteralConfigError(source, 'nesting too deep to read') from None


def _plain(value):
    """ConfigDict/tuple/... -> the plain containers whose ``repr`` is a literal."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    for kind in (list, tuple, set):
        if isinstance(value, kind):
            return kind(_plain(v) for v in value)
    return value


def literal_config_text(cfg, source='config'):
    """``name = value`` lines for the top-level keys of ``cfg`` (a dict of literals).

    The text re-parses to ``cfg`` (checked), so ``Config.fromstring`` executing it runs
    nothing but literals. ``custom_imports`` keeps only modules already imported (importing
    them again runs nothing); the others are dropped and returned.

    Returns:
        (text, dropped module names).
    """
    out, dropped = {}, []
    for key, value in cfg.items():
        if not (isinstance(key, str) and key.isidentifier() and not keyword.iskeyword(key)):
            raise LiteralConfigError(source, f'top-level key {key!r}')
        if key == 'custom_imports' and isinstance(value, dict):
            imports = value.get('imports', [])
            imports = [imports] if isinstance(imports, str) else list(imports)
            dropped += [m for m in imports if m not in sys.modules]
            value = dict(value, imports=[m for m in imports if m in sys.modules])
        out[key] = _plain(value)
    text = ''.join(f'{key} = {value!r}\n' for key, value in out.items())
    if '{{' in text:  # MMEngine substitutes {{$ENV}}, {{fileDirname}} ... into the text first
        raise LiteralConfigError(source, 'a string with {{ }} (MMEngine would substitute '
                                 'environment variables or file names into the text)')
    if parse_literal_config(text, source) != out:
        raise LiteralConfigError(source, 'a value whose repr is not a literal (e.g. inf, nan)')
    return text, dropped
