"""The two classes and their integer codes, shared by every model, metric and report."""

from __future__ import annotations

LABELS: tuple[str, str] = ("real", "fake")
REAL: int = 0
FAKE: int = 1
SPLITS: tuple[str, str, str] = ("training", "validation", "testing")


def label_to_index(label: str | int) -> int:
    """Map ``"real"``/``"fake"`` (or 0/1) to the class index; anything else is an error."""
    if isinstance(label, str):
        key = label.strip().lower()
        if key in {"real", "bonafide", "bona-fide", "bona fide", "human"}:
            return REAL
        if key in {"fake", "spoof", "synthetic"}:
            return FAKE
    elif label in (REAL, FAKE):
        return int(label)
    raise ValueError(f"unknown label {label!r}: expected 'real' or 'fake'")
