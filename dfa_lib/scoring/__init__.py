"""Scores and what they mean: the window scoring rule, metrics and score calibration."""
