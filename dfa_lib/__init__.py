"""dfa: audio deepfake detection — corpus, baselines, pretrained encoders and reports."""

__version__ = "0.1.0"

__all__ = ["Detector", "__version__", "export_detector", "load_detector"]


def __getattr__(name: str):
    # Loading a detector needs torch; importing dfa_lib alone should not.
    if name in {"Detector", "export_detector", "load_detector"}:
        from dfa_lib import detector

        return getattr(detector, name)
    raise AttributeError(f"module 'dfa_lib' has no attribute {name!r}")
