from .bn_stats import BNStatsDistance, select_bn_layers
from .pool_scorer import PoolScorer, ScoreResult, eq11_weights, select_lowest
from .safe_load import (CheckpointRefusedError, mmengine_safe_globals,
                        register_checkpoint_safe_globals, safe_torch_load)
from .score_cache import ScoreCache
from .teacher import (build_frozen_segmentor, checkpoint_state_dict, freeze,
                      load_checkpoint_strict, load_model_config, resolve_config_path)

__all__ = [
    'CheckpointRefusedError', 'mmengine_safe_globals', 'register_checkpoint_safe_globals',
    'safe_torch_load', 'build_frozen_segmentor',
    'checkpoint_state_dict', 'freeze', 'load_checkpoint_strict', 'load_model_config',
    'resolve_config_path', 'BNStatsDistance', 'select_bn_layers', 'PoolScorer', 'ScoreResult',
    'eq11_weights', 'select_lowest', 'ScoreCache'
]
