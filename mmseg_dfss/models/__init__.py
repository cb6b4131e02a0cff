"""Distiller and distillation loss (paper Sec. 3.4), and the student export."""
from .data_free_distiller import DataFreeDistiller
from .onnx_export import OnnxExportError, OnnxParityError, export_and_check
from .student_export import export_student, export_student_from_checkpoint, student_config
from .wdpd_loss import WDPDLoss

__all__ = [
    'DataFreeDistiller', 'WDPDLoss', 'export_student', 'export_student_from_checkpoint',
    'student_config', 'OnnxExportError', 'OnnxParityError', 'export_and_check'
]
