"""Networks and classifiers that map a waveform or features to a bona fide score."""
