"""03_wav2vec2's study: heads on a frozen speech encoder, trained and tested protocol by protocol.

For each training protocol (:func:`train_and_test_heads`): the encoder's features of every
split (cached), the layer and probe tables that choose the ``layer`` and ``probe`` heads on
validation, the heads (:func:`dfa_lib.training.encoder_runs.encoder_heads`, and the AASIST
and LCNN back-ends on the protocols named for each), their augmented twins where asked, and
the test of every head on the protocol and on the protocols it answers (cross-source for
in-domain). The first protocol's augmented copies serve the later ones, each keeping the
copies of its own training clips.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from dfa_lib.data.augment import AugmentConfig
from dfa_lib.data.protocol_data import ProtocolData, prepare_protocol, protocols_for
from dfa_lib.data.protocols import TRAINED_ON
from dfa_lib.evaluation.evaluate import evaluate_head
from dfa_lib.features.ssl_features import FeaturePreprocessing, FeatureSet
from dfa_lib.training.encoder_runs import (
    aasist_head,
    augmented_twins,
    backbone_tag,
    encoder_heads,
    layer_head,
    lcnn_head,
    probe_head,
    protocol_list,
    wants,
)
from dfa_lib.training.ssl_pipeline import (
    AugmentedCopies,
    HeadRun,
    augmented_training_features,
    best_layer,
    best_probe,
    layer_table,
    probe_table,
    split_features,
    summary_row,
    train_heads,
)


@dataclass(frozen=True)
class HeadStudySettings:
    """03_wav2vec2's parameters that shape the heads (its own names and defaults)."""

    clip_seconds: float = 1.5  # encoder input length (centre crop, short clips repeated), s
    head_epochs: int = 60  # maximum epochs of each head
    wasp_protocols: str = ""  # protocols that train the slow wasp head; empty: all
    aasist_protocols: str = ""  # protocols that train the AASIST back-end head; empty: none
    aasist_epochs: int = 20  # maximum epochs of the AASIST back-end head
    lcnn_protocols: str = ""  # protocols that train the LCNN back-end head; empty: none
    lcnn_epochs: int = 6  # maximum epochs of the LCNN back-end head
    augmented_heads: str = "layer,wpool"  # heads that also get an augmented twin (_aug)
    aug_protocols: str = "in-domain,unseen-generator"  # protocols whose heads get twins
    aug_per_class: int = 500  # training clips per class given one augmented copy (0: all)
    max_per_class: int = 0  # cap per class in training and validation (0: all)
    n_boot: int = 1000  # bootstrap replicates of the test EER interval
    seed: int = 0

    def preprocessing(self) -> FeaturePreprocessing:
        """The encoder's input: a centre crop of ``clip_seconds``, short clips repeated."""
        return FeaturePreprocessing(clip_seconds=self.clip_seconds, crop="center", pad_mode="wrap")


@dataclass
class HeadStudy:
    """What :func:`train_and_test_heads` trained and measured, for the report."""

    summary: pd.DataFrame  # one row per head and tested protocol (summary_row's columns)
    runs: dict[str, list[HeadRun]] = field(default_factory=dict)  # training protocol -> heads
    layer_tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # validation EER by layer
    probe_tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # by lowest-k layers, C
    notes: list[str] = field(default_factory=list)  # what was chosen and extracted, in order

    def layer_weights(self) -> dict[str, list[float]]:
        """The softmax layer weights each weighted-sum head learned, by protocol and run."""
        return {
            f"{protocol} · {run.name}": run.head.layer_weights().detach().cpu().tolist()
            for protocol, runs in self.runs.items()
            for run in runs
            if hasattr(run.head, "layer_weights")
        }


def _features(
    encoder, data: ProtocolData, cache: Path, preprocessing: FeaturePreprocessing
) -> dict[str, FeatureSet]:
    with torch.inference_mode():
        return split_features(encoder, data, cache, preprocessing, frames=True)


def train_and_test_heads(
    encoder,
    dataset: str,
    protocols: str,
    data_dir: str | os.PathLike,
    cache_dir: str | os.PathLike,
    runs_dir: str | os.PathLike,
    settings: HeadStudySettings,
) -> HeadStudy:
    """Train 03's heads on each of ``protocols`` (comma-separated) and test them.

    Run folders go to ``<runs_dir>/<protocol>/<tag>_<kind>``; encoder features and the layer
    and probe tables are cached under ``<cache_dir>/features``, augmented audio's codec outputs
    under ``<cache_dir>/codecs``. A head whose data, settings and backbone have not changed is
    read back from its folder. Protocols the dataset lacks are skipped.
    """
    s = settings
    tag = backbone_tag(encoder.choice.resolved)
    preprocessing = s.preprocessing()
    feature_cache = Path(cache_dir) / "features"
    augment = AugmentConfig(codec_cache_dir=str(Path(cache_dir) / "codecs"))
    twins = augmented_twins(tag, s.augmented_heads)
    cap = s.max_per_class or None
    available = protocols_for(dataset)
    study = HeadStudy(summary=pd.DataFrame())
    rows: list[dict] = []
    copies: AugmentedCopies | None = None
    for protocol in [p for p in protocol_list(protocols) if p in available]:
        data = prepare_protocol(
            dataset, protocol, data_dir, cache_dir, max_per_class=cap, seed=s.seed
        )
        feats = _features(encoder, data, feature_cache, preprocessing)
        study.notes += [f"{protocol}/{split}: {fs.stats}" for split, fs in feats.items()]
        layers = layer_table(feats, data, cache_dir=feature_cache / "layer_tables")
        study.layer_tables[protocol] = layers
        layer = best_layer(layers)
        study.notes.append(f"{protocol}: best layer on validation: {layer}")
        probes = probe_table(feats, data, cache_dir=feature_cache / "probe_tables", seed=s.seed)
        study.probe_tables[protocol] = probes
        first_layers, probe_c = best_probe(probes)
        study.notes.append(
            f"{protocol}: linear head on layers 0-{first_layers - 1}, C={probe_c:g} (validation)"
        )
        heads = {
            **encoder_heads(tag, s.head_epochs, s.seed),
            f"{tag}_layer": layer_head(layer, s.head_epochs, s.seed),
            f"{tag}_probe": probe_head(first_layers, probe_c, s.seed),
        }
        if not wants(protocol, s.wasp_protocols, empty_means_all=True):
            heads.pop(f"{tag}_wasp")
        if wants(protocol, s.aasist_protocols, empty_means_all=False):
            heads[f"{tag}_aasist"] = aasist_head(s.aasist_epochs, s.seed)
        if wants(protocol, s.lcnn_protocols, empty_means_all=False):
            heads[f"{tag}_lcnn"] = lcnn_head(s.lcnn_epochs, s.seed)
        out = Path(runs_dir) / protocol
        runs = train_heads(encoder, feats, data, heads, out, preprocessing)
        if twins and wants(protocol, s.aug_protocols, empty_means_all=False):
            if copies is None:  # the first protocol's copies serve the later ones
                with torch.inference_mode():
                    copies = augmented_training_features(
                        encoder,
                        data,
                        feature_cache,
                        preprocessing,
                        augment,
                        max_per_class=s.aug_per_class or None,
                        seed=s.seed,
                    )
            mine = copies.restricted_to(data.frames["training"])
            study.notes.append(f"{protocol}: {len(mine.labels)} augmented training copies")
            aug_heads = {f"{n}_aug": c for n, c in heads.items() if n in twins}
            runs += train_heads(encoder, feats, data, aug_heads, out, preprocessing, augmented=mine)
        study.runs[protocol] = runs
        for run in runs:
            metrics = evaluate_head(run, feats["testing"], data, n_boot=s.n_boot, seed=s.seed)
            rows.append(summary_row(protocol, run, metrics))
        # The protocols tested with heads trained on this one (cross-source: in-domain's).
        for other in available:
            if other == protocol or TRAINED_ON[other] != protocol:
                continue
            test = prepare_protocol(
                dataset,
                other,
                data_dir,
                cache_dir,
                max_per_class=cap,
                seed=s.seed,
                splits=("testing",),
            )
            test_feats = _features(encoder, test, feature_cache, preprocessing)
            for run in runs:
                metrics = evaluate_head(
                    run, test_feats["testing"], test, n_boot=s.n_boot, seed=s.seed
                )
                rows.append(summary_row(other, run, metrics))
    study.summary = pd.DataFrame(rows)
    return study
