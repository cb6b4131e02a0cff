from .safe_load import mmengine_safe_globals, register_checkpoint_safe_globals
from .teacher import (build_frozen_segmentor, checkpoint_state_dict, freeze,
                      load_checkpoint_strict, load_model_config, resolve_config_path)

__all__ = [
    'mmengine_safe_globals', 'register_checkpoint_safe_globals', 'build_frozen_segmentor',
    'checkpoint_state_dict', 'freeze', 'load_checkpoint_strict', 'load_model_config',
    'resolve_config_path'
]
