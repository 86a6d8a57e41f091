"""Score-level fusion: one detector made of several detectors trained for the same protocol.

The members' bona fide scores on the validation split are standardised (mean and standard
deviation over the validation clips) and combined by a class-balanced logistic regression, the
usual way ASVspoof systems are fused. The fused score is the regression's log-odds of real
(higher = real, as for every detector here), and its threshold is the one at the fused
validation EER. Nothing is fitted on test clips.

A fusion is a detector folder of its own (model ``fusion``) beside its members: its
``config.json`` names the members by relative folder and records a fingerprint of each
member's validation scores, so a member retrained after the fit is detected instead of being
combined with stale weights. :func:`dfa_lib.detector.scorer.load_detector` loads it like any other
detector (it loads the members); evaluation reuses the members' score files
(:func:`evaluate_fusion`) instead of scoring every clip again. Because the combination is
linear and the members share one window length, the fused file score (the mean over windows)
is the same either way.

A caveat the reports repeat: members chose their epoch (or their settings) on the same
validation split, so their validation scores are somewhat better than their test scores, and
the fusion weights inherit that bias.
"""

from __future__ import annotations

import fnmatch
import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from dfa_lib.core.provenance import provenance_record, write_json
from dfa_lib.detector.calibrate import calibrate_new_folder
from dfa_lib.detector.folder import export_detector, is_detector_folder, read_detector_config
from dfa_lib.detector.validation import (
    VALIDATION_SCORES,
    ValidationScoresError,
    labels_of,
    validation_fingerprint,
    validation_scores,
)
from dfa_lib.scoring.metrics import equal_error_rate, write_scores_asvspoof2021

FUSION_MODEL = "fusion"
# Preprocessing fields the members must share for one window to serve them all.
SHARED_PREPROCESSING = ("sample_rate", "clip_seconds", "pad_mode")


class FusionError(ValueError):
    """A fusion cannot be fitted, loaded or evaluated; the message says which member and why."""


@contextmanager
def _as_fusion_error() -> Iterator[None]:
    """Report a member's unusable validation scores as a FusionError."""
    try:
        yield
    except ValidationScoresError as error:
        raise FusionError(str(error)) from error


def parse_fusions(spec: str) -> list[list[str]]:
    """Parse ``"a+b,c+*_wpool"`` into ``[["a", "b"], ["c", "*_wpool"]]`` (``""``: none).

    Members are detector folder names or shell-style patterns that must match exactly one.
    """
    fusions = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        members = [m.strip() for m in part.split("+")]
        if len(members) < 2 or not all(members):
            raise FusionError(f"fusion {part!r} needs at least two members joined by '+'")
        if len(set(members)) != len(members):
            raise FusionError(f"fusion {part!r} names a member twice")
        fusions.append(members)
    return fusions


def resolve_members(patterns: Sequence[str], folders: Sequence[Path]) -> list[Path]:
    """Return the one folder each pattern names among ``folders`` (fusions excluded)."""
    candidates = {Path(f).name: Path(f) for f in folders if not is_fusion_folder(f)}
    chosen = []
    for pattern in patterns:
        hits = sorted(n for n in candidates if fnmatch.fnmatchcase(n, pattern))
        if len(hits) != 1:
            found = "none" if not hits else ", ".join(hits)
            raise FusionError(
                f"member {pattern!r} must match exactly one detector, matched {found} "
                f"(detectors: {', '.join(sorted(candidates)) or 'none'})"
            )
        chosen.append(candidates[hits[0]])
    if len(set(chosen)) != len(chosen):
        raise FusionError(f"members {list(patterns)} name the same detector twice")
    return chosen


def fusion_name(members: Sequence[Path]) -> str:
    """The folder name of a fusion: its members' names joined by ``+``."""
    return "+".join(Path(m).name for m in members)


def _config(folder: Path) -> dict[str, Any]:

    return read_detector_config(folder)


def is_fusion_folder(folder: str | os.PathLike) -> bool:
    """Return True for a detector folder whose model is a fusion."""

    if not is_detector_folder(folder):
        return False
    config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    return config.get("model", {}).get("name") == FUSION_MODEL


def _check_compatible(members: Sequence[Path]) -> dict[str, Any]:
    """Check the members can share one window; return the first member's config."""
    configs = [_config(m) for m in members]
    for member, config in zip(members, configs, strict=True):
        if config["model"]["name"] == FUSION_MODEL:
            raise FusionError(f"{member}: is a fusion itself; fuse its members instead")
    first = configs[0].get("preprocessing", {})
    for member, config in zip(members[1:], configs[1:], strict=True):
        prep = config.get("preprocessing", {})
        for key in SHARED_PREPROCESSING:
            if prep.get(key) != first.get(key):
                raise FusionError(
                    f"members must share {key}: {members[0].name} has {first.get(key)!r}, "
                    f"{member.name} has {prep.get(key)!r}"
                )
    protocols = {c.get("dataset", {}).get("protocol") for c in configs}
    if len(protocols) > 1:
        found = sorted(map(str, protocols))
        raise FusionError(f"members were trained for different protocols: {found}")
    return configs[0]


@dataclass(frozen=True)
class FusionParameters:
    """The fitted combination: ``bias + sum_k weight_k * (score_k - mean_k) / std_k``."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    weights: tuple[float, ...]
    bias: float

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Any]) -> FusionParameters:
        """Read the combination from a fusion config's ``model.kwargs``, checking every number.

        Raises :class:`FusionError` for a missing entry, a value that is not a finite number,
        a standard deviation that is not positive, or lists of different lengths.
        """
        try:
            params = cls(
                tuple(map(float, kwargs["mean"])),
                tuple(map(float, kwargs["std"])),
                tuple(map(float, kwargs["weights"])),
                float(kwargs["bias"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise FusionError(
                f"fusion parameters are incomplete or not numbers ({error})"
            ) from error
        if not len(params.mean) == len(params.std) == len(params.weights) >= 2:
            raise FusionError("mean, std and weights must have one entry per member (two or more)")
        for key, values in (
            ("mean", params.mean),
            ("std", params.std),
            ("weights", params.weights),
            ("bias", (params.bias,)),
        ):
            if not all(math.isfinite(v) for v in values):
                raise FusionError(f"fusion {key} must be finite numbers, got {list(values)}")
        if not all(s > 0 for s in params.std):
            # Scores are divided by it: zero would give infinite scores, negative flip a member.
            raise FusionError(
                f"fusion std must be positive (the spread of each member's validation scores), "
                f"got {list(params.std)}"
            )
        return params

    def combine(self, member_scores: np.ndarray) -> np.ndarray:
        """Fuse an ``(n, members)`` array of member bona fide scores into ``n`` fused scores."""
        scores = np.asarray(member_scores, dtype=np.float64)
        if scores.ndim != 2 or scores.shape[1] != len(self.weights):
            raise FusionError(
                f"expected scores of shape (n, {len(self.weights)}), got {scores.shape}"
            )
        z = (scores - np.asarray(self.mean)) / np.asarray(self.std)
        return self.bias + z @ np.asarray(self.weights)


class FusedScorer:
    """The model of a fusion detector: its members' scores of each window, combined.

    ``score(batch)`` takes windows ``(n, samples)`` as :class:`~dfa_lib.detector.scorer.Detector`
    hands them over; each member scores them with its own preprocessing.
    """

    model_type = FUSION_MODEL

    def __init__(self, members: Sequence[Any], parameters: FusionParameters) -> None:
        if len(members) != len(parameters.weights):
            raise FusionError(
                f"{len(members)} members for {len(parameters.weights)} fusion weights"
            )
        self.members = list(members)
        self.parameters = parameters

    def score(self, batch: np.ndarray) -> np.ndarray:
        waves = [np.asarray(w, dtype=np.float32) for w in batch]
        columns = [member.score_waves(waves) for member in self.members]
        return self.parameters.combine(np.stack(columns, axis=1))


def _member_records(folder: Path, config: dict[str, Any]) -> list[dict[str, Any]]:
    records = config["model"].get("kwargs", {}).get("members")
    if not isinstance(records, list) or len(records) < 2:
        raise FusionError(f"{folder}: config.json lists no fusion members")
    return records


def _member_folder(folder: Path, record: dict[str, Any]) -> Path:
    member = (Path(folder) / record["folder"]).resolve()
    if not member.is_dir():
        raise FusionError(
            f"{folder}: member {record['name']!r} is missing (looked for {member}); a fusion "
            "folder must stay beside its members"
        )
    with _as_fusion_error():
        fingerprint = validation_fingerprint(member)
    if fingerprint != record["fingerprint"]:
        raise FusionError(
            f"{folder}: member {record['name']!r} was retrained after the fusion was fitted "
            "(its validation scores changed); fit the fusion again (05_evaluation does)"
        )
    return member


def member_cycle(folder: str | os.PathLike) -> list[Path] | None:
    """Return a chain of fusion folders from ``folder`` back to one already in it, or None.

    Follows the member records of fusion folders only (loading nothing, checking no
    fingerprint), so a fusion that lists itself, or two that list each other, is found before
    loading it would recurse without end. Folders are returned resolved.
    """

    def visit(current: Path, trail: list[Path]) -> list[Path] | None:
        if current in trail:
            return [*trail[trail.index(current) :], current]
        if not is_fusion_folder(current):
            return None
        records = _member_records(current, _config(current))
        for record in records:
            if not isinstance(record, dict) or not isinstance(record.get("folder"), str):
                raise FusionError(f"{current}: a fusion member record needs its folder")
            found = visit((current / record["folder"]).resolve(), [*trail, current])
            if found:
                return found
        return None

    return visit(Path(folder).resolve(), [])


def member_folders(folder: str | os.PathLike) -> list[Path]:
    """A fusion folder's member folders, each checked (present, not retrained since the fit)."""
    folder = Path(folder)
    config = _config(folder)
    return [_member_folder(folder, r) for r in _member_records(folder, config)]


def members_and_parameters(folder: str | os.PathLike) -> tuple[list[str], FusionParameters]:
    """A fusion folder's member names (in weight order) and its combination, loading nothing."""
    folder = Path(folder)
    config = _config(folder)
    if config["model"]["name"] != FUSION_MODEL:
        raise FusionError(f"{folder}: not a fusion (model {config['model']['name']!r})")
    names = [r["name"] for r in _member_records(folder, config)]
    return names, FusionParameters.from_kwargs(config["model"]["kwargs"])


def fit_fusion(
    members: Sequence[str | os.PathLike],
    labels: Mapping[str, str] | pd.Series,
    out_dir: str | os.PathLike | None = None,
    c: float = 1.0,
    reuse: bool = True,
) -> Path:
    """Fit the fusion of ``members`` on their validation scores; write and return its folder.

    ``labels`` maps clip paths (as in the score files) to ``"real"``/``"fake"``. The folder is
    ``<out_dir>/<a>+<b>...`` (``out_dir`` defaults to the members' parent). With ``reuse``, a
    folder fitted on the same member scores with the same ``c`` is returned untouched (with
    its metrics), so re-running costs nothing.
    """

    members = [Path(m) for m in members]
    if len(members) < 2:
        raise FusionError("a fusion needs at least two members")
    if len({m.name for m in members}) != len(members):
        raise FusionError(f"members need distinct folder names, got {[m.name for m in members]}")
    if not c > 0:
        raise FusionError(f"c (inverse regularisation) must be positive, got {c}")
    first_config = _check_compatible(members)
    folder = Path(out_dir or members[0].parent) / fusion_name(members)
    with _as_fusion_error():
        records = [
            {
                "name": m.name,
                "folder": os.path.relpath(m.resolve(), folder.resolve()),
                "fingerprint": validation_fingerprint(m),
            }
            for m in members
        ]
    if reuse and is_fusion_folder(folder):
        kwargs = _config(folder)["model"]["kwargs"]
        if kwargs.get("members") == records and kwargs.get("c") == c:
            return folder

    with _as_fusion_error():
        columns = {m.name: validation_scores(m) for m in members}
    index = columns[members[0].name].index
    for name, scores in columns.items():
        if set(scores.index) != set(index):
            raise FusionError(
                f"members scored different validation clips: {members[0].name} has "
                f"{len(index)}, {name} has {len(scores)}; train them on the same split"
            )
    table = pd.DataFrame({name: s.loc[index] for name, s in columns.items()})
    with _as_fusion_error():
        y = labels_of(table.index, labels)
    mean, std = table.mean().to_numpy(), table.std(ddof=0).to_numpy()
    flat = [name for name, s in zip(table.columns, std, strict=True) if not s > 0]
    if flat:
        raise FusionError(f"members {flat} give every validation clip the same score")
    z = (table.to_numpy() - mean) / std
    regression = LogisticRegression(C=c, class_weight="balanced", max_iter=1000).fit(z, y)
    fused = regression.decision_function(z)
    eer = equal_error_rate(fused[y == 1], fused[y == 0])

    config = {
        "model": {
            "name": FUSION_MODEL,
            "kwargs": {
                "members": records,
                "mean": mean.tolist(),
                "std": std.tolist(),
                "weights": regression.coef_[0].tolist(),
                "bias": float(regression.intercept_[0]),
                "c": c,
            },
        },
        "preprocessing": first_config.get("preprocessing", {}),
        "threshold": float(eer.threshold),
        "val_eer": float(eer.eer),
        "training": {
            "method": "class-balanced logistic regression on standardised validation scores",
            "c": c,
            "members": [m.name for m in members],
            "n_validation": int(len(y)),
        },
        "dataset": first_config.get("dataset", {}),
    }
    export_detector(folder, None, config, overwrite=True)
    write_scores_asvspoof2021(folder / VALIDATION_SCORES, list(table.index), fused)
    calibrate_new_folder(folder, labels)  # close to the identity: the fusion is a regression
    write_json(folder / "provenance.json", provenance_record(fusion_of=[m.name for m in members]))
    return folder


def fuse_scored(folder: str | os.PathLike, protocol: str) -> pd.DataFrame:
    """Fuse the members' scored test rows of ``protocol`` (their ``<protocol>.scored.csv``)."""
    folder = Path(folder)
    config = _config(folder)
    parameters = FusionParameters.from_kwargs(config["model"]["kwargs"])
    records = _member_records(folder, config)
    frames = []
    for record in records:
        path = _member_folder(folder, record) / "scores" / f"{protocol}.scored.csv"
        if not path.is_file():
            raise FusionError(
                f"{folder}: member {record['name']!r} has not been evaluated on {protocol} "
                f"(no {path.name}); evaluate the members first"
            )
        frames.append(pd.read_csv(path))
    paths = frames[0]["path"]
    for record, frame in zip(records[1:], frames[1:], strict=True):
        if set(frame["path"]) != set(paths):
            raise FusionError(
                f"{folder}: members scored different {protocol} clips ({record['name']!r} has "
                f"{len(frame)}, {records[0]['name']!r} {len(paths)})"
            )
    scores = np.stack([f.set_index("path").loc[paths, "score"].to_numpy() for f in frames], axis=1)
    out = frames[0].copy()
    out["score"] = parameters.combine(scores)
    return out


__all__ = [
    "FUSION_MODEL",
    "FusedScorer",
    "FusionError",
    "FusionParameters",
    "fit_fusion",
    "fuse_scored",
    "fusion_name",
    "is_fusion_folder",
    "member_cycle",
    "members_and_parameters",
    "parse_fusions",
    "resolve_members",
]
