"""The top layer: commands composed of the plugin's datasets, models and engine."""
