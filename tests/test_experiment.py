"""Which models a notebook trains on which device, and on how many clips."""

import pytest

from dfa_lib.models.classical import LOGREG_MODEL_NAMES
from dfa_lib.training.engine import TrainConfig
from dfa_lib.training.plan import models_to_train, training_groups


def test_gpu_models_join_only_off_the_cpu():
    assert models_to_train("lcnn,ifd_logreg", "lcnn_phase", "cpu") == (["lcnn", "ifd_logreg"], [])
    assert models_to_train("lcnn,ifd_logreg", "lcnn_phase", "cuda") == (
        ["lcnn", "ifd_logreg", "lcnn_phase"],
        ["lcnn_phase"],
    )
    assert models_to_train("lcnn", "lcnn_phase", "mps")[1] == ["lcnn_phase"]


def test_names_already_listed_or_empty_are_not_added_twice():
    assert models_to_train("lcnn_phase,lcnn", "lcnn_phase,,lcnn_phase", "cuda") == (
        ["lcnn_phase", "lcnn"],
        [],
    )
    assert models_to_train("", "", "cuda") == ([], [])
    assert models_to_train("ifd_logreg", "", "cuda") == (["ifd_logreg"], [])


def _configs(*models):
    return [TrainConfig(name=m, model=m) for m in models]


def test_logistic_regressions_get_their_own_cap():
    configs = _configs("original_cnn", "ifd_logreg", "lcnn", "lfcc_gmm", "ifd_rps_logreg")
    groups = training_groups(configs, 1000, 0)
    assert [(cap, [c.name for c in group]) for cap, group in groups] == [
        (1000, ["original_cnn", "lcnn", "lfcc_gmm"]),
        (None, ["ifd_logreg", "ifd_rps_logreg"]),
    ]
    # The GMM is classical but no logistic regression: it keeps the CNNs' cap.
    assert "lfcc_gmm" not in LOGREG_MODEL_NAMES
    assert {"lfcc_logreg", "ifd_logreg", "ifd_rps_logreg"} == set(LOGREG_MODEL_NAMES)


def test_one_group_when_the_caps_agree():
    configs = _configs("lcnn", "ifd_logreg")
    assert training_groups(configs, 1000) == [(1000, configs)]  # -1: as max_per_class
    assert training_groups(configs, 0, 0) == [(None, configs)]
    assert training_groups(configs, 500, 500) == [(500, configs)]
    assert training_groups(configs, 0, 200) == [(None, configs[:1]), (200, configs[1:])]
    assert training_groups([], 1000, 0) == []


@pytest.mark.parametrize(
    ("max_per_class", "logreg_max_per_class", "message"),
    [(-1, 0, "max_per_class must be 0"), (100, -2, "logreg_max_per_class must be -1")],
)
def test_bad_caps_are_refused(max_per_class, logreg_max_per_class, message):
    with pytest.raises(ValueError, match=message):
        training_groups(_configs("lcnn"), max_per_class, logreg_max_per_class)


def _rewrite_keeping_size_and_mtime(path, wave) -> None:
    """New samples of the same length, the modification time put back (as `cp -p` leaves it)."""
    import os

    import soundfile as sf

    before = path.stat()
    sf.write(path, wave, 16000, subtype="PCM_16")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_size == before.st_size


def test_decoded_clips_follow_the_file_contents_not_the_file_size(tmp_path):
    import numpy as np
    import pandas as pd
    import soundfile as sf

    from dfa_lib.data.clips import decode_clips
    from dfa_lib.data.protocol_data import prepare_protocol

    rng = np.random.default_rng(0)
    waves = [(0.1 * rng.standard_normal(4000)).astype(np.float32) for _ in range(3)]
    for i, wave in enumerate(waves):
        sf.write(tmp_path / f"{i}.wav", wave, 16000, subtype="PCM_16")
    (tmp_path / "list.csv").write_text(
        "path,label,split\n0.wav,real,testing\n1.wav,fake,testing\n2.wav,fake,testing\n"
    )
    cache = tmp_path / "cache"

    def decoded() -> np.ndarray:
        data = prepare_protocol(
            str(tmp_path / "list.csv"), "in-domain", tmp_path, cache, splits=("testing",),
            progress=False,
        )  # fmt: skip
        return np.asarray(data.stores["testing"][1])

    def plain() -> np.ndarray:  # a frame without content hashes: the cache hashes the files
        frame = pd.DataFrame({"path": ["0.wav", "1.wav"], "label": ["real", "fake"]})
        return np.asarray(decode_clips(frame, tmp_path, cache, progress=False)[1])

    assert np.allclose(decoded(), waves[1], atol=1e-4) and np.allclose(plain(), waves[1], atol=1e-4)
    louder = np.clip(waves[1] * 5, -1, 1)
    _rewrite_keeping_size_and_mtime(tmp_path / "1.wav", louder)
    assert np.allclose(decoded(), louder, atol=1e-4)
    assert np.allclose(plain(), louder, atol=1e-4)
