"""Evaluation protocols: named, leak-free splits of a corpus manifest, and quick subsets.

- ``in-domain``: the split the main corpus was built with. No transcript, no fake voice and no
  audio (content hash) is in more than one split. The real speakers are one per Asterisk
  language (English and Spanish share one woman), so a speaker-disjoint real split would mean a
  language-disjoint one; the real speakers appear in every split and the protocol measures
  detection of unseen sentences spoken by unseen synthetic voices.
- ``unseen-generator``: the in-domain split without the fakes of the held-out generators in
  training and validation, and with only their fakes in testing: test fakes come from engines
  training never saw (default :data:`DEFAULT_HELD_OUT`).
- ``cross-source``: training and validation are the main corpus's, testing is the
  cross-source set (other languages, other speakers, other voices).
- ``unseen-neural-<family>`` (one per neural family, :data:`NEURAL_ROTATIONS`): testing holds
  every fake of the held-out neural vocoder family, from whichever split the build put it
  in, and the real clips of the same prompts (the clips those fakes copy); training and
  validation are the rest of the in-domain training and validation splits, so they hold the
  classical engines and the other neural families, and no prompt, voice or clip of the test
  set. ``unseen-neural`` alone holds out :data:`DEFAULT_HELD_OUT_FAMILY` (``hifigan``: can a
  detector that has seen classical engines and LPCNet catch the GAN vocoders behind most
  current speech synthesis?). Needs the manifest's ``family`` column.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from dfa_lib.core.labels import SPLITS

UNSEEN_NEURAL = "unseen-neural"
# The neural families of dfa_lib.data.corpus.synthesis.GENERATORS (a test keeps the two equal; the
# registry is not imported here because it pulls in the whole corpus builder).
NEURAL_FAMILIES: tuple[str, ...] = ("fargan", "hifigan", "lpcnet")
DEFAULT_HELD_OUT_FAMILY = "hifigan"
NEURAL_ROTATIONS: tuple[str, ...] = tuple(f"{UNSEEN_NEURAL}-{f}" for f in NEURAL_FAMILIES)
PROTOCOLS: tuple[str, ...] = ("in-domain", "unseen-generator", "cross-source", *NEURAL_ROTATIONS)
DEFAULT_HELD_OUT: tuple[str, ...] = ("flite", "pico", "griffin-lim")
# ``family`` values that are not a neural family.
NOT_NEURAL: tuple[str, ...] = ("human", "classical")


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


def _check(df: pd.DataFrame, name: str) -> pd.DataFrame:
    leaks = {k: v for k, v in split_leaks(df).items() if v}
    if leaks:
        first = {k: v[:3] for k, v in leaks.items()}
        raise ProtocolError(f"protocol {name!r} would leak across splits: {first}")
    for split in SPLITS:
        part = df[df["split"] == split]
        if part.empty or part["label"].nunique() < 2:
            raise ProtocolError(
                f"protocol {name!r}: split {split!r} lacks real or fake clips; "
                "the corpus is too small for it (build with more transcripts)"
            )
    return df.reset_index(drop=True)


def neural_rotations(main: pd.DataFrame | None = None) -> list[str]:
    """Return the ``unseen-neural-<family>`` protocol names, one per neural family.

    With a manifest, only the families it has fakes of; without, :data:`NEURAL_ROTATIONS`.
    """
    if main is None:
        return list(NEURAL_ROTATIONS)
    _require_columns(main, ("label", "family"), "main")
    fams = set(main.loc[main["label"] == "fake", "family"].astype(str)) - set(NOT_NEURAL)
    return [f"{UNSEEN_NEURAL}-{f}" for f in sorted(fams)]


def held_out_family_of(name: str, held_out_family: str | None = None) -> str:
    """Return the family an ``unseen-neural`` protocol name holds out.

    ``unseen-neural-<family>`` names it; plain ``unseen-neural`` takes ``held_out_family``,
    else :data:`DEFAULT_HELD_OUT_FAMILY`.
    """
    if name == UNSEEN_NEURAL:
        family = ""
    elif name.startswith(f"{UNSEEN_NEURAL}-"):
        family = name[len(UNSEEN_NEURAL) + 1 :]
    else:
        raise ProtocolError(f"{name!r} is not an {UNSEEN_NEURAL} protocol")
    if family and held_out_family and family != held_out_family:
        raise ProtocolError(
            f"protocol {name!r} holds out {family!r}, not held_out_family={held_out_family!r}"
        )
    return family or held_out_family or DEFAULT_HELD_OUT_FAMILY


def _unseen_neural(main: pd.DataFrame, name: str, family: str) -> pd.DataFrame:
    _require_columns(main, ("family",), "main")
    fakes = main["label"] == "fake"
    present = sorted(set(main.loc[fakes, "family"].astype(str)) - set(NOT_NEURAL))
    if family not in present:
        raise ProtocolError(
            f"{name}: the manifest has no fakes of neural family {family!r} (it has "
            f"{present or 'none'}); rebuild the corpus with its generators (`make data`)"
        )
    is_held = main["family"] == family
    # Every prompt a held-out vocoder copied goes to testing whole, so no prompt, voice or
    # clip of the test set is seen in training, whatever split the build gave it.
    moved = main["transcript_id"].isin(set(main.loc[is_held, "transcript_id"]))
    test = main[moved & ((main["label"] == "real") | is_held)].copy()
    test["split"] = "testing"
    rest = main[~moved & (main["split"] != "testing")]
    return _check(pd.concat([rest, test], ignore_index=True), name)


def apply_protocol(
    main: pd.DataFrame,
    name: str,
    cross: pd.DataFrame | None = None,
    seed: int = 0,
    held_out_generators: Sequence[str] | None = None,
    held_out_family: str | None = None,
) -> pd.DataFrame:
    """Return the rows a protocol uses, with ``split`` set to training|validation|testing.

    ``main`` is the main corpus manifest (its ``split`` column is the in-domain split, fixed
    when the corpus was built from its seed; ``seed`` is accepted for protocols that sample).
    ``cross`` is the cross-source manifest, needed by ``cross-source``.
    ``held_out_generators`` are the engines ``unseen-generator`` tests on (default
    :data:`DEFAULT_HELD_OUT`); ``held_out_family`` is the neural family plain
    ``unseen-neural`` tests on (default :data:`DEFAULT_HELD_OUT_FAMILY`).
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
    if name == UNSEEN_NEURAL or name.startswith(f"{UNSEEN_NEURAL}-"):
        return _unseen_neural(main, name, held_out_family_of(name, held_out_family))
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
    "unseen-neural": "unseen-neural",
    **{rotation: rotation for rotation in NEURAL_ROTATIONS},
}


def protocol_mismatch(config: dict, dataset: str, protocol: str) -> str | None:
    """Why a detector must not be tested on ``protocol`` of ``dataset`` (None when it may).

    On its own dataset a detector answers only the protocols of :data:`TRAINED_ON` that its
    training protocol serves: another protocol's test split can hold its training clips
    (a neural rotation's test fakes are in-domain training clips, for instance). A detector
    trained on another dataset may be tested on any protocol, which is a cross-dataset test.
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
            f"detectors trained on {answer} (its clips can be this detector's training clips)"
        )
    return None
