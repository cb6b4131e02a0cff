"""Distiller and distillation loss (paper Sec. 3.4)."""
