"""``dfa predict`` on a folder of awkward files: rows, errors, formats and exit status."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from test_detector import make_detector_folder, noise

from dfa_lib.cli import CSV_COLUMNS, expand_inputs, main
from dfa_lib.data.audio import load_audio
from dfa_lib.features.vad import SpeechActivityUnavailable

SR = 16000


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory) -> Path:
    # 4-s windows keep the ten-minute file at 150 windows.
    return make_detector_folder(tmp_path_factory.mktemp("model") / "lcnn", clip_seconds=4.0)


@pytest.fixture(scope="module")
def audio_folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("audio")
    sf.write(root / "good_a.wav", noise(2.0, seed=1), SR, subtype="PCM_16")
    sf.write(root / "good_b.wav", noise(5.5, seed=2), SR, subtype="PCM_16")
    sf.write(root / "silence.wav", np.zeros(SR * 2, dtype=np.float32), SR, subtype="PCM_16")
    t = np.arange(int(44100 * 3.0)) / 44100
    stereo = np.stack([0.3 * np.sin(2 * np.pi * 220 * t), 0.1 * np.sin(2 * np.pi * 330 * t)], 1)
    sf.write(root / "stereo_44k.wav", stereo.astype(np.float32), 44100, subtype="PCM_16")
    sf.write(root / "clip.mp3", noise(3.0, seed=3), SR, format="MP3")
    nested = root / "nested" / "deeper"
    nested.mkdir(parents=True)
    sf.write(nested / "clip.flac", noise(1.5, seed=4), SR, format="FLAC")
    (root / "zero_bytes.wav").write_bytes(b"")
    (root / "corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt " + os.urandom(200))
    (root / "notes.txt").write_text("not audio, and not collected from a folder")
    long_wave = np.tile(noise(10.0, seed=5, amplitude=0.05), 60)  # ten minutes
    sf.write(root / "ten_minutes.wav", long_wave, SR, subtype="PCM_16")
    return root


def _read_jsonl(path: Path) -> dict[str, dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return {Path(r["path"]).name: r for r in rows}


@pytest.mark.slow
def test_predict_mixed_folder(model_folder, audio_folder, tmp_path):
    out = tmp_path / "scores.jsonl"
    argv = ["predict", str(audio_folder), "--model", str(model_folder), "--format", "jsonl"]
    status = main([*argv, "--output", str(out)])
    assert status == 1  # two files could not be read, one is silent
    rows = _read_jsonl(out)
    assert set(rows) == {
        "good_a.wav", "good_b.wav", "silence.wav", "stereo_44k.wav", "clip.mp3", "clip.flac",
        "zero_bytes.wav", "corrupt.wav", "ten_minutes.wav",
    }  # fmt: skip
    assert "empty" in rows["zero_bytes.wav"]["error"]
    assert "not a readable audio file" in rows["corrupt.wav"]["error"]
    assert "no audible signal" in rows["silence.wav"]["error"]
    for name in ("zero_bytes.wav", "corrupt.wav", "silence.wav"):
        assert rows[name]["p_fake"] is None and rows[name]["label"] is None
    scored = {k: v for k, v in rows.items() if v["error"] is None}
    assert len(scored) == 6
    for row in scored.values():
        assert 0.0 <= row["p_fake"] <= 1.0
        assert row["label"] == ("fake" if row["p_fake"] >= row["threshold"] else "real")
        assert row["n_windows"] == len(row["windows"]) >= 1
        assert row["threshold"] == pytest.approx(0.5)  # folder threshold 0.0 on the score
    assert rows["ten_minutes.wav"]["duration"] == pytest.approx(600.0)
    assert rows["ten_minutes.wav"]["n_windows"] == 150
    assert rows["ten_minutes.wav"]["windows"][-1]["start"] == pytest.approx(596.0)
    assert rows["stereo_44k.wav"]["duration"] == pytest.approx(3.0, abs=1e-3)
    assert rows["good_b.wav"]["n_windows"] == 2
    assert rows["clip.mp3"]["duration"] == pytest.approx(3.0, abs=0.1)
    assert rows["clip.flac"]["duration"] == pytest.approx(1.5)


def test_predict_csv_on_stdout_and_exit_zero(model_folder, audio_folder, capsys):
    files = [str(audio_folder / "good_a.wav"), str(audio_folder / "nested/deeper/clip.flac")]
    assert main(["predict", *files, "--model", str(model_folder)]) == 0
    captured = capsys.readouterr()
    rows = list(csv.DictReader(io.StringIO(captured.out)))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [Path(r["path"]).name for r in rows] == ["good_a.wav", "clip.flac"]
    assert all(r["error"] == "" and r["label"] in {"real", "fake"} for r in rows)
    assert float(rows[0]["duration"]) == pytest.approx(2.0)


def test_silence_floor_option(model_folder, audio_folder, capsys):
    path = str(audio_folder / "silence.wav")
    base = ["predict", path, "--model", str(model_folder), "--format", "json"]
    assert main(base) == 1
    (row,) = json.loads(capsys.readouterr().out)
    assert "below the -60 dBFS silence floor" in row["error"]
    assert main([*base, "--silence-floor", "off"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["error"] is None and row["label"] in {"real", "fake"}
    assert row["n_audible_windows"] == row["n_windows"] == 1
    for bad in ("3", "loud"):
        with pytest.raises(SystemExit) as exit_info:
            main([*base, "--silence-floor", bad])
        assert exit_info.value.code == 2
        assert "silence-floor" in capsys.readouterr().err


def test_min_speech_flags_a_tone_and_keeps_its_verdict(
    model_folder, speech_wav, tmp_path, capsys, monkeypatch
):
    pytest.importorskip("silero_vad", reason="silero-vad is not installed (make setup)")
    tone = tmp_path / "tone.wav"
    t = np.arange(3 * SR) / SR
    sine = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    sf.write(tone, sine, SR)
    mixed = tmp_path / "mixed.wav"  # nine seconds of tone, then the words
    words, _ = load_audio(speech_wav, target_sr=SR)
    sf.write(mixed, np.concatenate([sine, sine, sine, words]), SR)
    base = ["predict", str(speech_wav), str(tone), str(mixed), "--model", str(model_folder)]
    assert main(base) == 0  # a flagged file is scored, not failed
    captured = capsys.readouterr()
    rows = {Path(r["path"]).name: r for r in csv.DictReader(io.StringIO(captured.out))}
    assert rows["speech.wav"]["speech_found"] == "True"
    assert float(rows["speech.wav"]["speech_seconds"]) > 0.5
    assert rows["tone.wav"]["speech_found"] == "False" and rows["tone.wav"]["label"]
    assert rows["tone.wav"]["n_windows_in_mean"] == rows["tone.wav"]["n_audible_windows"]
    # The tone's windows are left out of the mixed file's score.
    assert (
        0
        < int(rows["mixed.wav"]["n_windows_in_mean"])
        < int(rows["mixed.wav"]["n_audible_windows"])
    )
    assert f"warning: {tone}: 0.00 s of speech found (less than 0.1 s)" in captured.err
    assert "1 of 3 inputs hold no speech" in captured.err
    assert main([*base, "--min-speech", "off"]) == 0
    captured = capsys.readouterr()
    rows = list(csv.DictReader(io.StringIO(captured.out)))
    assert all(r["speech_found"] == "" and r["speech_seconds"] == "" for r in rows)
    assert all(r["n_windows_in_mean"] == r["n_audible_windows"] for r in rows)
    assert "warning" not in captured.err

    # Without the model the check is a usage error that says how to install or skip it.
    def unavailable():
        raise SpeechActivityUnavailable("the speech-activity check needs the silero-vad package")

    monkeypatch.setattr("dfa_lib.detector.scorer.load_speech_activity", unavailable)
    with pytest.raises(SystemExit) as exit_info:
        main(base)
    assert exit_info.value.code == 2 and "silero-vad" in capsys.readouterr().err
    assert main([*base, "--min-speech", "off"]) == 0


def test_predict_json_threshold_window_and_hop(model_folder, audio_folder, capsys):
    path = str(audio_folder / "good_b.wav")
    base = ["predict", path, "--model", str(model_folder), "--format", "json"]
    assert main([*base, "--threshold", "0"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["label"] == "fake" and row["threshold"] == 0.0
    assert main([*base, "--threshold", "1"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["label"] == "real"
    assert main([*base, "--window", "1", "--hop", "0.5", "--batch-size", "3"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["n_windows"] == 10 and row["window_seconds"] == 1.0 and row["hop_seconds"] == 0.5
    assert [w["start"] for w in row["windows"][:3]] == [0.0, 0.5, 1.0]


def test_globs_missing_paths_and_empty_folders(model_folder, audio_folder, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    argv = [
        "predict",
        str(audio_folder / "good_*.wav"),
        str(audio_folder / "good_a.wav"),  # already matched by the glob: scored once
        str(audio_folder / "nothing_*.ogg"),
        str(tmp_path / "missing.wav"),
        str(tmp_path / "empty"),
        "--model",
        str(model_folder),
    ]
    assert main(argv) == 1
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    by_name = {Path(r["path"]).name: r for r in rows}
    assert len(rows) == 5
    assert by_name["good_a.wav"]["error"] == "" and by_name["good_b.wav"]["error"] == ""
    assert "no file matches" in by_name["nothing_*.ogg"]["error"]
    assert "no such file" in by_name["missing.wav"]["error"]
    assert "no audio files" in by_name["empty"]["error"]


def test_expand_inputs_recurses_and_keeps_explicit_files(audio_folder):
    expanded = dict(expand_inputs([str(audio_folder), str(audio_folder / "notes.txt")]))
    names = {Path(p).name for p in expanded}
    assert "clip.flac" in names  # found two folders down
    assert "notes.txt" in names  # named explicitly, so it is tried (and will fail to decode)
    assert sum(Path(p).name == "notes.txt" for p in expanded) == 1


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--threshold", "1.5"], "probability of fake in [0, 1]"),
        (["--batch-size", "0"], "must be positive"),
        (["--format", "xml"], "invalid choice"),
        (["--window", "-1"], "must be positive"),
        (["--min-speech", "-1"], "at least 0"),
        (["--min-speech", "lots"], "seconds or 'off'"),
    ],
)
def test_usage_errors_exit_2(model_folder, audio_folder, capsys, extra, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", str(audio_folder / "good_a.wav"), "--model", str(model_folder), *extra])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_bad_model_folder_and_missing_arguments_exit_2(audio_folder, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", str(audio_folder / "good_a.wav"), "--model", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "not a detector folder" in capsys.readouterr().err
    for argv in ([], ["predict", "x.wav"], ["frobnicate"]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2


def test_cuda_without_a_gpu_is_a_usage_error(model_folder, audio_folder, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    with pytest.raises(SystemExit) as exit_info:
        main(
            ["predict", str(audio_folder / "good_a.wav"), "--model", str(model_folder)]
            + ["--device", "cuda"]
        )
    assert exit_info.value.code == 2
    assert "no CUDA device" in capsys.readouterr().err


@pytest.mark.slow
def test_python_dash_m_subprocess(model_folder, audio_folder, tmp_path):
    out = tmp_path / "rows.csv"
    cmd = [sys.executable, "-m", "dfa_lib", "predict", str(audio_folder / "good_a.wav")]
    cmd += [str(audio_folder / "corrupt.wav"), "--model", str(model_folder), "--output", str(out)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout == ""  # results went to --output, messages to stderr
    assert "1 of 2 inputs failed" in proc.stderr
    rows = list(csv.DictReader(out.open()))
    assert [r["error"] == "" for r in rows] == [True, False]


def _read_rows(path: Path, fmt: str) -> list[dict]:
    text = path.read_text(encoding="utf-8")
    if fmt == "csv":
        return list(csv.DictReader(io.StringIO(text)))
    if fmt == "jsonl":
        return [json.loads(line) for line in text.splitlines()]
    return json.loads(text)


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "json"])
def test_a_file_name_that_is_not_utf8_is_written_safely(model_folder, audio_folder, tmp_path, fmt):
    weird = os.fsdecode(os.fsencode(tmp_path) + b"/caf\xe9 \xff.wav")  # Latin-1 bytes
    try:
        Path(weird).write_bytes((audio_folder / "good_a.wav").read_bytes())
    except (OSError, UnicodeEncodeError):
        pytest.skip("this file system refuses names that are not UTF-8")
    out = tmp_path / f"rows.{fmt}"
    inputs = [str(audio_folder / "good_a.wav"), weird, str(audio_folder / "good_b.wav")]
    argv = ["predict", *inputs, "--model", str(model_folder), "--format", fmt]
    assert main([*argv, "--output", str(out)]) == 0
    rows = _read_rows(out, fmt)
    assert len(rows) == 3  # the rows after the odd name are there too
    assert rows[1]["path"].endswith("/caf\\xe9 \\xff.wav")
    assert rows[1]["label"] in {"real", "fake"} and rows[2]["label"] in {"real", "fake"}


@pytest.mark.parametrize("link", ["same", "relative", "symlink", "hardlink"])
def test_output_that_names_an_input_is_refused(model_folder, audio_folder, tmp_path, capsys, link):
    clip = tmp_path / "clip.wav"
    clip.write_bytes((audio_folder / "good_a.wav").read_bytes())
    original = clip.read_bytes()
    output = {"same": clip, "relative": tmp_path / "." / "clip.wav"}.get(link)
    if link == "symlink":
        output = tmp_path / "link.csv"
        output.symlink_to(clip)
    elif link == "hardlink":
        output = tmp_path / "hard.csv"
        os.link(clip, output)
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", str(clip), "--model", str(model_folder), "--output", str(output)])
    assert exit_info.value.code == 2
    assert "is one of the inputs" in capsys.readouterr().err
    assert clip.read_bytes() == original  # not truncated


def test_an_interrupted_json_run_leaves_valid_json(
    model_folder, audio_folder, tmp_path, monkeypatch
):
    import dfa_lib.cli as cli

    scored = cli._score_rows

    def interrupted(*args, **kwargs):
        rows = scored(*args, **kwargs)
        yield next(rows)
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_score_rows", interrupted)
    out = tmp_path / "rows.json"
    files = [str(audio_folder / "good_a.wav"), str(audio_folder / "good_b.wav")]
    try:
        status = main(["predict", *files, "--model", str(model_folder), "--format", "json",
                       "--output", str(out)])  # fmt: skip
    except KeyboardInterrupt:
        status = "raised"
    assert status == 130
    (row,) = json.loads(out.read_text())
    assert row["path"] == files[0] and row["label"] in {"real", "fake"}


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_resume_scores_only_the_inputs_not_in_the_output(
    model_folder, audio_folder, tmp_path, monkeypatch, capsys, fmt
):
    from dfa_lib.detector.scorer import Detector

    files = [str(audio_folder / n) for n in ("good_a.wav", "good_b.wav", "stereo_44k.wav")]
    out = tmp_path / f"rows.{fmt}"
    base = ["--model", str(model_folder), "--format", fmt, "--output", str(out)]
    assert main(["predict", *files[:2], *base]) == 0
    with out.open("a", encoding="utf-8") as f:  # a row cut short when the run was killed
        f.write(files[2][:10])
    asked = []
    score_paths = Detector.score_paths

    def recording(self, paths, *args, **kwargs):
        asked.extend(paths)
        return score_paths(self, paths, *args, **kwargs)

    monkeypatch.setattr(Detector, "score_paths", recording)
    assert main(["predict", *files, *base, "--resume"]) == 0
    assert asked == [files[2]]
    rows = _read_rows(out, fmt)
    assert [r["path"] for r in rows] == files
    assert "2 inputs already in" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:  # a JSON list cannot be appended to
        main(["predict", *files, *base[:2], "--format", "json", "--output", str(out), "--resume"])
    assert exit_info.value.code == 2 and "csv or jsonl" in capsys.readouterr().err
