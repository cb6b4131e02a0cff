"""The literal config parser: what MMEngine writes as a config's text reads back as the
same values; anything that would run code is refused, named, with its line, and never
runs; the text it writes back runs nothing but literals in ``Config.fromstring``."""
import os.path as osp

import pytest
from mmengine.config import Config

from mmseg_dfss.core.literal_config import (LiteralConfigError, literal_config_text,
                                            parse_literal_config)

CONFIGS = ['configs/synthetic/deeplabv3_r18-tiny_synthetic.py',
           'configs/dfss/deeplabv3_r50_to_mbv2_nyuv2.py',
           'configs/synthetic/ads_r18-tiny_synthetic-pool.py']


@pytest.mark.parametrize('config', CONFIGS)
def test_the_text_mmengine_writes_reads_back_as_the_same_config(repo_root, config):
    cfg = Config.fromfile(osp.join(repo_root, config))
    assert parse_literal_config(cfg.pretty_text) == cfg.to_dict()
    text, dropped = literal_config_text(parse_literal_config(cfg.pretty_text))
    assert dropped == []  # custom_imports: mmseg_dfss is imported
    assert Config.fromstring(text, '.py').to_dict() == cfg.to_dict()


def test_literal_forms():
    text = ("'''doc'''\na = dict(b=[1, -2.5, +3, (4, 'x')], c={'k-1': None, 2: True})\n"
            "d = {1, 2}\ne = 1j\nf = ()\n")
    assert parse_literal_config(text) == dict(
        a=dict(b=[1, -2.5, 3, (4, 'x')], c={'k-1': None, 2: True}), d={1, 2}, e=1j, f=())


@pytest.mark.parametrize('text, construct, line', [
    ("a = 1\nb = __import__('os').mkdir('x')", 'call of __import__', 2),
    ('import os\na = 1', 'import statement', 1),
    ('from os import path', 'import statement', 1),
    ("a = dict(b=open('f'))", 'call of open', 1),
    ('a = dict(b=os.sep)', r'attribute access \(\.sep\)', 1),
    ('a = b', 'name b', 1),
    ('a = inf', 'name inf', 1),
    ('a = 1 + 2', 'BinOp expression', 1),
    ('a = [*b]', r'unpacking \(\*\)', 1),
    ('a = dict(**b)', r'dict unpacking \(\*\*\)', 1),
    ('a = {**b}', r'dict unpacking \(\*\*\)', 1),
    ("a = dict([('k', 1)])", 'dict\\(...\\) with positional arguments', 1),
    ('a = lambda: 1', 'Lambda expression', 1),
    ("a = b'x'", 'constant of type bytes', 1),
    ('a = [x for x in ()]', 'ListComp expression', 1),
    ('a.b = 1', 'assignment to something other than one name', 1),
    ('a = b = 1', 'assignment to something other than one name', 1),
    ('def f():\n    pass', 'FunctionDef statement', 1),
    ("print('x')", 'Expr statement', 1),
    ("_base_ = ['other.py']", r'_base_ \(names other config files to read\)', 1),
    ('a = {[1]: 2}', 'unhashable key or set item', 1),
    ('a = (', r'a syntax error \(.*\)', 1),
])
def test_anything_else_is_refused_and_named(text, construct, line):
    with pytest.raises(LiteralConfigError, match=rf'ckpt: {construct} at line {line} is not '
                       'a literal'):
        parse_literal_config(text, 'ckpt')


def test_refused_text_never_runs(tmp_path):
    marker = tmp_path / 'ran'
    for text in (f'a = 1\nb = __import__("os").mkdir({str(marker)!r})\n',
                 f'import os\nos.mkdir({str(marker)!r})\n',
                 f'a = dict(b=[__import__("os").mkdir({str(marker)!r})])\n'):
        with pytest.raises(LiteralConfigError):
            parse_literal_config(text)
    assert not marker.exists()


def test_written_text_keeps_only_imported_custom_imports():
    cfg = dict(custom_imports=dict(imports=['mmseg_dfss', 'no_such_module_here'],
                                   allow_failed_imports=False), a=[1, (2, 'b')])
    text, dropped = literal_config_text(cfg)
    assert dropped == ['no_such_module_here']
    assert Config.fromstring(text, '.py').to_dict() == dict(
        custom_imports=dict(imports=['mmseg_dfss'], allow_failed_imports=False),
        a=[1, (2, 'b')])


def test_a_value_whose_repr_is_not_a_literal_is_refused():
    with pytest.raises(LiteralConfigError, match='name inf'):
        literal_config_text(dict(a=float('inf')))


def test_text_mmengine_would_substitute_into_is_not_written_back():
    """``Config.fromstring`` replaces ``{{$VAR}}`` and ``{{ fileDirname }}`` in the text
    before running it: a value from the environment could end a string literal."""
    assert parse_literal_config("a = '{{$HOME}}'") == dict(a='{{$HOME}}')
    with pytest.raises(LiteralConfigError, match='a string with {{ }}'):
        literal_config_text(dict(a='{{$HOME}}'))
