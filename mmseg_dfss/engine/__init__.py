"""MMEngine hooks of the DFSS pipeline."""
from .student_export_hook import StudentExportHook
from .wdpd_hook import WDPDHook

__all__ = ['StudentExportHook', 'WDPDHook']
