"""The parts of DFSS that need no registry of this package: the OpenMMLab line check,
the teacher, BN statistics, pool scoring, selection and the score cache.

The stack check runs first, before any import below reaches mmengine, mmcv or mmseg.
"""
from .stack import check_stack

STACK = check_stack()

from .onedl_notice import import_mmseg_datasets_quietly  # noqa: E402

import_mmseg_datasets_quietly()

from .bn_stats import BNStatsDistance, select_bn_layers  # noqa: E402
from .pool_errors import (ScoreIOError, ScorePipelineError, SetupMismatchError,  # noqa: E402
                          TooManyUnreadableError)
from .pool_scorer import PoolScorer, ScoreResult  # noqa: E402
from .safe_load import (CheckpointRefusedError, mmengine_safe_globals,  # noqa: E402
                        register_checkpoint_safe_globals, safe_torch_load)
from .score_cache import ScoreCache  # noqa: E402
from .selection import eq11_weights, select_lowest  # noqa: E402
from .teacher import (build_frozen_segmentor, checkpoint_state_dict, freeze,  # noqa: E402
                      load_checkpoint_strict, load_model_config, resolve_config_path)

__all__ = [
    'STACK', 'CheckpointRefusedError', 'mmengine_safe_globals',
    'register_checkpoint_safe_globals', 'safe_torch_load', 'build_frozen_segmentor',
    'checkpoint_state_dict', 'freeze', 'load_checkpoint_strict', 'load_model_config',
    'resolve_config_path', 'BNStatsDistance', 'select_bn_layers', 'PoolScorer', 'ScoreResult',
    'eq11_weights', 'select_lowest', 'ScoreCache', 'ScorePipelineError',
    'TooManyUnreadableError', 'ScoreIOError', 'SetupMismatchError'
]
