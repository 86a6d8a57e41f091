"""dfa: audio deepfake detection — corpus, baselines, pretrained encoders and reports."""

__version__ = "0.1.0"
