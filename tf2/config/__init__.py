"""Configuration: settings, presets, the experiment and its record, validation."""
