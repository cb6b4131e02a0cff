"""Import MMSeg's datasets without onedl-mmsegmentation's "Could not import OneDL" notice.

onedl-mmsegmentation tries an optional ``onedl`` package in two ``__init__`` files and,
when it is absent, calls ``print_log(..., level=DEBUG)`` without a logger, which is a
plain ``print``: every tool printed the line twice although nothing is wrong (the OneDL
dataset types are simply not registered). The import is done here once, with stdout
captured; every other line printed meanwhile is written back unchanged.
"""
import contextlib
import importlib
import io
import sys

ONEDL_NOTICE = 'Could not import OneDL'


def import_mmseg_datasets_quietly(module='mmseg.datasets'):
    """Import ``module`` (by default MMSeg's datasets and transforms), dropping only the
    exact ``ONEDL_NOTICE`` lines it prints; a no-op once it is imported."""
    if module in sys.modules:
        return sys.modules[module]
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured):
            return importlib.import_module(module)
    finally:
        kept = [line for line in captured.getvalue().splitlines(keepends=True)
                if line.rstrip('\r\n') != ONEDL_NOTICE]
        sys.stdout.write(''.join(kept))
