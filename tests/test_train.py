"""The training engine on separable toy data: learning, seeding, early stopping, run folders."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from dfa_lib.data.clips import ClipStore, decode_clips
from dfa_lib.scoring.windows import score_waves
from dfa_lib.training.engine import (
    TrainConfig,
    TrainingError,
    choose_device,
    fingerprint,
    train,
    training_precision,
)

SR = 16000
pytestmark = pytest.mark.slow


def _toy(n_per_class: int, seed: int, seconds: float = 1.0):
    """Real = tones of random pitch, fake = low-level white noise: trivially separable."""
    rng = np.random.default_rng(seed)
    waves, labels = [], []
    t = np.arange(int(seconds * SR)) / SR
    for _ in range(n_per_class):
        waves.append((0.3 * np.sin(2 * np.pi * rng.uniform(200, 800) * t)).astype(np.float32))
        labels.append("real")
        waves.append((0.3 * rng.standard_normal(t.size)).astype(np.float32))
        labels.append("fake")
    df = pd.DataFrame({"path": [f"clip{seed}_{i}.wav" for i in range(len(waves))], "label": labels})
    return df, ClipStore.from_waves(waves, SR)


@pytest.fixture(scope="module")
def toy():
    return _toy(24, seed=1), _toy(8, seed=2)


def _cfg(**kw) -> TrainConfig:
    base = dict(
        name="cnn",
        model="original_cnn",
        clip_seconds=1.0,
        epochs=3,
        batch_size=8,
        learning_rate=1e-3,
        device="cpu",
        patience=5,
    )
    return TrainConfig(**{**base, **kw})


def test_engine_learns_and_writes_a_complete_run_folder(tmp_path, toy):
    (tr, trs), (va, vas) = toy
    [res] = train(_cfg(), tr, va, trs, vas, tmp_path, dataset={"dataset": "toy"}, progress=False)
    assert res.val_eer < 0.2
    names = {p.name for p in res.folder.iterdir()}
    assert {
        "model.safetensors",
        "config.json",
        "train_log.csv",
        "provenance.json",
        "scores",
    } <= names
    config = json.loads((res.folder / "config.json").read_text())
    assert config["format"] == "dfa-detector" and config["model"]["name"] == "original_cnn"
    assert config["threshold"] == pytest.approx(res.threshold)
    prov = json.loads((res.folder / "provenance.json").read_text())
    assert prov["git"]["commit"] and prov["packages"]["torch"] != "absent"
    assert prov["dataset"] == {"dataset": "toy"} and prov["train_checksum"]
    assert (
        len(res.history) >= 1
        and res.history["train_loss"].iloc[-1] < res.history["train_loss"].iloc[0] + 1e-9
    )


def test_same_seed_same_metrics_and_reuse(tmp_path, toy):
    (tr, trs), (va, vas) = toy
    a = train(_cfg(epochs=2), tr, va, trs, vas, tmp_path / "a", progress=False)[0]
    b = train(_cfg(epochs=2), tr, va, trs, vas, tmp_path / "b", progress=False)[0]
    pd.testing.assert_series_equal(a.history["val_eer"], b.history["val_eer"])
    pd.testing.assert_series_equal(a.history["train_loss"], b.history["train_loss"])
    again = train(_cfg(epochs=2), tr, va, trs, vas, tmp_path / "a", progress=False)[0]
    assert again.reused and again.val_eer == a.val_eer
    changed = train(_cfg(epochs=2, seed=7), tr, va, trs, vas, tmp_path / "a", progress=False)[0]
    assert not changed.reused


def test_cpu_bfloat16_only_where_the_cpu_has_it(tmp_path, toy, monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert training_precision(_cfg(), cuda) == "float16-mixed"
    assert training_precision(_cfg(mixed_precision=False), cuda) == "float32"
    monkeypatch.setattr("dfa_lib.training.engine.native_bfloat16", lambda: False)
    assert training_precision(_cfg(cpu_bfloat16=True), cpu) == "float32"
    # Asked for on a CPU without it: trained exactly as without asking, so folders are shared.
    assert fingerprint(_cfg(cpu_bfloat16=True), "t", "v") == fingerprint(_cfg(), "t", "v")
    (tr, trs), (va, vas) = toy
    plain = train(_cfg(epochs=2), tr, va, trs, vas, tmp_path, progress=False)[0]
    assert json.loads((plain.folder / "provenance.json").read_text())["precision"] == "float32"
    monkeypatch.setattr("dfa_lib.training.engine.native_bfloat16", lambda: True)
    assert training_precision(_cfg(cpu_bfloat16=True), cpu) == "bfloat16"
    assert training_precision(_cfg(), cpu) == "float32"
    assert fingerprint(_cfg(cpu_bfloat16=True), "t", "v") != fingerprint(_cfg(), "t", "v")
    # bfloat16 steps (emulated where the CPU lacks it) still learn the toy task; the folder
    # says what they ran in, and the float32 folder of the same config is not reused for it.
    fast = train(_cfg(epochs=2, cpu_bfloat16=True), tr, va, trs, vas, tmp_path, progress=False)[0]
    assert not fast.reused and fast.val_eer < 0.2
    assert json.loads((fast.folder / "provenance.json").read_text())["precision"] == "bfloat16"
    assert not fast.history["train_loss"].equals(plain.history["train_loss"])
    again = train(_cfg(epochs=2, cpu_bfloat16=True), tr, va, trs, vas, tmp_path, progress=False)
    assert again[0].reused


def test_early_stopping_stops_after_patience(tmp_path, toy):
    (tr, trs), (va, vas) = toy
    # A learning rate of zero never improves on the first epoch's EER.
    [res] = train(
        _cfg(epochs=10, patience=2, learning_rate=0.0, lr_schedule="constant"),
        tr,
        va,
        trs,
        vas,
        tmp_path,
        progress=False,
    )
    assert len(res.history) == 3 and res.best_epoch == 1


def test_best_checkpoint_round_trip(tmp_path, toy):
    from dfa_lib.detector.loading import load_detector

    (tr, trs), (va, vas) = toy
    [res] = train(_cfg(), tr, va, trs, vas, tmp_path, progress=False)
    detector = load_detector(res.folder, device="cpu")
    waves = [vas[i] for i in range(len(vas))]
    scores = detector.score_waves(waves)
    saved = pd.read_csv(res.folder / "scores" / "validation.txt", sep=" ", header=None)[
        1
    ].to_numpy()
    np.testing.assert_allclose(scores, saved, rtol=1e-5, atol=1e-5)


def test_several_configurations_in_one_call(tmp_path, toy):
    (tr, trs), (va, vas) = toy
    results = train(
        [_cfg(name="a", epochs=1), _cfg(name="b", epochs=1, learning_rate=3e-4)],
        tr,
        va,
        trs,
        vas,
        tmp_path,
        progress=False,
    )
    assert [r.folder.name for r in results] == ["a", "b"]
    with pytest.raises(TrainingError, match="unique"):
        train([_cfg(name="a"), _cfg(name="a")], tr, va, trs, vas, tmp_path, progress=False)


def test_classical_model_through_the_same_engine(tmp_path, toy):
    (tr, trs), (va, vas) = toy
    [res] = train(
        TrainConfig(name="gmm", model="lfcc_gmm", clip_seconds=1.0),
        tr,
        va,
        trs,
        vas,
        tmp_path,
        progress=False,
    )
    assert res.val_eer < 0.2 and (res.folder / "config.json").is_file()
    again = train(
        TrainConfig(name="gmm", model="lfcc_gmm", clip_seconds=1.0),
        tr,
        va,
        trs,
        vas,
        tmp_path,
        progress=False,
    )[0]
    assert again.reused and again.val_eer == res.val_eer


def test_classical_validation_scores_are_the_detectors_scores(tmp_path, toy):
    """Validation clips longer than the window are scored as the detector scores files."""
    from dfa_lib.detector.loading import load_detector

    (tr, trs), (va, vas) = toy
    [res] = train(
        TrainConfig(name="logreg", model="lfcc_logreg", clip_seconds=0.4),
        tr,
        va,
        trs,
        vas,
        tmp_path,
        progress=False,
    )
    saved = pd.read_csv(res.folder / "scores" / "validation.txt", sep=" ", header=None)[1]
    scores = load_detector(res.folder).score_waves([vas[i] for i in range(len(vas))])
    np.testing.assert_allclose(scores, saved.to_numpy(), rtol=1e-9, atol=1e-9)


def test_errors(tmp_path, toy):
    (tr, trs), (va, vas) = toy
    only_real = tr[tr["label"] == "real"].reset_index(drop=True)
    store = ClipStore.from_waves([trs[i] for i in tr.index[tr["label"] == "real"]], SR)
    with pytest.raises(TrainingError, match="needs real and fake"):
        train(_cfg(), only_real, va, store, vas, tmp_path, progress=False)
    with pytest.raises(TrainingError, match="exactly 16000 samples"):
        train(_cfg(clip_seconds=2.0), tr, va, trs, vas, tmp_path, progress=False)
    with pytest.raises(TrainingError, match="one decoded clip per row"):
        train(_cfg(), tr.iloc[:3], va, trs, vas, tmp_path, progress=False)
    assert choose_device("cpu").type == "cpu"


def test_decode_clips_caches_and_reports_bad_files(tmp_path):
    root = tmp_path / "corpus"
    root.mkdir()
    sf.write(root / "a.wav", np.full(800, 0.25, np.float32), 8000)
    (root / "bad.wav").write_bytes(b"")
    df = pd.DataFrame({"path": ["a.wav", "bad.wav"], "label": ["real", "fake"]})
    store = decode_clips(df, root, tmp_path / "cache", progress=False)
    assert len(store) == 2 and store[0].size == 1600 and not store.ok(1)
    assert "file is empty" in store.errors[1]
    again = decode_clips(df, root, tmp_path / "cache", progress=False)
    assert isinstance(again.samples, np.memmap)  # served from the on-disk cache
    np.testing.assert_array_equal(again[0], store[0])
    assert again.errors == store.errors


def test_score_waves_mean_of_windows():
    import torch

    class Energy(torch.nn.Module):
        def forward(self, x):
            e = x.abs().mean(dim=1)
            return torch.stack([-e, e], dim=1)  # louder = more fake

    quiet, loud = np.full(100, 0.1, np.float32), np.full(100, 0.5, np.float32)
    scores = score_waves(
        Energy(), [quiet, np.concatenate([quiet, loud])], window=100, progress=False
    )
    np.testing.assert_allclose(scores, [-0.2, -(0.2 + 1.0) / 2], atol=1e-6)


# --- batched random crops -------------------------------------------------------------------


def _ramp_store(lengths: list[int]) -> ClipStore:
    # Each clip is a ramp of distinct values, so a crop shows exactly where it was taken.
    waves, value = [], 1
    for n in lengths:
        waves.append(np.arange(value, value + n, dtype=np.float32) / 32767.0)
        value += n
    return ClipStore.from_waves(waves, SR)


def test_store_crops_match_pad_or_crop_for_the_same_draw():
    from dfa_lib.data.audio import pad_or_crop

    store = _ramp_store([50, 10, 20, 3])
    rows = np.array([0, 1, 2, 3, 0])
    draws = np.array([0.0, 0.5, 0.999, 0.2, 0.61])
    for pad_mode in ("constant", "wrap"):
        batch = store.crops(rows, 20, draws, pad_mode=pad_mode)
        assert batch.shape == (5, 20) and batch.dtype == np.float32
        for k, (row, draw) in enumerate(zip(rows, draws, strict=True)):
            wave = store[int(row)]
            start = int(np.floor(draw * (max(len(wave) - 20, 0) + 1)))
            if len(wave) > 20:
                expected = wave[start : start + 20]
            else:
                expected = pad_or_crop(wave, 20, "start", pad_mode=pad_mode)
            np.testing.assert_array_equal(batch[k], expected)
    # The last start a long clip can have is reached, and never passed.
    last = store.crops(np.array([0]), 20, np.array([np.nextafter(1.0, 0.0)]))
    np.testing.assert_array_equal(last[0], store[0][30:50])


def test_store_crops_refuse_bad_arguments():
    store = ClipStore.from_waves([np.ones(10, np.float32) * 0.1, np.zeros(0, np.float32)], SR)
    with pytest.raises(ValueError, match="no samples"):
        store.crops(np.array([0, 1]), 5, np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match="one draw per row"):
        store.crops(np.array([0]), 5, np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match="pad_mode"):
        store.crops(np.array([0]), 5, np.array([0.1]), pad_mode="reflect")


def test_a_split_is_extended_by_rows_and_their_clips_at_the_end():
    from dfa_lib.data.clips import extend_split

    waves = [np.full(n, 0.25 * (k + 1), np.float32) for k, n in enumerate([4, 6])]
    store = ClipStore.from_waves(waves, SR)
    store.errors[1] = "unreadable"
    frame = pd.DataFrame({"path": ["a.wav", "b.wav"], "label": ["real", "fake"]}, index=[7, 3])
    added = frame.iloc[[0]].assign(path="a.wav#copy", extra="dropped")
    out, merged = extend_split(frame, store, added, [np.full(5, -0.5, np.float32)])
    assert list(out.index) == [0, 1, 2] and list(out.columns) == ["path", "label"]
    assert list(out["path"]) == ["a.wav", "b.wav", "a.wav#copy"] and len(merged) == 3
    np.testing.assert_allclose(merged[2], -0.5, atol=1e-4)
    np.testing.assert_array_equal(merged[0], store[0])
    assert merged.errors == {1: "unreadable"} and len(store) == 2  # the split itself is kept
    with pytest.raises(ValueError, match="one row per clip"):
        extend_split(frame, store, added, [])
    with pytest.raises(ValueError, match="the frame has 1 rows and the store 2 clips"):
        extend_split(frame.iloc[:1], store, added, waves[:1])


def test_uniform_draws_depend_only_on_seed_epoch_and_row():
    from dfa_lib.training.engine import uniform_draws

    rows = np.arange(20_000)
    draws = uniform_draws(3, 1, rows)
    assert draws.min() >= 0.0 and draws.max() < 1.0
    assert abs(draws.mean() - 0.5) < 0.01 and abs(np.median(draws) - 0.5) < 0.01
    np.testing.assert_array_equal(uniform_draws(3, 1, rows[::-7]), draws[::-7])
    assert not np.allclose(uniform_draws(3, 2, rows), draws)
    assert not np.allclose(uniform_draws(4, 1, rows), draws)


def test_crop_batches_give_each_item_the_same_crop_in_any_batch_and_worker(toy):
    from dfa_lib.training.engine import CropBatches, batch_loader

    (_, store), _ = toy
    rows = np.arange(len(store))
    labels = rows % 2
    data = CropBatches(store, rows, labels, 4000, seed=5, pad_mode="wrap", augment=None)
    data.epoch = 1
    x_all, y_all = data[list(range(len(rows)))]
    x_one, y_one = data[[7]]
    np.testing.assert_array_equal(x_one[0].numpy(), x_all[7].numpy())
    assert y_one.tolist() == [labels[7]] and y_all.dtype == torch.int64

    def epoch(workers):
        loader = batch_loader(data, 8, seed=1, num_workers=workers, drop_last=False)
        return [(x.numpy(), y.numpy()) for x, y in loader]

    alone, pooled = epoch(0), epoch(2)
    assert len(alone) == -(-len(rows) // 8)
    for (xa, ya), (xb, yb) in zip(alone, pooled, strict=True):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    seen = np.concatenate([y for _, y in alone])
    assert sorted(seen.tolist()) == sorted(labels.tolist())


def test_cpu_identity_reads_the_first_processor_and_its_flags():
    from dfa_lib.core.provenance import machine, parse_cpuinfo

    text = (
        "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\n"
        "model name\t: AMD EPYC\nstepping\t: 1\ncache size\t: 1024 KB\n"
        "flags\t\t: fpu avx2 avx512_bf16\n\n"
        "processor\t: 1\nvendor_id\t: Other\nmodel\t\t: 99\nflags\t\t: fpu\n"
    )
    info = parse_cpuinfo(text)
    assert info == {
        "vendor_id": "AuthenticAMD",
        "cpu_family": "25",
        "model": "17",
        "model_name": "AMD EPYC",
        "stepping": "1",
        "cache_size": "1024 KB",
        "flags": ["avx2", "avx512_bf16", "fpu"],
    }
    assert parse_cpuinfo("") == {}
    # The machine record carries the identity without the long flag list.
    record = machine()
    assert "flags" not in record["cpu"] and record["torch_cpu_capability"]
