"""Fitting detectors: the training engine and the encoder-head pipeline."""
