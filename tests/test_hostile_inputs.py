"""Broken and hostile inputs (issue 28): nothing hangs, nothing lies, nothing is lost.

Each test builds the bad input for real (a WAV header that lies, a FIFO, a device, a swapped
export, a full tmpfs, a Ctrl-C) and checks the one-line message, the exit status, and that
nothing was lost or half-written. Programs that could block are run as child processes with
a generous safety timeout, so that a regression fails instead of hanging the suite.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import create_features
import live_predictions
import ser.audio
import ser.checkpoint
import ser.cluster
import ser.corpora
import ser.extract
import ser.files
import ser.output
import ser.predict
import ser.store
from test_feature_and_model_files import tiny_disk  # noqa: F401  (a real 1 MB tmpfs)
from tiny_model import build_tiny_model

ROOT = Path(__file__).resolve().parents[1]
SR = ser.audio.SAMPLE_RATE
SAFETY = 300          # s: only a hang reaches it


def harmonic(f0=200.0, seconds=1.5, amp=0.3, sr=SR):
    t = np.arange(int(sr * seconds)) / sr
    return (amp * sum(np.sin(2 * np.pi * k * f0 * t) / k for k in (1, 2, 3))).astype(np.float32)


def corpus(root: Path, n: int = 3) -> Path:
    """``n`` short synthetic utterances in RAVDESS-style Actor folders (64 names an actor)."""
    rng = np.random.default_rng(0)
    for i in range(n):
        k = i // 8
        intensity, statement, rep, actor = 1 + k % 2, 1 + k // 2 % 2, 1 + k // 4 % 2, 1 + k // 8
        d = root / f"Actor_{actor:02d}"
        d.mkdir(parents=True, exist_ok=True)
        y = harmonic(150.0 + 20 * (i % 10)) + 0.01 * rng.standard_normal(int(SR * 1.5)).astype(
            np.float32)
        sf.write(d / f"03-01-{1 + i % 8:02d}-{intensity:02d}-{statement:02d}-{rep:02d}-"
                     f"{actor:02d}.wav", y, SR, subtype="PCM_16")
    return root


def pcm16_wav(path: Path, samples: np.ndarray, rate: int) -> Path:
    """A plain PCM WAV whose header states ``rate`` (any number, as a liar would write it)."""
    data = (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()
    head = struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + len(data), b"WAVE", b"fmt ", 16, 1,
                       1, rate, rate * 2, 2, 16, b"data", len(data))
    path.write_bytes(head + data)
    return path


def run(script: str, *args: str, timeout: float = SAFETY) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / script), *args], capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})


@pytest.fixture(scope="module")
def model(tmp_path_factory, shared_data) -> Path:
    return build_tiny_model(tmp_path_factory.getbasetemp() / "tiny_model", shared_data)


def model_copy(model: Path, dest: Path, **sidecar) -> Path:
    """The tiny model (H5, export, sidecar) copied to ``dest``, its sidecar's keys changed."""
    dest.mkdir(parents=True, exist_ok=True)
    for suffix in (".h5", ".json", ".tflite"):
        if model.with_suffix(suffix).exists():
            shutil.copy(model.with_suffix(suffix), dest / f"m{suffix}")
    meta = json.loads((dest / "m.json").read_text())
    if meta.get("litert"):
        meta["litert"]["file"] = "m.tflite"
    meta.update(sidecar)
    (dest / "m.json").write_text(json.dumps(meta))
    return dest / "m.h5"


# --------------------------------------------------------------------------------------------
# 1. Extraction: a header's rate and length judged before decoding
# --------------------------------------------------------------------------------------------
def test_extraction_skips_lying_rates_and_long_files_before_decoding(tmp_path):
    feats = corpus(tmp_path / "features")
    liar = pcm16_wav(feats / "Actor_01" / "03-01-05-01-02-02-01.wav",
                     harmonic(sr=2000, seconds=1.5), 1)          # 3000 samples "at 1 Hz"
    long = feats / "Actor_02" / "03-01-04-01-02-02-02.wav"
    long.parent.mkdir()
    sf.write(long, harmonic(seconds=5.0), SR, subtype="PCM_16")
    r = ser.extract.extract(feats, feature_sets=["mfcc"], jobs=1, progress=False,
                            use_cache=False, max_seconds=3.0)
    assert r["files"] == 3
    by_file = {Path(m.split(":")[0]).name: m for m in r["skipped"]}
    assert set(by_file) == {liar.name, long.name}
    assert "sample rate 1 Hz is outside the 4000-384000 Hz" in by_file[liar.name]
    assert "5 s long, more than the 3 s limit" in by_file[long.name]
    # the script: the same limit as an option, and the same one-line reasons
    p = run("create_features.py", "--features-dir", str(feats), "--jobs", "1",
            "--max-seconds", "3", "--no-cache")
    assert p.returncode == 0, p.stderr
    skipped = [ln for ln in p.stderr.splitlines() if ln.startswith("skipped: ")]
    assert len(skipped) == 2 and "3 rows, 2 skipped" in p.stdout


# --------------------------------------------------------------------------------------------
# 2. A CSV that lists one recording twice
# --------------------------------------------------------------------------------------------
def test_csv_rows_of_the_same_audio_are_left_out_naming_the_lines(tmp_path):
    audio = tmp_path / "audio"
    audio.mkdir()
    for i in range(3):
        sf.write(audio / f"u{i}.wav", harmonic(150.0 + 30 * i), SR, subtype="PCM_16")
    shutil.copy(audio / "u1.wav", audio / "copy_of_u1.wav")
    rows = [("audio/u0.wav", "happy", "ann"), ("audio/u0.wav", "sad", "bob"),
            ("./audio/../audio/u0.wav", "angry", "cid"), ("audio/u1.wav", "calm", "ann"),
            ("audio/copy_of_u1.wav", "fearful", "bob"), ("audio/u2.wav", "sad", "bob")]
    table = tmp_path / "mine.csv"
    with open(table, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "emotion", "speaker"])
        w.writerows(rows)
    kept, problems = ser.corpora.read_csv_corpus(table)
    assert [r.rel for r in kept] == ["audio/u0.wav", "audio/u1.wav", "audio/u2.wav"]
    assert [r.speaker for r in kept] == ["ann", "ann", "bob"]
    assert [r.name.actor for r in kept] == [1000, 1000, 1001]   # numbered as kept
    assert problems == [
        f"{table}:3: the same file as line 2; left out (one recording is one row: listed "
        f"twice it would be tested on itself)",
        f"{table}:4: the same file as line 2; left out (one recording is one row: listed "
        f"twice it would be tested on itself)",
        f"{table}:6: the same audio as line 5 (identical bytes); left out (one recording is "
        f"one row: listed twice it would be tested on itself)"]


# --------------------------------------------------------------------------------------------
# 3. An extraction that yields nothing replaces nothing
# --------------------------------------------------------------------------------------------
def test_a_run_where_every_file_fails_keeps_the_old_features_and_fails(tmp_path):
    feats = corpus(tmp_path / "features")
    p = run("create_features.py", "--features-dir", str(feats), "--jobs", "1")
    assert p.returncode == 0, p.stderr
    out = feats / "features_mfcc.joblib"
    before = out.read_bytes()
    for wav in feats.glob("Actor_*/*.wav"):                      # every file now broken
        wav.write_bytes(b"RIFF junk, not audio")
    p = run("create_features.py", "--features-dir", str(feats), "--jobs", "1")
    assert p.returncode == 1
    lines = p.stderr.strip().splitlines()
    assert len([ln for ln in lines if ln.startswith("skipped: ")]) == 3
    assert lines[-1] == (f"error: no file gave features (3 skipped); nothing was written, "
                         f"{out} left as it was")
    assert out.read_bytes() == before
    # a run that does replace it keeps the replaced file under .previous/
    corpus(feats)
    p = run("create_features.py", "--features-dir", str(feats), "--jobs", "1", "--no-cache")
    assert p.returncode == 0, p.stderr
    assert (feats / ".previous" / out.name).read_bytes() == before
    assert not list(feats.glob(".*.tmp*"))


# --------------------------------------------------------------------------------------------
# 4, 5. Sidecar numbers that training cannot have written
# --------------------------------------------------------------------------------------------
def test_a_normalisation_that_overflows_float32_is_refused(model, tmp_path):
    meta = json.loads(model.with_suffix(".json").read_text())
    dim = len(meta["normalization"]["mean"])
    bad = model_copy(model, tmp_path / "a", normalization={"mean": [1e39] * dim,
                                                           "std": [1e-50] * dim})
    with pytest.raises(ser.predict.ModelError,
                       match=r"m\.json: normalization has values that are not finite in "
                             r"float32$"):
        ser.predict.Predictor(bad)
    tiny_std = model_copy(model, tmp_path / "b", normalization={"mean": [0.0] * dim,
                                                               "std": [1e-30] * dim})
    with pytest.raises(ser.predict.ModelError, match="a std below 1e-09"):
        ser.predict.Predictor(tiny_std)


def test_a_non_finite_output_is_an_error_never_a_probability(model):
    predictor = ser.predict.Predictor(model)
    v = np.full(predictor.meta["input_shape"][0], np.inf, np.float32)
    with pytest.raises(ser.predict.ModelError, match="output is not finite"):
        predictor.predict_vector(v)


def test_a_temperature_outside_the_fitting_range_is_refused(model, tmp_path, capsys):
    for t in (1e300, 1e-3):
        bad = model_copy(model, tmp_path / str(t), calibration={"temperature": t})
        rc = live_predictions.main(["--json", "--model", str(bad), str(bad)])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1
        assert "malformed sidecar: calibration is" in err[0] and "[0.05, 20]" in err[0]
    ok = model_copy(model, tmp_path / "ok", calibration={"temperature": 20.0})
    assert ser.predict.Predictor(ok).temperature == 20.0


# --------------------------------------------------------------------------------------------
# 6, 7, 8. Files opened by name: regular files only, read with a bound
# --------------------------------------------------------------------------------------------
def test_sidecar_model_and_export_that_are_devices_or_fifos_are_refused(model, tmp_path,
                                                                         shared_data):
    clip = shared_data / "ravdess_speech/Actor_05/03-01-05-02-01-01-05.flac"
    cases = {}
    d = model_copy(model, tmp_path / "zero").parent          # the sidecar: /dev/zero
    (d / "m.json").unlink()
    (d / "m.json").symlink_to("/dev/zero")
    cases[d / "m.h5"] = "m.json: not a regular file (a character device)"
    d = model_copy(model, tmp_path / "fifo_json").parent     # the sidecar: a FIFO
    (d / "m.json").unlink()
    os.mkfifo(d / "m.json")
    cases[d / "m.h5"] = "m.json: not a regular file (a FIFO)"
    d = model_copy(model, tmp_path / "fifo_h5").parent       # the model: a FIFO
    (d / "m.h5").unlink()
    os.mkfifo(d / "m.h5")
    cases[d / "m.h5"] = "m.h5: not a regular file (a FIFO)"
    if model.with_suffix(".tflite").exists():                # the export: a FIFO
        d = model_copy(model, tmp_path / "fifo_lite").parent
        (d / "m.tflite").unlink()
        os.mkfifo(d / "m.tflite")
        cases[d / "m.h5"] = "m.tflite: not a regular file (a FIFO)"
    for h5, why in cases.items():
        p = run("live_predictions.py", "--model", str(h5), str(clip))
        assert p.returncode == 2, (h5, p.stderr)
        err = p.stderr.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and err[0].endswith(why), err


def test_csv_that_is_a_device_or_a_fifo_is_refused(tmp_path):
    fifo = tmp_path / "list.csv"
    os.mkfifo(fifo)
    for table, why in (("/dev/zero", "not a regular file (a character device)"),
                       (str(fifo), "not a regular file (a FIFO)")):
        p = run("create_features.py", "--csv", table, "--out", str(tmp_path / "out"))
        assert p.returncode == 1, p.stderr
        assert p.stderr.strip().splitlines() == [f"error: {table}: {why}"]
    big = tmp_path / "big.csv"
    with open(big, "wb") as f:
        f.truncate(ser.corpora.CSV_MAX_BYTES + 1)           # sparse: no room taken
    with pytest.raises(ValueError, match=f"^{big}: larger than"):
        ser.corpora.read_csv_corpus(big)


def test_feature_files_that_are_fifos_are_refused(tmp_path):
    fifo = tmp_path / "features_mfcc.joblib"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="not a regular file \\(a FIFO\\)"):
        ser.files.load_trusted(fifo, trust=True)


# --------------------------------------------------------------------------------------------
# 9. A muted input is "no speech", by one rule for files, streams and timelines
# --------------------------------------------------------------------------------------------
def muted(seconds=3.0, offset=0.05, noise_dbfs=-75.0):
    rng = np.random.default_rng(1)
    return (offset + 10 ** (noise_dbfs / 20) * rng.standard_normal(int(SR * seconds))
            ).astype(np.float32)


def test_a_muted_card_with_a_dc_offset_is_silent_everywhere(model, tmp_path, capsys):
    y = muted()
    assert 20 * np.log10(np.abs(y).max()) > -27          # its peak is loud: the old rule judged it
    assert ser.audio.speech_level_db(y) < ser.audio.SILENCE_DBFS
    f = tmp_path / "muted.wav"
    sf.write(f, y, SR, subtype="FLOAT")
    rc = live_predictions.main(["--json", "--model", str(model), str(f)])
    out = capsys.readouterr().out.strip().splitlines()
    assert rc == 1 and len(out) == 1
    row = json.loads(out[0])
    assert "emotion" not in row and "silent (speech level -75 dBFS" in row["error"]
    # a stream window through the predictor's gate: the same refusal, no emotion
    predictor = ser.predict.Predictor(model)
    with pytest.raises(ser.audio.AudioError, match="silent"):
        predictor.predict_signal(y)
    gate = ser.stream.LevelGate(predictor, ser.stream.DEFAULT_GATE_DB)
    with pytest.raises(ser.audio.AudioError, match="level -75 dBFS < gate"):
        gate.predict_signal(y, SR, name="window")
    # speech with the same offset is still judged: the offset is not counted either way
    speech = harmonic(seconds=2.0) + np.float32(0.05)
    assert ser.audio.speech_level_db(speech) == pytest.approx(
        ser.audio.speech_level_db(speech - np.float32(0.05)), abs=0.1)
    assert predictor.predict_signal(speech).emotion in ser.corpora.EMOTIONS


# --------------------------------------------------------------------------------------------
# 10. Ctrl-C during extraction
# --------------------------------------------------------------------------------------------
def test_ctrl_c_during_extraction_says_interrupted_and_exits_130(tmp_path):
    """Ctrl-C once the workers are at work (a Ctrl-C within the first second, while a worker
    is still starting, can still show that worker's traceback: its SIGINT is ignored from its
    initializer on)."""
    feats = corpus(tmp_path / "features", n=400)
    p = subprocess.Popen([sys.executable, str(ROOT / "create_features.py"), "--features-dir",
                          str(feats), "--feature", "stats_whisper", "--jobs", "2"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         stdin=subprocess.DEVNULL, start_new_session=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    cache = feats / ".cache"
    deadline = time.monotonic() + SAFETY
    while not (cache.is_dir() and len(list(cache.rglob("*.f32"))) >= 96):   # both at work
        assert p.poll() is None, p.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(p.pid, signal.SIGINT)                   # as a terminal does: the whole group
    out, err = p.communicate(timeout=SAFETY)
    assert p.returncode == 130, err
    assert err.strip().splitlines() == [
        "create_features: interrupted; what was extracted is cached, run again to resume"], err
    assert not (feats / "features_stats_whisper.joblib").exists()
    p = run("create_features.py", "--features-dir", str(feats), "--feature", "stats_whisper",
            "--jobs", "2")                                   # resumes from the cache
    assert p.returncode == 0, p.stderr
    import re
    assert "400 rows, 0 skipped" in p.stdout
    assert int(re.search(r"(\d+) from cache", p.stdout).group(1)) > 0


# --------------------------------------------------------------------------------------------
# 11. Keeping the replaced model on a full disk
# --------------------------------------------------------------------------------------------
def test_keeping_a_replaced_model_needs_no_room_and_is_whole(tiny_disk):  # noqa: F811
    models = tiny_disk / "models"
    models.mkdir()
    rng = np.random.default_rng(0)
    blobs = {s: rng.bytes(200_000) for s in (".h5", ".tflite")}
    blobs[".json"] = b'{"model": "x"}'
    for s, b in blobs.items():
        (models / f"x{s}").write_bytes(b)
    filler = tiny_disk / "filler"
    with open(filler, "wb", buffering=0) as f:       # fill the disk to the last byte
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass
    assert shutil.disk_usage(tiny_disk).free < 4096
    kept = ser.files.keep_previous(models / "x.h5", companions=(".json", ".tflite"))
    assert kept.parent == models / "previous"
    for s, b in blobs.items():
        k = kept.with_suffix(s)
        assert k.read_bytes() == b                                  # whole, not truncated
        assert k.stat().st_ino == (models / f"x{s}").stat().st_ino  # a link, not a copy
    # where it cannot keep them (a file in the way of previous/): an error, nothing half-kept
    shutil.rmtree(models / "previous")
    filler.unlink()
    (models / "previous").write_bytes(b"in the way")
    with pytest.raises(ser.files.OutputError, match="cannot keep the file to be replaced"):
        ser.files.keep_previous(models / "x.h5", companions=(".json", ".tflite"))
    assert (models / "previous").read_bytes() == b"in the way"


# --------------------------------------------------------------------------------------------
# 12. The export served is the conversion of the H5 beside it
# --------------------------------------------------------------------------------------------
def test_a_swapped_export_with_a_forged_checksum_is_not_served(model, tmp_path, capsys,
                                                                shared_data):
    import hashlib
    if not model.with_suffix(".tflite").exists():
        pytest.skip("the tiny model has no LiteRT export (LiteRT not installed)")
    other = random_model(model, tmp_path / "other")
    h5 = model_copy(model, tmp_path / "swapped")
    shutil.copy(other.with_suffix(".tflite"), h5.with_suffix(".tflite"))
    meta = json.loads(h5.with_suffix(".json").read_text())
    blob = h5.with_suffix(".tflite").read_bytes()
    meta["litert"].update(sha256=hashlib.sha256(blob).hexdigest(), bytes=len(blob))
    h5.with_suffix(".json").write_text(json.dumps(meta))       # the forger's sidecar
    clip = shared_data / "ravdess_speech/Actor_01/03-01-05-02-01-01-01.flac"
    served = ser.predict.Predictor(h5)
    note = capsys.readouterr().err.strip().splitlines()
    assert len(note) == 1 and "m.tflite: not the conversion of" in note[0]
    assert "serving its H5 instead" in note[0]
    norm = served.meta["normalization"]                # an input none of them was fit to
    v = (np.asarray(norm["mean"]) + 2 * np.asarray(norm["std"]) *
         np.random.default_rng(5).standard_normal(len(norm["mean"]))).astype(np.float32)
    want = ser.predict.Predictor(model, backend="tf").predict_vector(v)
    swapped = ser.predict.Predictor(other, backend="tf").predict_vector(v)
    got = served.predict_vector(v)
    for k, p in want.probabilities.items():           # the H5's answer, not the swapped one's
        assert got.probabilities[k] == pytest.approx(p, abs=1e-5)
    assert max(abs(swapped.probabilities[k] - p) for k, p in want.probabilities.items()) > 0.05
    assert served.predict_file(clip).emotion in ser.corpora.EMOTIONS
    with pytest.raises(ser.predict.ModelError, match="not the conversion of"):
        ser.predict.Predictor(h5, backend="litert")
    # the untouched copy of the model: its export is verified and served by LiteRT
    honest = model_copy(model, tmp_path / "honest")
    assert ser.predict.Predictor(honest).backend == "litert"


def random_model(model: Path, dest: Path) -> Path:
    """Another network of the same input and output (random weights), saved with the tiny
    model's sidecar."""
    import keras
    meta = json.loads(model.with_suffix(".json").read_text())
    keras.utils.set_random_seed(7)
    net = keras.Sequential([keras.Input(tuple(meta["input_shape"])), keras.layers.Flatten(),
                            keras.layers.Dense(16, activation="tanh"),
                            keras.layers.Dense(len(meta["labels"]), activation="softmax")])
    dest.mkdir(parents=True)
    ser.checkpoint.save_model(net, dest / "other.h5", meta)
    return dest / "other.h5"


# --------------------------------------------------------------------------------------------
# 13. File names cannot forge output
# --------------------------------------------------------------------------------------------
def test_file_names_cannot_forge_lines_or_formulas(model, tmp_path, capsys, shared_data,
                                                   monkeypatch):
    src = shared_data / "ravdess_speech/Actor_01/03-01-05-02-01-01-01.flac"
    monkeypatch.chdir(tmp_path)
    forged, formula = "a.flac\nb.flac: happy 0.99", "=1+1.flac"
    for f in (forged, formula):
        shutil.copy(src, f)
    rc = live_predictions.main(["--model", str(model), "--output-dir", "out", "--format",
                                "csv", forged, formula])
    out = capsys.readouterr().out.splitlines()
    assert rc == 0 and len(out) == 2                       # one line per file, none forged
    assert out[0].startswith("a.flac\\nb.flac: happy 0.99: ")
    assert out[1].startswith("=1+1.flac: ")
    rows = list(csv.reader(open("out/predictions.csv", newline="")))
    assert [r[0] for r in rows[1:]] == [forged, "'=1+1.flac"]    # a text cell, not a formula
    cells = ser.output.read_predictions("out/predictions.csv")
    assert [c["file"] for c in cells] == [forged, formula]       # read back as given
    row = {"file": "@SUM(A1)", "error": "-1: silent"}
    dest = ser.output.write_predictions([row], "rel", "csv")
    assert "\n'@SUM(A1),,,,,,,,,,,'-1: silent\n" in dest.read_text()
    assert ser.output.read_predictions(dest) == [row]
    txt = ser.output.write_predictions([{"file": "x\ny: happy 1.00", "error": "e\x1b[2J"}],
                                       "t", "txt").read_text()
    assert txt == "x\\ny: happy 1.00: error: e\\x1b[2J\n"
    rc = live_predictions.main(["--model", str(model), "missing\nforged.wav"])
    err = capsys.readouterr().err.splitlines()
    assert rc != 0 and len(err) == 1 and "missing\\nforged.wav" in err[0]


# --------------------------------------------------------------------------------------------
# 14. The same bits whatever --jobs
# --------------------------------------------------------------------------------------------
def test_features_have_the_same_bits_whatever_the_jobs(tmp_path, shared_data):
    feats = tmp_path / "features"
    src = sorted((shared_data / "ravdess_speech" / "Actor_03").glob("*.flac"))[:12]
    (feats / "Actor_03").mkdir(parents=True)
    for f in src:
        shutil.copy(f, feats / "Actor_03" / f.name)
    sets = ["stats", "mfcc", "byols"]
    got = {}
    for jobs in (1, 2):
        ser.extract.extract(feats, feature_sets=sets, jobs=jobs, progress=False,
                            use_cache=False)
        got[jobs] = {f: ser.store.load_features(f, features_dir=feats) for f in sets}
    for f in sets:
        a, b = got[1][f], got[2][f]
        order = np.argsort(b["meta"]["path"])
        assert list(a["meta"]["path"]) == list(b["meta"]["path"][order])
        assert a["X"].tobytes() == b["X"][order].tobytes(), f
