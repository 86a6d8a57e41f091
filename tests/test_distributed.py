"""Data-parallel training: batch shares, and two CPU processes (gloo) training one detector."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_toy_dataset

from dfa_lib.data.clips import ClipStore
from dfa_lib.detector.loading import load_detector
from dfa_lib.models.registry import build_model
from dfa_lib.training.distributed import main as distributed_main
from dfa_lib.training.engine import (
    CropBatches,
    ShardedBatches,
    TrainingError,
    batch_loader,
    launched_processes,
    parameters_sha256,
)


def _batches(n: int, size: int, drop_last: bool) -> torch.utils.data.BatchSampler:
    order = torch.utils.data.RandomSampler(range(n), generator=torch.Generator().manual_seed(3))
    return torch.utils.data.BatchSampler(order, batch_size=size, drop_last=drop_last)


@pytest.mark.parametrize(
    ("n", "size", "drop_last", "processes"),
    [(10, 4, False, 3), (11, 4, True, 2), (9, 4, False, 2), (8, 8, False, 3)],
)
def test_shares_of_each_batch_are_disjoint_and_make_up_the_batch(n, size, drop_last, processes):
    whole = list(_batches(n, size, drop_last))
    shares = [
        list(ShardedBatches(_batches(n, size, drop_last), r, processes)) for r in range(processes)
    ]
    kept = [b for b in whole if len(b) >= processes]  # a batch too small for all is skipped
    for rank, share in enumerate(shares):
        assert (
            len(share)
            == len(kept)
            == len(ShardedBatches(_batches(n, size, drop_last), rank, processes))
        )
    for k, batch in enumerate(kept):
        parts = [share[k] for share in shares]
        assert sorted(i for part in parts for i in part) == sorted(batch)
        assert max(len(p) for p in parts) - min(len(p) for p in parts) <= 1
    with pytest.raises(ValueError, match="rank"):
        ShardedBatches(_batches(n, size, drop_last), processes, processes)


def test_each_process_gets_the_crops_one_process_would_get():
    rng = np.random.default_rng(0)
    store = ClipStore.from_waves(
        [rng.standard_normal(3000).astype(np.float32) for _ in range(12)], 16000
    )
    rows, labels = np.arange(12), np.arange(12) % 2
    data = CropBatches(store, rows, labels, 1000, seed=5, pad_mode="wrap", augment=None)
    data.epoch = 2
    whole = list(batch_loader(data, 4, seed=1))
    parts = [list(batch_loader(data, 4, seed=1, shard=(r, 2))) for r in range(2)]
    for k, (x, y) in enumerate(whole):
        (x0, y0), (x1, y1) = parts[0][k], parts[1][k]
        # Items rank::2 of the batch, cropped exactly as one process crops them.
        torch.testing.assert_close(x[0::2], x0, rtol=0, atol=0)
        torch.testing.assert_close(x[1::2], x1, rtol=0, atol=0)
        assert torch.equal(y[0::2], y0) and torch.equal(y[1::2], y1)


def test_world_size_from_the_launcher(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert launched_processes() == 1
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert launched_processes() == 4
    monkeypatch.setenv("WORLD_SIZE", "four")
    with pytest.raises(TrainingError, match="WORLD_SIZE"):
        launched_processes()


def test_parameter_digest_sees_every_weight():
    torch.manual_seed(0)
    a = build_model("lcnn", width=4, embedding=8)
    b = build_model("lcnn", width=4, embedding=8)
    b.load_state_dict(a.state_dict())
    assert parameters_sha256(a) == parameters_sha256(b)
    with torch.no_grad():
        next(b.parameters()).view(-1)[0] += 1e-6
    assert parameters_sha256(a) != parameters_sha256(b)


def test_bad_options_fail_before_training(tmp_path, capsys):
    assert distributed_main(["--model", "transformer", "--data-dir", str(tmp_path)]) == 2
    assert "unknown model 'transformer'" in capsys.readouterr().err
    assert distributed_main(["--model", "lcnn", "--model-kwargs", "{width: 4}"]) == 2
    assert "--model-kwargs is not valid JSON" in capsys.readouterr().err


def _launch(tmp_path: Path, root: Path, *options: str) -> subprocess.CompletedProcess:
    """Run the entry point in two CPU processes under torchrun (gloo)."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "ACCELERATE_USE_CPU": "1",
    }
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "dfa_lib.training.distributed",
        "--dataset",
        str(root),
        "--data-dir",
        str(root.parent),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--runs-dir",
        str(tmp_path / "runs"),
        "--device",
        "cpu",
        *options,
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return done


@pytest.mark.slow
def test_two_processes_train_one_detector(tmp_path):
    root = write_toy_dataset(
        tmp_path / "data" / "toyset", [("training", 12), ("validation", 8), ("testing", 2)]
    )
    done = _launch(tmp_path, root, "--model", "lcnn,lfcc_gmm", "--epochs", "2", "--batch-size", "8")
    # Only the main process reports, and writes: one run folder per model.
    assert done.stdout.count("val_eer_%") == 1
    runs = tmp_path / "runs" / "in-domain"
    assert sorted(p.name for p in runs.iterdir()) == ["lcnn", "lfcc_gmm"]
    folder = runs / "lcnn"
    record = json.loads((folder / "provenance.json").read_text())
    processes = record["processes"]
    assert processes["count"] == 2
    # Both replicas ended with the same weights, which are the saved ones.
    first, second = processes["parameters_sha256"]
    assert first == second
    detector = load_detector(folder, device="cpu")
    assert parameters_sha256(detector.model) == first
    # 24 training clips in batches of 8: each epoch is 24 crops, half to each process.
    epochs = len((folder / "train_log.csv").read_text().splitlines()) - 1
    assert record["n_train"] == 24 and processes["training_crops"] == [12 * epochs, 12 * epochs]
    assert json.loads((folder / "config.json").read_text())["training"]["batch_size"] == 8
    paths = sorted((root / "testing").rglob("*.wav"))
    results = [r for _, r in detector.score_paths(paths)]
    assert len(results) == 4 and all(np.isfinite(r.score) for r in results)
    # The mixture model was fitted by the main process alone, and scores too.
    gmm = runs / "lfcc_gmm"
    assert "processes" not in json.loads((gmm / "provenance.json").read_text())
    scored = [r for _, r in load_detector(gmm, device="cpu").score_paths(paths)]
    assert all(np.isfinite(r.score) for r in scored)
