"""MMEngine hooks of the DFSS pipeline."""
