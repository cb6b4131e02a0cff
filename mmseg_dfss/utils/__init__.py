from .mmseg_tools import find_mmseg_tool, run_mmseg_tool

__all__ = ['find_mmseg_tool', 'run_mmseg_tool']
