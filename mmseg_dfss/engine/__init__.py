"""MMEngine hooks of the DFSS pipeline, its runner, the CPU-capable AmpOptimWrapper and
CPU DDP."""
from .ads_selection_hook import ADSSelectionHook
from .amp_optim_wrapper import AmpOptimWrapper
from .cpu_ddp import CPUDistributedDataParallel
from .dfss_runner import DFSSRunner
from .resumed_validation_hook import ResumedValidationHook
from .student_export_hook import StudentExportHook
from .wdpd_hook import WDPDHook

__all__ = ['ADSSelectionHook', 'AmpOptimWrapper', 'CPUDistributedDataParallel', 'DFSSRunner',
           'ResumedValidationHook',
           'StudentExportHook', 'WDPDHook']
