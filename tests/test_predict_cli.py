"""live_predictions.py as a new user meets it (issue 29, the prediction side): --version, the
recommended model by default and from any folder, a missing --model named as given, long files
pointed to --timeline, an uncertain answer that names its emotion, error lines that name their
file once, no empty --output-dir, and one rounding rule for every JSON output.

Every test runs from a temporary current folder (``monkeypatch.chdir`` for ``main(argv)``, the
``cwd`` of a child process), on real RAVDESS clips, with the tiny model of tests/tiny_model.py;
the tests of the shipped models skip while models/ has none.
"""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import live_predictions
import ser
import ser.audio
import ser.paths
import ser.predict
from ser import output
from ser import timeline as tl
from tiny_model import build_tiny_model

SCRIPT = ser.paths.ROOT / "live_predictions.py"
SR = ser.audio.SAMPLE_RATE
CLIP = "ravdess_speech/Actor_05/03-01-05-02-01-01-05.flac"        # 3.4 s, angry
needs_shipped = pytest.mark.skipif(not ser.paths.DEFAULT_MODEL.exists(),
                                   reason=f"{ser.paths.DEFAULT_MODEL} not trained yet")


@pytest.fixture(scope="session")
def model(tmp_path_factory, shared_data) -> Path:
    return build_tiny_model(tmp_path_factory.getbasetemp() / "tiny_model", shared_data)


@pytest.fixture
def elsewhere(tmp_path, monkeypatch) -> Path:
    """A fresh current folder outside the repository."""
    d = tmp_path / "cwd"
    d.mkdir()
    monkeypatch.chdir(d)
    return d


def _run(args, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _main(argv, capsys) -> tuple[int, str, str]:
    rc = live_predictions.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _concatenated(dest: Path, clips: list[Path], seconds: float) -> Path:
    """A WAV of at least ``seconds``: the real clips one after another, repeated."""
    with sf.SoundFile(str(dest), "w", samplerate=SR, channels=1, subtype="PCM_16") as f:
        n = 0
        while n < seconds * SR:
            for c in clips:
                y = ser.audio.load_audio(c)
                f.write(y)
                n += y.size
    return dest


# --------------------------------------------------------------------------------------------
# 1. --version, the default model, --model from any folder
# --------------------------------------------------------------------------------------------
def test_version(elsewhere):
    r = _run(["--version"], elsewhere)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"live_predictions.py {ser.__version__}"


def test_help_names_the_recommended_default_and_the_cnn(capsys):
    with pytest.raises(SystemExit):
        live_predictions.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    rel = ser.paths.DEFAULT_MODEL.relative_to(ser.paths.ROOT)
    assert ser.paths.DEFAULT_MODEL == ser.paths.RECOMMENDED_MODEL
    assert f"default: the recommended model, {rel}" in text
    cnn = ser.paths.CNN_MODEL.relative_to(ser.paths.ROOT)
    assert f"the original's reproduction, the improved CNN on 40 MFCC means, is --model {cnn}" \
        in text
    assert "3-7 GB" not in text and "peak for 10 minutes" in text


@needs_shipped
def test_default_model_is_the_recommended_one_from_any_folder(shared_data, elsewhere):
    clip = shared_data / CLIP
    r = _run(["--json", clip], elsewhere)
    assert r.returncode == 0, r.stderr
    (row,) = _json_lines(r.stdout)
    want = ser.predict.Predictor(ser.paths.RECOMMENDED_MODEL).predict_file(clip)
    assert row["emotion"] == want.emotion
    assert row["probabilities"] == pytest.approx(want.probabilities, abs=1e-5)
    cnn = ser.predict.Predictor(ser.paths.CNN_MODEL).predict_file(clip)
    assert row["probabilities"] != pytest.approx(cnn.probabilities, abs=1e-3)


def test_relative_model_is_taken_from_the_current_folder(model, shared_data, elsewhere,
                                                         capsys):
    (elsewhere / "mine").mkdir()
    for f in model.parent.glob(model.stem + ".*"):
        (elsewhere / "mine" / f.name).write_bytes(f.read_bytes())
    rc, out, err = _main(["--json", "--model", f"mine/{model.name}", shared_data / CLIP],
                         capsys)
    assert rc == 0, err
    assert _json_lines(out)[0]["emotion"] in ser.predict.EMOTIONS


def test_missing_model_is_named_as_given(shared_data, elsewhere):
    rel = ser.paths.DEFAULT_MODEL.relative_to(ser.paths.ROOT)    # there, but not from here
    r = _run(["--model", rel, shared_data / CLIP], elsewhere)
    assert r.returncode == 2 and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"error: {rel}: model file not found (relative to the current "
                               f"folder, {elsewhere}")
    assert "pass --model" not in lines[0]
    if ser.paths.DEFAULT_MODEL.exists():
        assert f"the repository has {ser.paths.DEFAULT_MODEL})" in lines[0]
    r = _run(["--model", elsewhere / "none.h5", shared_data / CLIP], elsewhere)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [f"error: {elsewhere / 'none.h5'}: model file "
                                             f"not found"]


# --------------------------------------------------------------------------------------------
# 2. long files: --timeline, and the model's own limit
# --------------------------------------------------------------------------------------------
def test_too_long_file_suggests_timeline(model, shared_data, elsewhere, capsys):
    clips = sorted((shared_data / "ravdess_speech" / "Actor_05").glob("*.flac"))[:12]
    long = _concatenated(elsewhere / "long.wav", clips, 40)
    rc, out, err = _main(["--model", model, "--max-seconds", "30", long.name], capsys)
    assert rc == 1 and out == ""
    (line,) = err.strip().splitlines()
    assert line.startswith("error: long.wav: ") and "more than the 30 s limit" in line
    assert "use --timeline" in line and "--max-seconds S" in line
    # --timeline is what it says: the same file judged segment by segment
    rc, out, err = _main(["--timeline", "--json", "--model", model, long.name], capsys)
    assert rc == 0, err
    assert sum(r["emotion"] in ser.predict.EMOTIONS for r in _json_lines(out)) >= 8


@needs_shipped
def test_recommended_model_judges_a_file_longer_than_whispers_window(shared_data, elsewhere,
                                                                     capsys):
    """Whisper hears 30 s at once; a 40 s file was a ValueError from inside the encoder. Now
    the encoder takes it in 30 s windows and the file is judged whole, like with the CNN."""
    clips = sorted((shared_data / "ravdess_speech" / "Actor_05").glob("*.flac"))[:12]
    long = _concatenated(elsewhere / "forty.wav", clips, 40)
    rc, out, err = _main(["--json", long.name], capsys)
    assert rc == 0, err
    (row,) = _json_lines(out)
    assert "error" not in row and row["emotion"] in ser.predict.EMOTIONS
    p = ser.predict.Predictor()
    y = ser.audio.load_audio(long)
    assert y.size > 30 * SR
    assert p.predict_signal(y, SR).emotion == row["emotion"]
    rc, out, err = _main(["--timeline", "--json", "--max-segment", "35", long.name], capsys)
    assert rc == 0, err


# --------------------------------------------------------------------------------------------
# 3. an uncertain answer names its emotion, in every output
# --------------------------------------------------------------------------------------------
def test_uncertain_names_the_most_likely_emotion(model, shared_data, elsewhere, capsys):
    clip = str(shared_data / CLIP)
    rc, out, err = _main(["--model", model, "--min-confidence", "1", "--top", "3", clip],
                         capsys)
    assert rc == 0, err
    (line,) = out.strip().splitlines()
    rc, out, _ = _main(["--json", "--model", model, "--min-confidence", "1", clip], capsys)
    (row,) = _json_lines(out)
    assert row["emotion"] == ser.predict.UNCERTAIN
    ranked = sorted(row["probabilities"].items(), key=lambda kv: -kv[1])
    best, second, third = ranked[:3]
    assert row["confidence"] == best[1]
    assert line == (f"{clip}: uncertain: {best[0]} {best[1]:.2f}  ({second[0]} {second[1]:.2f}, "
                    f"{third[0]} {third[1]:.2f})")
    # the result files say the same
    for fmt in ("txt", "csv"):
        _main(["--model", model, "--min-confidence", "1", "--output-dir", "out", "--format",
               fmt, clip], capsys)
    assert (elsewhere / "out" / "predictions.txt").read_text().splitlines() == [line]
    with open(elsewhere / "out" / "predictions.csv", newline="") as fh:
        (cells,) = list(csv.DictReader(fh))
    assert cells["emotion"] == "uncertain" and float(cells["confidence"]) == best[1]
    assert float(cells[best[0]]) == best[1]


# --------------------------------------------------------------------------------------------
# 4. an error line names its file once
# --------------------------------------------------------------------------------------------
def test_error_lines_name_the_file_once(model, shared_data, elsewhere, capsys):
    y = ser.audio.load_audio(shared_data / CLIP)
    sf.write("silent.wav", np.zeros_like(y), SR, subtype="PCM_16")   # the clip, muted
    Path("notes.wav").write_text("not audio\n")
    inputs = ["./silent.wav", "notes.wav", "missing.flac", str(shared_data / CLIP)]
    rc, out, err = _main(["--model", model, "--output-dir", "out", "--format", "txt", *inputs],
                         capsys)
    assert rc == 1
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 3, err
    for name, line in zip(inputs, errors):
        assert line.startswith(f"error: {name}: "), line
        assert line.count(Path(name).name) == 1, line
    assert "not readable audio (Format not recognised.)" in errors[1]
    txt = (elsewhere / "out" / "predictions.txt").read_text().splitlines()
    for name, line in zip(inputs, txt[:3]):
        assert line.startswith(f"{name}: error: ") and line.count(Path(name).name) == 1, line
    # JSON: the row's error is the stderr line, the file as given
    rc, out, err = _main(["--json", "--model", model, *inputs], capsys)
    rows = _json_lines(out)
    assert [r["error"] for r in rows[:3]] == [line[len("error: "):] for line in errors]
    assert [r["file"] for r in rows] == inputs


# --------------------------------------------------------------------------------------------
# 5. no empty --output-dir
# --------------------------------------------------------------------------------------------
def test_failed_run_leaves_no_output_dir(model, shared_data, elsewhere, capsys):
    rc, _, err = _main(["--timeline", "--model", model, "--output-dir", "out/a/b",
                        "missing.wav"], capsys)
    assert rc == 1 and "error: missing.wav: file not found" in err
    assert not (elsewhere / "out").exists()
    rc, _, err = _main(["--model", "none.h5", "--output-dir", "res", shared_data / CLIP],
                       capsys)
    assert rc == 2 and not (elsewhere / "res").exists()
    # a folder that was there stays, and one that got a file is kept
    (elsewhere / "kept").mkdir()
    rc, _, _ = _main(["--timeline", "--model", model, "--output-dir", "kept", "missing.wav"],
                     capsys)
    assert rc == 1 and (elsewhere / "kept").is_dir()
    rc, _, err = _main(["--model", model, "--output-dir", "new", shared_data / CLIP], capsys)
    assert rc == 0, err
    assert [p.name for p in (elsewhere / "new").iterdir()] == ["predictions.csv"]


# --------------------------------------------------------------------------------------------
# 6. one rounding rule
# --------------------------------------------------------------------------------------------
def _decimals(v: float) -> int:
    text = repr(v)
    return len(text.split(".")[1]) if "." in text and "e" not in text else 0


def test_json_rounds_files_and_timelines_alike(model, shared_data, elsewhere, capsys):
    clips = sorted((shared_data / "ravdess_speech" / "Actor_05").glob("*.flac"))[:4]
    session = _concatenated(elsewhere / "session.wav", clips, 10)
    rc, out, err = _main(["--json", "--model", model, *clips], capsys)
    files = [v for r in _json_lines(out) for v in r["probabilities"].values()]
    rc, out, err = _main(["--timeline", "--json", "--model", model, session.name], capsys)
    assert rc == 0, err
    segs = [v for r in _json_lines(out) for v in r["probabilities"].values()]
    for values in (files, segs):                               # 6 decimals, both
        assert all(v == round(v, 6) for v in values)
        assert max(map(_decimals, values)) == 6                # not 4 for timelines
    seg = tl.Segment(0.0, 1.0, "sad", 0.123456789, {"sad": 0.123456789})
    pred = ser.predict.Prediction("sad", 0.123456789, {"sad": 0.123456789})
    assert seg.as_dict()["confidence"] == pred.as_dict()["confidence"] == 0.123457
    assert output.DIGITS == tl.DIGITS == ser.predict.DIGITS == 6       # the one rule
