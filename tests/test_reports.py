"""Profiles: which parameters each notebook of `make reports` gets, on the CPU and on a GPU."""

from __future__ import annotations

import json
import re

import pytest
import torch

from dfa_lib.reporting.runner import (
    NOTEBOOKS_DIR,
    load_profile,
    notebook_device,
    notebook_parameters,
)

# What run_reports passes to every notebook besides the profile's own parameters.
OVERRIDES = {"dataset": "offline", "data_dir": "d", "runs_dir": "r", "cache_dir": "c"}


def _parameter_names(notebook: str) -> set[str]:
    cells = json.loads((NOTEBOOKS_DIR / f"{notebook}.ipynb").read_text())["cells"]
    [cell] = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    return set(re.findall(r"^(\w+): ", "".join(cell["source"]), flags=re.MULTILINE))


@pytest.mark.parametrize("name", ["default", "smoke"])
def test_every_parameter_a_profile_passes_is_one_the_notebook_declares(name):
    # papermill injects an unknown name with a mere warning, and the notebook never reads it:
    # a misspelt gpu_parameters entry would change nothing on the one machine it is meant for.
    profile = load_profile(name)
    for notebook in profile["notebooks"]:
        declared = _parameter_names(notebook["name"])
        for device_type in ("cpu", "cuda"):
            passed = notebook_parameters(profile, notebook, OVERRIDES, device_type)
            assert set(passed) <= declared, (notebook["name"], set(passed) - declared)


def test_gpu_parameters_apply_off_the_cpu_and_overrides_still_win():
    profile = {"common": {"seed": 0, "max_per_class": 0}}
    notebook = {
        "name": "02_cnn",
        "parameters": {"max_per_class": 1000, "spectral_epochs": 15},
        "gpu_parameters": {"max_per_class": 0, "spectral_epochs": 40},
    }
    cpu = notebook_parameters(profile, notebook, {"seed": 3})
    assert cpu == {"seed": 3, "max_per_class": 1000, "spectral_epochs": 15}
    for device_type in ("cuda", "mps"):
        gpu = notebook_parameters(profile, notebook, {"seed": 3}, device_type)
        assert gpu == {"seed": 3, "max_per_class": 0, "spectral_epochs": 40}
    # The command line's overrides beat the GPU's values too.
    forced = notebook_parameters(profile, notebook, {"spectral_epochs": 2}, "cuda")
    assert forced["spectral_epochs"] == 2


def test_the_default_profile_gives_a_gpu_every_clip_and_more_epochs():
    profile = load_profile("default")
    cnn = next(n for n in profile["notebooks"] if n["name"] == "02_cnn")
    cpu = notebook_parameters(profile, cnn, OVERRIDES, "cpu")
    gpu = notebook_parameters(profile, cnn, OVERRIDES, "cuda")
    assert cpu["max_per_class"] == 1000 and gpu["max_per_class"] == 0
    assert gpu["spectral_epochs"] > cpu["spectral_epochs"] and gpu["patience"] > cpu["patience"]
    # Everything else is the CPU's: same models, same learning rates, same seed.
    assert {k for k in cpu if cpu[k] != gpu[k]} <= set(cnn["gpu_parameters"])
    assert gpu["models"] == cpu["models"] and gpu["learning_rate"] == cpu["learning_rate"]


def test_the_device_comes_from_the_notebooks_device_parameter(monkeypatch):
    notebook = {"name": "02_cnn", "parameters": {}}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert notebook_device({"common": {"device": "auto"}}, notebook, {}) == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert notebook_device({"common": {"device": "auto"}}, notebook, {}) == "cuda"
    # The smoke profile pins the CPU, so a GPU machine runs it as CI does.
    smoke = load_profile("smoke")
    assert all(notebook_device(smoke, nb, OVERRIDES) == "cpu" for nb in smoke["notebooks"])
    assert notebook_device({"common": {}}, notebook, {"device": "cpu"}) == "cpu"


def test_a_profile_asking_for_a_missing_gpu_fails_before_any_work(tmp_path, monkeypatch):
    import dfa_lib.reporting.runner as reports

    profile = {"common": {"device": "cuda"}, "notebooks": [{"name": "02_cnn"}]}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(reports, "load_profile", lambda name: profile)

    def no_build(*args, **kwargs):
        raise AssertionError("the corpus was built before the device was checked")

    monkeypatch.setattr(reports, "build_data", no_build)
    with pytest.raises(reports.ProfileError, match=r"'gpu-only', notebook 02_cnn: .*no CUDA"):
        reports.run_reports("gpu-only", "dfa", tmp_path, tmp_path / "runs", tmp_path / "rep")
    assert not (tmp_path / "rep" / "run_record.json").exists()
