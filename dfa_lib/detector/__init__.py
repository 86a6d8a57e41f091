"""A trained detector as a folder: its format, loading, scoring, calibration, fusion and model card."""
