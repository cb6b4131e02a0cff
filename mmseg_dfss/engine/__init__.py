"""MMEngine hooks of the DFSS pipeline, and the CPU-capable AmpOptimWrapper."""
from .ads_selection_hook import ADSSelectionHook
from .amp_optim_wrapper import AmpOptimWrapper
from .student_export_hook import StudentExportHook
from .wdpd_hook import WDPDHook

__all__ = ['ADSSelectionHook', 'AmpOptimWrapper', 'StudentExportHook', 'WDPDHook']
