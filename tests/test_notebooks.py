"""The whole `make reports` chain on the smoke profile: data, notebooks, HTML and index."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dfa_lib.reporting.runner import NOTEBOOKS_DIR, load_profile

pytestmark = [pytest.mark.notebooks, pytest.mark.slow]

KERNEL = "dfa"


def _kernel_available() -> bool:
    from jupyter_client.kernelspec import KernelSpecManager

    return KERNEL in KernelSpecManager().find_kernel_specs()


@pytest.fixture(scope="module")
def smoke_reports(tmp_path_factory) -> tuple[int, Path, Path, str]:
    if not _kernel_available():
        pytest.skip(f"Jupyter kernel {KERNEL!r} is not registered: run `make setup`")
    if shutil.which("espeak-ng") is None:
        pytest.skip("the offline corpus needs espeak-ng and friends: run `make setup`")
    tmp = tmp_path_factory.mktemp("reports")
    cmd = [
        sys.executable,
        "-m",
        "dfa_lib.reporting.runner",
        "--profile",
        "smoke",
        "--kernel",
        KERNEL,
        "--data-dir",
        str(tmp / "data"),
        "--runs-dir",
        str(tmp / "runs"),
        "--reports-dir",
        str(tmp / "reports"),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    return proc.returncode, tmp / "reports", tmp / "runs", proc.stderr


def test_smoke_reports_succeed_and_render(smoke_reports):
    code, reports, _, log = smoke_reports
    assert code == 0, log[-3000:]
    for nb in load_profile("smoke")["notebooks"]:
        html = reports / f"{nb['name']}.html"
        assert html.is_file(), f"{html} missing"
        text = html.read_text()
        assert "data:image/png;base64" in text or nb["name"] == "01_eda", (
            f"{nb['name']} has no figure"
        )
        assert "Traceback (most recent call last)" not in text
    index = (reports / "index.html").read_text()
    assert "Equal error rate" in index and "FAILED" not in index
    record = json.loads((reports / "run_record.json").read_text())
    assert record["git"]["commit"] and record["data_checksums"]["offline-main"]


def test_smoke_metrics_are_sane(smoke_reports):
    code, _, runs, log = smoke_reports
    assert code == 0, log[-3000:]
    metrics = list(runs.rglob("metrics.json"))
    assert metrics, "no run folder got metrics"
    for path in metrics:
        for protocol, m in json.loads(path.read_text()).items():
            assert 0.0 <= m["eer"] <= 1.0, (path, protocol)
            assert m["eer_ci_low"] <= m["eer"] <= m["eer_ci_high"] + 1e-9
            assert 0.0 <= m["auc"] <= 1.0
    # Every detector trained in-domain is also tested cross-source.
    in_domain = [p for p in metrics if "/in-domain/" in str(p)]
    assert all("cross-source" in json.loads(p.read_text()) for p in in_domain)
    # The profile's fusion of the phase statistics and the encoder head, wherever both trained
    # (02 trains ifd_logreg on the unseen-neural rotations as an extra protocol).
    fused = {p.parent.parent.name for p in metrics if p.parent.name.startswith("ifd_logreg+")}
    assert {"in-domain", "unseen-generator", "unseen-neural-fargan"} <= fused
    # The harmonic phase detector trains on the main protocols only, and so does its fusion.
    rps = {p.parent.parent.name for p in metrics if p.parent.name.startswith("ifd_rps_logreg+")}
    assert rps == {"in-domain", "unseen-generator"}
    # 03's linear probe head trains on every protocol of the profile, its layers chosen there.
    probes = [p for p in metrics if p.parent.name.endswith("_probe") and "+" not in p.parent.name]
    assert len({p.parent.parent.name for p in probes}) == 5
    for path in probes:
        head = json.loads((path.parent / "head.json").read_text())["config"]
        assert head["head"] == "linear" and head["first_layers"] >= 1
    fused_probe = {
        p.parent.parent.name
        for p in metrics
        if p.parent.name.startswith("ifd_rps_logreg+") and p.parent.name.endswith("_probe")
    }
    assert fused_probe == {"in-domain", "unseen-generator"}
    # The three-way fusion with the LCNN, where all three trained.
    three = {p.parent.parent.name for p in metrics if p.parent.name.endswith("_probe+lcnn")}
    assert three == {"in-domain", "unseen-generator"}
    # The phase LCNN (02's own default list; off the CPU the profile adds it through
    # gpu_models) and the fusions of each phase detector with it and the probe head.
    phase = {p.parent.parent.name for p in metrics if p.parent.name == "lcnn_phase"}
    assert phase == {"in-domain", "unseen-generator"}
    for first in ("ifd_logreg+", "ifd_rps_logreg+"):
        with_phase = {
            p.parent.parent.name
            for p in metrics
            if p.parent.name.startswith(first) and p.parent.name.endswith("_probe+lcnn_phase")
        }
        assert with_phase == {"in-domain", "unseen-generator"}, first


def test_notebooks_have_one_parameters_cell_and_no_outputs():
    for path in sorted(NOTEBOOKS_DIR.glob("*.ipynb")):
        nb = json.loads(path.read_text())
        tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(tagged) == 1, path.name
        assert all(not c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code")
        for line in "".join(tagged[0]["source"]).splitlines():
            if line.strip():
                assert re.match(r"^\w+: \w+ = [^#]+  # [^=]+$", line), f"{path.name}: {line!r}"


def test_papermill_lists_the_parameters():
    out = subprocess.run(
        [sys.executable, "-m", "papermill", "--help-notebook", str(NOTEBOOKS_DIR / "02_cnn.ipynb")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "cnn_epochs" in out and "maximum epochs of the original CNN" in out


def test_evaluation_and_sweep_report_a_broken_detector_and_fail_after_the_rest(
    smoke_reports, tmp_path
):
    import papermill
    from papermill.exceptions import PapermillExecutionError

    code, reports, runs, log = smoke_reports
    assert code == 0, log[-3000:]
    copy = Path(shutil.copytree(runs, tmp_path / "runs"))
    offline = next(p.parent for p in copy.rglob("in-domain") if p.is_dir())  # <profile>/offline
    (offline / "in-domain" / "original_cnn" / "model.safetensors").write_bytes(b"broken")
    data_dir = runs.parent / "data"
    output = tmp_path / "05.ipynb"
    common = {"data_dir": str(data_dir), "cache_dir": str(data_dir / "cache"), "device": "cpu"}

    def execute(name: str, output: Path, **parameters) -> None:
        papermill.execute_notebook(
            str(NOTEBOOKS_DIR / f"{name}.ipynb"),
            str(output),
            parameters={**common, "runs_dir": str(offline), **parameters},
            kernel_name=KERNEL,
            cwd=str(NOTEBOOKS_DIR),
            progress_bar=False,
        )

    with pytest.raises(PapermillExecutionError, match="could not be evaluated: original_cnn"):
        execute("05_evaluation", output, n_boot=20, n_worst=1)
    text = output.read_text()
    # The broken folder is named with its error, once per protocol it answers ...
    assert "Detectors that could not be evaluated" in text
    assert text.count("original_cnn/model.safetensors") >= 2
    # ... and every other detector still got its tables, the broken one left out of them.
    executed = json.loads(text)
    headline = next(
        "".join(o.get("data", {}).get("text/plain", ""))
        for c in executed["cells"]
        if c["cell_type"] == "code" and "headline_table(results)" in "".join(c["source"])
        for o in c["outputs"]
        if o.get("output_type") == "display_data"
    )
    assert "lcnn" in headline and "whisper" in headline
    # Its in-domain metrics.json is older than its broken weights: the cross-source and in-domain
    # columns (the first two) are empty; its twin trained on unseen-generator still shows (the
    # wide table is printed in blocks of columns, one line per model in each).
    rows = [line.split()[1:] for line in headline.splitlines() if line.startswith("original_cnn")]
    assert rows[0][:2] == ["NaN", "NaN"], headline
    assert any(value != "NaN" for row in rows for value in row), headline

    # 06 sweeps the detectors it can load and then fails, naming the one it could not.
    output = tmp_path / "06.ipynb"
    with pytest.raises(PapermillExecutionError, match="could not be loaded for the sweep"):
        execute(
            "06_robustness",
            output,
            train_augmented=False,
            sweep_per_class=4,
            sweep_detectors="lcnn,original_cnn",
        )
    swept = json.loads(output.read_text())
    printed = "".join(
        "".join(o.get("text", ""))
        for c in swept["cells"]
        if c["cell_type"] == "code"
        for o in c["outputs"]
        if o.get("output_type") == "stream"
    )
    assert "detectors: ['lcnn']" in printed
