"""MMEngine hooks of the DFSS pipeline."""
from .ads_selection_hook import ADSSelectionHook
from .student_export_hook import StudentExportHook
from .wdpd_hook import WDPDHook

__all__ = ['ADSSelectionHook', 'StudentExportHook', 'WDPDHook']
