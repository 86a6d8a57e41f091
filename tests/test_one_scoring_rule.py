"""One scoring rule: the threshold training chooses gives the same decisions in ``dfa predict``.

Training scores its validation clips (``scores/validation.txt``) and picks the threshold at
their EER; ``dfa predict`` later scores files with the folder it wrote. Both must apply the
same windows and the same aggregation, so that a validation clip written to disk and scored
by ``dfa predict`` gets the score training recorded for it, and the same verdict.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from dfa_lib.cli import main
from dfa_lib.data.clips import ClipStore
from dfa_lib.detector.folder import read_detector_config
from dfa_lib.scoring.metrics import read_scores_asvspoof2021
from dfa_lib.training.engine import TrainConfig, train

SR = 16000
pytestmark = pytest.mark.slow


def _clips(n_per_class: int, seed: int, seconds: float) -> tuple[pd.DataFrame, ClipStore]:
    """Real = tones of random pitch, fake = white noise; lengths vary around ``seconds``."""
    rng = np.random.default_rng(seed)
    waves, labels = [], []
    for _ in range(n_per_class):
        for label in ("real", "fake"):
            n = int(SR * seconds * rng.uniform(0.6, 2.6))  # shorter and longer than a window
            t = np.arange(n) / SR
            wave = (
                0.3 * np.sin(2 * np.pi * rng.uniform(200, 800) * t)
                if label == "real"
                else 0.3 * rng.standard_normal(n)
            )
            # A little of the other class in each, so that some clips are misjudged.
            wave = wave + 0.15 * rng.standard_normal(n) * (label == "real")
            waves.append(wave.astype(np.float32))
            labels.append(label)
    paths = [f"s{seed}_{i}.wav" for i in range(len(waves))]
    return pd.DataFrame({"path": paths, "label": labels}), ClipStore.from_waves(waves, SR)


@pytest.mark.parametrize(
    "config",
    [
        TrainConfig(
            name="cnn",
            model="original_cnn",
            clip_seconds=0.5,
            model_kwargs={"input_samples": 8000},
            epochs=2,
            batch_size=8,
            device="cpu",
        ),
        TrainConfig(name="logreg", model="lfcc_logreg", clip_seconds=0.5),
    ],
    ids=["network", "classical"],
)
def test_predict_repeats_the_validation_scores_and_decisions(tmp_path, config):
    train_df, train_store = _clips(16, seed=1, seconds=0.5)
    val_df, val_store = _clips(8, seed=2, seconds=0.5)
    [run] = train(config, train_df, val_df, train_store, val_store, tmp_path, progress=False)

    audio = tmp_path / "audio"
    audio.mkdir()
    for i, path in enumerate(val_df["path"]):
        # 32-bit float WAV: the file holds exactly the samples training scored.
        sf.write(audio / path, val_store[i], SR, subtype="FLOAT")
    out = tmp_path / "predict.json"
    status = main(
        [
            "predict",
            str(audio),
            "--model",
            str(run.folder),
            "--format",
            "json",
            "--silence-floor",
            "off",
            "--min-speech",
            "off",
            "--output",
            str(out),
        ]
    )
    assert status == 0
    predicted = pd.DataFrame(json.loads(out.read_text()))
    predicted["path"] = predicted["path"].map(lambda p: p.rsplit("/", 1)[-1])
    predicted = predicted.set_index("path").loc[val_df["path"]]

    recorded = read_scores_asvspoof2021(run.folder / "scores" / "validation.txt")
    recorded = recorded.set_index("utt_id")["score"].loc[val_df["path"]]
    np.testing.assert_allclose(predicted["score"], recorded, rtol=1e-5, atol=1e-5)

    # The folder's threshold is on the bona fide score: fake iff score < threshold.
    tau = float(read_detector_config(run.folder)["threshold"])
    expected = np.where(recorded.to_numpy() < tau, "fake", "real")
    assert (predicted["label"].to_numpy() == expected).all()
    # The threshold sits at the validation EER, so both verdicts occur and some are wrong.
    assert set(expected) == {"real", "fake"}
