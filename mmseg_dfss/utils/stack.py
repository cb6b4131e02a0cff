"""Moved to :mod:`mmseg_dfss.core.stack` (``core/zoo.py`` needs it, and imports point
down); these names stay importable from here for code written against the old place."""
from ..core.stack import (DISTRIBUTIONS, HOW_TO_INSTALL, LEGACY, MAINTAINED, MINIMUM,
                          REQUIREMENTS, StackError, check_stack, detect_stack,
                          installed_distributions, lines_present, map_mmseg_scope)

__all__ = ['DISTRIBUTIONS', 'HOW_TO_INSTALL', 'LEGACY', 'MAINTAINED', 'MINIMUM', 'REQUIREMENTS',
           'StackError', 'check_stack', 'detect_stack', 'installed_distributions',
           'lines_present', 'map_mmseg_scope']
