"""Front ends and encoders that turn waveforms into features: spectra, phase, speech activity, pretrained encoders."""
