"""Evaluation protocols: named, leak-free splits of a corpus manifest, and quick subsets.

- ``in-domain``: the split the main corpus was built with. The splits are speaker-disjoint (no
  real speaker in two of them) and fake-voice-disjoint, and no transcript and no audio
  (content hash) is in more than one split: the test split holds unseen sentences, spoken by
  unseen people and unseen synthetic voices.
- ``unseen-generator``: the in-domain split without the fakes of the held-out generators in
  training and validation, and with only their fakes in testing: test fakes come from engines
  training never saw (default :data:`DEFAULT_HELD_OUT`).
- ``cross-source``: training and validation are the main corpus's, testing is the
  cross-source set (other languages, other speakers, other voices).
- ``lofo-<family>`` (leave one family out, one per entry of :data:`FAMILIES_ORDER`): training
  and validation are the in-domain ones without the fakes of ``<family>``; testing is the
  whole in-domain test split, real clips and the fakes of every family. Scored per family,
  one rotation gives a row of a train x test matrix: its held-out family's column is the
  held-out result (real test clips against fakes of a family training never saw, on
  speakers and voices it never saw), the other columns are in-domain results of the same
  detector. Needs the manifest's ``family`` column.

Every protocol's rows are checked before use: no transcript, audio, fake voice or real
speaker may sit in two splits (:func:`split_leaks`, :func:`speaker_leaks`).
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from dfa_lib.core.labels import SPLITS

LOFO = "lofo"
# The ``family`` values of fake clips, from the oldest kind of synthesis to the newest (the
# corpus registry dfa_lib.data.corpus.synthesis.FAMILIES lists the same; a test keeps the two
# equal, and the registry is not imported here because it pulls in the whole corpus builder).
FAMILIES_ORDER: tuple[str, ...] = (
    "concatenative",
    "formant",
    "statistical",
    "dsp-vocoder",
    "gan-vocoder",
    "codec-vocoder",
    "neural-tts",
)
PROTOCOLS: tuple[str, ...] = (
    "in-domain",
    "unseen-generator",
    "cross-source",
    *(f"{LOFO}-{family}" for family in FAMILIES_ORDER),
)
DEFAULT_HELD_OUT: tuple[str, ...] = ("flite", "pico", "griffin-lim")


class ProtocolError(ValueError):
    """Raised when a protocol cannot be applied to the given manifests."""


def _require_columns(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ProtocolError(
            f"{what} manifest lacks column(s) {missing}: build it with dfa_lib.data.corpus"
        )


def split_leaks(
    df: pd.DataFrame, columns: Sequence[str] = ("transcript_id", "sha256"), fake_voices: bool = True
) -> dict[str, list[str]]:
    """Return, per group column, the values found in more than one split.

    ``fake_voices`` also checks the ``speaker`` column of the fake rows (a synthetic voice).
    An empty list everywhere means the split is leak-free for those groups.
    """
    out: dict[str, list[str]] = {}
    for col in columns:
        spread = df.groupby(col)["split"].nunique()
        out[col] = sorted(map(str, spread[spread > 1].index))
    if fake_voices:
        fakes = df[df["label"] == "fake"]
        spread = fakes.groupby("speaker")["split"].nunique()
        out["fake_voice"] = sorted(map(str, spread[spread > 1].index))
    return out


def speaker_leaks(df: pd.DataFrame) -> list[str]:
    """Return the speakers of real clips found in more than one split (sorted).

    A manifest without a ``speaker`` column (Fake-or-Real, a folder, a CSV) has none to check
    and gives an empty list; rows with no speaker are ignored.
    """
    if "speaker" not in df.columns:
        return []
    real = df[df["label"] == "real"]
    spread = real.groupby("speaker")["split"].nunique()
    return sorted(map(str, spread[spread > 1].index))


def _check(df: pd.DataFrame, name: str) -> pd.DataFrame:
    leaks = {k: v for k, v in split_leaks(df).items() if v}
    speakers = speaker_leaks(df)
    if speakers:
        leaks["real_speaker"] = speakers
    if leaks:
        first = {k: v[:3] for k, v in leaks.items()}
        raise ProtocolError(
            f"protocol {name!r} would leak across splits: {first}; rebuild the corpus "
            "(`make data`) so that every group keeps to one split"
        )
    for split in SPLITS:
        part = df[df["split"] == split]
        if part.empty or part["label"].nunique() < 2:
            raise ProtocolError(
                f"protocol {name!r}: split {split!r} lacks real or fake clips; "
                "the corpus is too small for it (build with more transcripts)"
            )
    return df.reset_index(drop=True)


def lofo_family(name: str) -> str | None:
    """Return the family a ``lofo-<family>`` protocol holds out (None for other protocols)."""
    prefix = f"{LOFO}-"
    if name.startswith(prefix) and len(name) > len(prefix):
        return name[len(prefix) :]
    return None


def _families_in(fakes: pd.DataFrame) -> list[str]:
    """Return the families of some fake rows: :data:`FAMILIES_ORDER`'s first, then others."""
    present = set(fakes["family"].dropna().astype(str))
    known = [f for f in FAMILIES_ORDER if f in present]
    return known + sorted(present - set(FAMILIES_ORDER))


def lofo_rotations(main: pd.DataFrame | None = None) -> list[str]:
    """Return the ``lofo-<family>`` protocol names.

    Without a manifest, one per :data:`FAMILIES_ORDER` entry; with one, one per family that
    has fakes in its testing split (the others cannot be scored), in that order.
    """
    if main is None:
        return [f"{LOFO}-{family}" for family in FAMILIES_ORDER]
    _require_columns(main, ("label", "split", "family"), "main")
    test_fakes = main[(main["label"] == "fake") & (main["split"] == "testing")]
    return [f"{LOFO}-{family}" for family in _families_in(test_fakes)]


def _leave_one_family_out(main: pd.DataFrame, name: str, family: str) -> pd.DataFrame:
    _require_columns(main, ("family",), "main")
    fakes = main["label"] == "fake"
    in_test = main["split"] == "testing"
    present = _families_in(main[fakes & in_test])
    if family not in present:
        raise ProtocolError(
            f"{name}: the testing split has no fakes of family {family!r} (it has "
            f"{present or 'none'}); pick one of {[f'{LOFO}-{f}' for f in present]} or rebuild "
            "the corpus with that family's generators (`make data`)"
        )
    held = fakes & (main["family"].astype(str) == family)
    rows = main[in_test | ~held]
    if not ((rows["label"] == "fake") & (rows["split"] == "training")).any():
        raise ProtocolError(
            f"{name}: without the fakes of {family!r} the training split has no fakes left; "
            "build the corpus with generators of at least two families"
        )
    return _check(rows.copy(), name)


def apply_protocol(
    main: pd.DataFrame,
    name: str,
    cross: pd.DataFrame | None = None,
    seed: int = 0,
    held_out_generators: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Return the rows a protocol uses, with ``split`` set to training|validation|testing.

    ``main`` is the main corpus manifest (its ``split`` column is the in-domain split, fixed
    when the corpus was built from its seed; ``seed`` is accepted for protocols that sample).
    ``cross`` is the cross-source manifest, needed by ``cross-source``.
    ``held_out_generators`` are the engines ``unseen-generator`` tests on (default
    :data:`DEFAULT_HELD_OUT`). ``lofo-<family>`` names the family it holds out.
    """
    del seed  # no current protocol samples; the splits were drawn at build time
    _require_columns(
        main, ("label", "split", "speaker", "generator", "transcript_id", "sha256"), "main"
    )
    if name == "in-domain":
        return _check(main.copy(), name)
    if name == "unseen-generator":
        held = tuple(held_out_generators or DEFAULT_HELD_OUT)
        unknown = sorted(set(held) - set(main["generator"]))
        if unknown:
            raise ProtocolError(f"held-out generator(s) {unknown} are not in the manifest")
        is_held = main["generator"].isin(held)
        in_test = main["split"] == "testing"
        keep = (main["label"] == "real") | (is_held == in_test)
        return _check(main[keep].copy(), name)
    family = lofo_family(name)
    if family is not None:
        return _leave_one_family_out(main, name, family)
    if name == "cross-source":
        if cross is None:
            raise ProtocolError(
                "cross-source needs the cross-source manifest: pass cross=read_manifest("
                "'<root>/offline-cross/manifest.csv')"
            )
        _require_columns(cross, ("label", "speaker", "transcript_id", "sha256"), "cross")
        train = main[main["split"] != "testing"].copy()
        test = cross.copy()
        test["split"] = "testing"
        shared = sorted(set(train["speaker"]) & set(test["speaker"]))
        if shared:
            raise ProtocolError(f"cross-source: speakers/voices {shared[:3]} are in both sets")
        return _check(pd.concat([train, test], ignore_index=True), name)
    if name == LOFO:
        raise ProtocolError(f"{LOFO!r} needs the family it holds out: one of {lofo_rotations()}")
    raise ProtocolError(f"unknown protocol {name!r}: choose one of {PROTOCOLS}")


def make_subset(
    df: pd.DataFrame,
    max_per_class: int | None = None,
    fraction: float | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Return a seeded sample stratified by split and label.

    ``fraction`` keeps that share of every (split, label) cell; ``max_per_class`` then caps
    each cell. With neither, the whole frame is returned. Rows come sorted by path and keep
    their index.
    """
    if fraction is not None and not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if max_per_class is not None and max_per_class < 1:
        raise ValueError(f"max_per_class must be at least 1, got {max_per_class}")
    keys = [c for c in ("split", "label") if c in df.columns]
    base = df.sort_values("path", kind="stable") if "path" in df.columns else df
    parts = []
    for i, (_, cell) in enumerate(base.groupby(keys, sort=True)):
        n = len(cell)
        if fraction is not None:
            n = max(1, int(round(n * fraction)))
        if max_per_class is not None:
            n = min(n, max_per_class)
        parts.append(cell.sample(n=n, random_state=seed + i) if n < len(cell) else cell)
    out = pd.concat(parts) if parts else base.iloc[:0]
    # The index is kept so callers can map the subset back to their frame.
    return out.sort_values("path", kind="stable") if "path" in out.columns else out


# Which training run answers each evaluation protocol.
TRAINED_ON = {
    "in-domain": "in-domain",
    "unseen-generator": "unseen-generator",
    "cross-source": "in-domain",
    **{rotation: rotation for rotation in lofo_rotations()},
}


def protocol_mismatch(config: dict, dataset: str, protocol: str) -> str | None:
    """Why a detector must not be tested on ``protocol`` of ``dataset`` (None when it may).

    On its own dataset a detector answers only the protocols of :data:`TRAINED_ON` that its
    training protocol serves: another protocol's test split can hold its training clips, or
    the fakes that protocol holds out (a ``lofo-<family>`` detector answers ``lofo-<family>``
    only, and only it answers that rotation). A detector trained on another dataset may be
    tested on any protocol, which is a cross-dataset test.
    """
    trained = config.get("dataset")
    if not isinstance(trained, dict) or not trained.get("protocol"):
        return (
            "the folder does not record the data it was trained on (config.json has no "
            "dataset.protocol), so its test clips may have been its training clips"
        )
    if trained.get("dataset", dataset) != dataset:
        return None
    answer = TRAINED_ON.get(protocol, protocol)
    if trained["protocol"] != answer:
        return (
            f"trained on {dataset}/{trained['protocol']}: the {protocol} test split is for "
            f"detectors trained on {answer} (this detector may have trained on its test clips "
            "or on the fakes that protocol holds out)"
        )
    return None
