"""live_predictions.py: files, JSON lines, bad input, model checks, and a real microphone.

The microphone tests use a real capture device: a private PulseAudio daemon whose null-sink
monitor is the default input (tests/pulse.py); a real corpus file is played into it with
``paplay`` from another process while the script records. They skip when PulseAudio is absent.
Every test uses a tiny model trained here on real files (tests/tiny_model.py), never the
shipped one, except the last, which skips while models/ has none.
"""
from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import live_predictions
import ser.adaptation
import ser.audio
import ser.checkpoint
import ser.corpora
import ser.features
import ser.paths
import ser.predict
import ser.scan
import ser.stream
from tiny_model import build_tiny_model, training_files

SCRIPT = ser.paths.ROOT / "live_predictions.py"


# --------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def model(tmp_path_factory, shared_data) -> Path:
    return build_tiny_model(tmp_path_factory.getbasetemp() / "tiny_model", shared_data)


@pytest.fixture(scope="module")
def predictor(model) -> ser.predict.Predictor:
    return ser.predict.Predictor(model)


@pytest.fixture(scope="module")
def files(shared_data) -> dict[str, Path]:
    d = shared_data
    return {
        "ravdess": d / "ravdess_speech/Actor_05/03-01-05-02-01-01-05.flac",
        "tess": d / "tess/YAF_happy/YAF_back_happy.flac",                 # 24414 Hz
        "stereo48k": d / "originals/ravdess_speech/Actor_01/03-01-02-01-01-02-01.wav",
        "aiff_as_wav": d / "originals/tess/YAF_angry/YAF_germ_angry.wav",
        "song": d / "ravdess_song/Actor_02/03-02-03-02-01-01-02.flac",
    }


@pytest.fixture(scope="module")
def confident_file(predictor, shared_data) -> tuple[Path, ser.predict.Prediction]:
    """A training file whose prediction is clear, untrimmed and trimmed alike."""
    best = None
    for f in training_files(shared_data):
        whole = predictor.predict_file(f)
        trimmed = predictor.predict_signal(ser.audio.trim_silence(ser.audio.load_audio(f)))
        if whole.emotion != trimmed.emotion:
            continue
        margin = min(_margin(whole), _margin(trimmed))
        if best is None or margin > best[0]:
            best = (margin, f, whole)
    assert best is not None and best[0] > 0.5, "tiny model gives no clear prediction"
    return best[1], best[2]


def _margin(p: ser.predict.Prediction) -> float:
    (_, a), (_, b) = p.top(2)
    return a - b


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------
def test_predictor_reads_every_format(predictor, files):
    for name, f in files.items():
        p = predictor.predict_file(f)
        assert p.emotion in ser.corpora.EMOTIONS, name
        assert set(p.probabilities) == set(ser.corpora.EMOTIONS)
        assert sum(p.probabilities.values()) == pytest.approx(1.0, abs=1e-4)
        assert p.confidence == max(p.probabilities.values())
    assert predictor.backend in ("litert", "tf.function")
    assert predictor.feature == "mfcc"


def test_backends_agree(model, predictor, files):
    tf_pred = ser.predict.Predictor(model, backend="tf")
    assert tf_pred.backend == "tf.function"
    for f in files.values():
        assert (tf_pred.predict_file(f).probabilities
                == pytest.approx(predictor.predict_file(f).probabilities, abs=1e-5))


def test_without_litert_auto_falls_back(model, monkeypatch):
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)          # import now fails
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    assert ser.predict.Predictor(model).backend == "tf.function"
    with pytest.raises(ser.predict.ModelError, match="pip install ai-edge-litert"):
        ser.predict.Predictor(model, backend="litert")


def test_predict_signal_any_rate_matches_file(predictor, files):
    f = files["tess"]
    y, sr = sf.read(str(f), dtype="float32")
    a = predictor.predict_signal(y, sr)
    b = predictor.predict_file(f)
    assert a.probabilities == pytest.approx(b.probabilities, abs=1e-5)


def test_json_batch_with_bad_files(model, files, tmp_path, capsys):
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio\n")
    missing = tmp_path / "missing.flac"
    args = [str(files["ravdess"]), str(text), str(files["stereo48k"]), str(missing),
            str(files["tess"])]
    rc = live_predictions.main(["--json", "--model", str(model), *args])
    out, err = capsys.readouterr()
    assert rc == 1
    rows = _json_lines(out)
    assert [r["file"] for r in rows] == args
    for r in (rows[0], rows[2], rows[4]):
        assert set(r) == {"file", "emotion", "confidence", "probabilities"}
        assert r["emotion"] in ser.corpora.EMOTIONS
        assert list(r["probabilities"]) == list(ser.corpora.EMOTIONS)
        assert r["confidence"] == max(r["probabilities"].values())
    assert set(rows[1]) == {"file", "error"} and "not readable audio" in rows[1]["error"]
    assert set(rows[3]) == {"file", "error"} and "file not found" in rows[3]["error"]
    assert "Traceback" not in err


def test_text_output_and_folders(model, shared_data, capsys):
    folder = shared_data / "originals" / "ravdess_speech"
    rc = live_predictions.main(["--model", str(model), "--top", "2", str(folder)])
    out, err = capsys.readouterr()
    assert rc == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == len(ser.scan.list_audio_files(folder)) == 3
    for line in lines:
        path, rest = line.split(": ", 1)
        assert Path(path).exists()
        assert rest.split()[0] in ser.corpora.EMOTIONS
        assert rest.count(",") == 0 and "(" in rest      # top 2: the best plus one other


def test_many_files_load_the_model_once(model, files, monkeypatch, capsys):
    calls = []

    def counting(real):
        def wrapper(*a, **kw):
            calls.append(a)
            return real(*a, **kw)
        return wrapper
    for name in ("load_model", "load_exported"):     # the H5 by Keras, or its LiteRT export
        monkeypatch.setattr(ser.predict, name, counting(getattr(ser.predict, name)))
    paths = [str(files["ravdess"]), str(files["tess"])] * 75
    t0 = time.perf_counter()
    rc = live_predictions.main(["--json", "--model", str(model), *paths])
    elapsed = time.perf_counter() - t0
    rows = _json_lines(capsys.readouterr().out)
    assert rc == 0 and len(rows) == 150 and len(calls) == 1
    assert elapsed < 30


def test_silent_and_short_clips_are_no_speech(model, files, tmp_path, capsys):
    y = ser.audio.load_audio(files["ravdess"])
    clips = {
        "silent.wav": np.zeros(3 * ser.audio.SAMPLE_RATE, np.float32),
        "hiss.wav": (np.random.default_rng(0).standard_normal(3 * ser.audio.SAMPLE_RATE)
                     * 1e-4).astype(np.float32),                      # peak ~ -70 dBFS
        "short.wav": y[ser.audio.SAMPLE_RATE: ser.audio.SAMPLE_RATE + int(0.1 * ser.audio.SAMPLE_RATE)],
        "tiny.wav": y[ser.audio.SAMPLE_RATE: ser.audio.SAMPLE_RATE + 1000],        # < one FFT frame
    }
    paths = []
    for name, clip in clips.items():
        sf.write(str(tmp_path / name), clip, ser.audio.SAMPLE_RATE, subtype="FLOAT")
        paths.append(str(tmp_path / name))
    rc = live_predictions.main(["--json", "--model", str(model), *paths])
    rows = _json_lines(capsys.readouterr().out)
    assert rc == 1
    assert len(rows) == 4
    for r in rows:
        assert "emotion" not in r and "no speech detected" in r["error"], r


def test_text_mode_errors_are_one_line(model, tmp_path, capsys):
    bad = tmp_path / "empty.wav"
    bad.write_bytes(b"")
    rc = live_predictions.main(["--model", str(model), str(bad)])
    out, err = capsys.readouterr()
    assert rc == 1 and out == ""
    assert err.strip().splitlines() == [f"error: {bad}: empty file (0 bytes)"]


def test_missing_model(tmp_path, files, capsys):
    rc = live_predictions.main(["--model", str(tmp_path / "none.h5"), str(files["ravdess"])])
    out, err = capsys.readouterr()
    assert rc == 2 and out == ""
    lines = err.strip().splitlines()
    assert lines == [f"error: {tmp_path / 'none.h5'}: model file not found"]   # as given
    with pytest.raises(ser.predict.ModelError, match="model file not found"):
        ser.predict.Predictor(tmp_path / "none.h5")


def _variant(model: Path, tmp_path: Path, name: str, sidecar: dict | None, **changes) -> Path:
    dest = tmp_path / f"{name}.h5"
    shutil.copy(model, dest)
    meta = json.loads(ser.checkpoint.sidecar_path(model).read_text())
    meta.update(changes)
    if sidecar is not None:
        ser.checkpoint.sidecar_path(dest).write_text(json.dumps(meta))
    return dest


@pytest.mark.parametrize("name, changes, message", [
    ("chroma", {"feature": "chroma", "feature_params": ser.features.feature_params("chroma")},
     "feature set 'chroma' has 12"),
    ("combined", {"feature": "combined", "feature_params": ser.features.feature_params("combined"),
                  "input_shape": [59, 1], "normalization": None}, "does not match its sidecar"),
    ("unknown_feature", {"feature": "mel", "feature_params": {}},
     "not one this version computes"),
    ("flat_mismatch", {"input_shape": [4, 10]}, "does not match its sidecar"),
    ("old_params", {"feature_params": {**ser.features.feature_params("mfcc"), "n_fft": 1024}},
     "retrain"),
    ("labels", {"labels": list(reversed(ser.corpora.EMOTIONS))}, "label map"),
    ("norm", {"normalization": {"mean": [0.0] * 12, "std": [1.0] * 12}},
     "normalization has 12 means"),
    ("adaptive", {"adaptation": "running-mean"}, "not implemented"),
])
def test_mismatched_sidecar_is_refused(model, files, tmp_path, capsys, name, changes, message):
    bad = _variant(model, tmp_path, name, {}, **changes)
    rc = live_predictions.main(["--model", str(bad), str(files["ravdess"])])
    out, err = capsys.readouterr()
    assert rc == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines


def test_missing_sidecar_and_wrong_class_count(model, files, tmp_path, capsys):
    bad = _variant(model, tmp_path, "nosidecar", None)
    assert live_predictions.main(["--model", str(bad), str(files["ravdess"])]) == 2
    assert "sidecar not found" in capsys.readouterr().err
    import keras
    five = keras.Sequential([keras.Input((40, 1)), keras.layers.Flatten(),
                             keras.layers.Dense(5, activation="softmax")])
    meta = json.loads(ser.checkpoint.sidecar_path(model).read_text())
    ser.checkpoint.save_model(five, tmp_path / "five.h5", meta)
    assert live_predictions.main(["--model", str(tmp_path / "five.h5"), str(files["ravdess"])]) == 2
    assert "is not 8 classes" in capsys.readouterr().err


def test_help_documents_every_flag(capsys):
    with pytest.raises(SystemExit) as e:
        live_predictions.main(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for action in live_predictions.build_parser()._actions:
        assert action.help, action.option_strings
        for opt in action.option_strings:
            assert opt in text


@pytest.mark.parametrize("argv, message", [
    ([], "give audio FILEs"), (["--mic", "x.wav"], "choose one of"),
    (["--mic", "--stream"], "choose one of"),
    (["--stream", "--stream-mode", "window", "--hop", "4"], "--hop must not exceed --window"),
    (["--mic", "--seconds", "0"], "--seconds must be positive"),
    (["--timeline"], "--timeline judges FILEs"),
    (["--timeline", "--stream"], "--timeline judges FILEs"),
    (["--stream", "--window", "2"], "add --stream-mode window"),
    (["--merge-gap", "0.2", "x.wav"], "--merge-gap is for --timeline and --stream"),
    (["--timeline", "--vad-threshold", "1", "x.wav"], "--vad-threshold must lie between 0"),
    (["--timeline", "--merge-gap", "-1", "x.wav"], "--merge-gap must be a number of seconds"),
    (["--timeline", "--max-segment", "1", "--min-segment", "0.6", "x.wav"],
     "must be at least twice --min-segment"),
    (["--stream", "--max-segment", "0.2", "--min-segment", "0"], "--max-segment must be more"),
    (["--format", "json", "x.wav"], "--format needs --output-dir"),
    (["--no-plot", "--timeline", "x.wav"], "--no-plot needs --output-dir"),
    (["--mic", "--output-dir", "out"], "--output-dir is for FILEs, --timeline and --stream"),
    (["--stream", "--stream-mode", "window", "--output-dir", "out"], "use --stream-mode "
                                                                      "utterance"),
    (["--timeline", "--output-dir", "out", "--format", "xml", "x.wav"], "invalid choice"),
])
def test_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        live_predictions.main(argv)
    assert e.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("name, message", [
    ("tiny.json", "this is a model's JSON sidecar, not the model; pass the model beside it: "
                  "--model {dir}/tiny.h5"),
    ("notes.txt", "not a Keras model file (expected .h5, .hdf5, .keras, with its .json "
                  "sidecar beside it)"),
])
def test_model_that_is_not_a_model_file_is_one_line(model, files, monkeypatch, capsys, name,
                                                    message):
    """issue 19 item 5: ``--model models/x.json`` gave Keras's multi-line advice about .keras
    files and TFSMLayer, after seconds of importing TensorFlow; now one line, before that."""
    def no_load(*a, **kw):
        raise AssertionError("the model was loaded")
    monkeypatch.setattr(live_predictions, "Predictor", no_load)
    path = model.parent / name
    if not path.exists():
        path.write_text("not a model\n")
    rc = live_predictions.main(["--model", str(path), str(files["ravdess"])])
    out, err = capsys.readouterr()
    assert rc == 2 and out == ""
    assert err.strip().splitlines() == [f"error: {path}: "
                                        + message.format(dir=model.parent)]


# --------------------------------------------------------------------------------------------
# Streaming and trimming logic on real audio (no device)
# --------------------------------------------------------------------------------------------
def test_trim_silence_keeps_the_sound():
    sr = ser.audio.SAMPLE_RATE
    tone = 0.3 * np.sin(2 * np.pi * 220 * np.arange(sr) / sr).astype(np.float32)
    y = np.concatenate([np.zeros(2 * sr, np.float32), tone, np.zeros(sr, np.float32)])
    t = ser.audio.trim_silence(y)
    assert sr <= t.size <= sr + 2 * int(ser.audio.TRIM_MARGIN_SECONDS * sr) + 2 * ser.audio.LEVEL_FRAME
    assert ser.audio.trim_silence(np.zeros(sr, np.float32)).size == sr      # nothing loud: unchanged


def test_stream_processor_gates_and_hooks(predictor, files):
    class Recording(ser.adaptation.NoAdaptation):
        seen: list = []

        def observe(self, vector):
            self.seen.append(np.array(vector))

    sr = ser.audio.SAMPLE_RATE
    speech = ser.audio.load_audio(files["ravdess"])
    y = np.concatenate([np.zeros(4 * sr, np.float32), speech, np.zeros(4 * sr, np.float32)])
    saved = predictor.adaptation
    predictor.adaptation = Recording(predictor.meta)
    try:
        proc = ser.stream.StreamProcessor(predictor, window=3.0, hop=0.5)
        results = []
        for i in range(0, y.size, 1000):                 # device-sized blocks
            results += proc.feed(y[i:i + 1000])
    finally:
        seen, predictor.adaptation = predictor.adaptation.seen, saved
    expected = int((y.size - 3 * sr) // (sr // 2)) + 1
    assert len(results) == expected
    times = [r.time for r in results]
    assert times[0] == pytest.approx(3.0) and np.allclose(np.diff(times), 0.5)
    assert results[0].prediction is None and results[0].reason.startswith(
        "no speech detected (level")
    assert results[-1].prediction is None
    judged = [r for r in results if r.prediction is not None]
    assert judged and all(r.level_db >= ser.stream.DEFAULT_GATE_DB for r in judged)
    assert len(seen) == len(judged) and seen[0].shape == (40,)
    row = judged[0].as_dict()
    assert row["emotion"] in ser.corpora.EMOTIONS and len(row["probabilities"]) == 8


def test_stream_window_gated_by_the_speech_detector(predictor, files):
    """Noise loud enough for the level gate (-45 dBFS) is not speech to the detector."""
    from ser import vad
    sr = ser.audio.SAMPLE_RATE
    rng = np.random.default_rng(4)
    speech = ser.audio.load_audio(files["ravdess"])
    noise = (rng.standard_normal(4 * sr) * 10 ** (-45 / 20)).astype(np.float32)
    y = np.concatenate([noise, speech, noise])
    regions = vad.speech_regions(y, sr)
    assert regions and regions[0][0] >= 4.0 - 0.1, regions

    def run(detector):
        proc = ser.stream.StreamProcessor(predictor, window=3.0, hop=0.5, detector=detector)
        out = []
        for i in range(0, y.size, 1000):
            out += proc.feed(y[i:i + 1000])
        return out
    energy = run(None)
    gated = run(vad.SpeechDetector(sr=sr))
    assert [r.time for r in gated] == [r.time for r in energy]
    assert energy[0].prediction is not None               # the level gate takes noise
    before = [r for r in gated if r.time < regions[0][0] - 0.1]
    during = [r for r in gated if r.time - 3.0 <= regions[0][0] and r.time >= regions[0][1]]
    assert before and all(r.prediction is None and r.reason ==
                          "no speech detected (speech detector)" for r in before), before
    assert during and all(r.prediction is not None for r in during)
    assert gated[-1].prediction is None                    # the last 3 s: noise only
    with pytest.raises(ValueError, match="detector must run at the stream's rate"):
        ser.stream.StreamProcessor(predictor, detector=vad.SpeechDetector(sr=16000))


# --------------------------------------------------------------------------------------------
# Devices: none, and a real PulseAudio capture device
# --------------------------------------------------------------------------------------------
def _script(args: list[str], env=None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          env=env, timeout=SAFETY, **kw)


def test_no_input_device_is_a_clear_error(tmp_path, model):
    import os
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULSE_")}
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    env["XDG_RUNTIME_DIR"] = str(runtime)                # no sound server there
    r = _script(["--list-devices"], env=env)
    assert "Traceback" not in r.stderr
    if "pulse" in r.stdout or ">" in r.stdout:
        pytest.skip("this machine has a real input device")
    # no input device: a message and exit status 2 (issue 19 item 5: it exited 0)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stderr.strip().splitlines()[-1].startswith("error: no input devices found"), \
        r.stderr
    r = _script(["--mic", "--model", str(model)], env=env)
    assert r.returncode == 2 and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "input device" in lines[0]


def test_portaudio_errors_become_device_errors(monkeypatch):
    # sounddevice raises OSError at import when libportaudio2 is missing: simulate the import.
    import builtins
    real_import = builtins.__import__

    def no_portaudio(name, *a, **kw):
        if name == "sounddevice":
            raise OSError("PortAudio library not found")
        return real_import(name, *a, **kw)
    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_portaudio)
    with pytest.raises(ser.stream.DeviceError, match="libportaudio2"):
        ser.stream.input_device()


def test_list_devices(pulse_server):
    r = _script(["--list-devices"])
    assert r.returncode == 0, r.stderr
    assert any(line.startswith(">") for line in r.stdout.splitlines()), r.stdout
    assert "pulse" in r.stdout or "default" in r.stdout


SAFETY = 600   # seconds: a net for a hung process, never a speed requirement


class _Lines:
    """Read a process's stream line by line in a thread, so the test can wait for a line."""

    def __init__(self, stream):
        self.q: queue.Queue[str] = queue.Queue()
        self.lines: list[str] = []
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream):
        for line in stream:
            self.q.put(line)
        self.q.put(None)

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            line = self.q.get(timeout=max(0.01, deadline - time.monotonic()))
            if line is None:
                raise AssertionError(f"stream ended before {text!r}: {self.lines}")
            self.lines.append(line)
            if text in line:
                return

    def rest(self) -> str:
        while True:
            line = self.q.get(timeout=SAFETY)
            if line is None:
                return "".join(self.lines)
            self.lines.append(line)


def _default_sigint() -> None:
    """Ctrl-C as at a terminal: a test run in the background (``cmd &`` in a script, nohup)
    inherits SIGINT ignored, and Python then installs no KeyboardInterrupt handler."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(args: list[str], stdout: Path) -> tuple[subprocess.Popen, _Lines]:
    with open(stdout, "w") as out:
        p = subprocess.Popen([sys.executable, str(SCRIPT), *args], stdout=out,
                             stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint)
    return p, _Lines(p.stderr)


def test_mic_recording_predicts_like_the_file(pulse_server, model, confident_file, tmp_path):
    source, expected = confident_file
    wav = tmp_path / "source.wav"
    y, sr = sf.read(str(source), dtype="int16")
    sf.write(str(wav), y, sr, subtype="PCM_16")
    duration = len(y) / sr
    rec = tmp_path / "recording.wav"
    proc, err = _start(["--mic", "--json", "--seconds", f"{duration + 3.5:.1f}",
                        "--model", str(model), "--save-recording", str(rec)],
                        tmp_path / "out.jsonl")
    try:
        err.wait_for("recording", timeout=SAFETY)
        player = pulse_server.play(wav)
        assert player.wait(timeout=SAFETY) == 0, player.stderr.read()
        proc.wait(timeout=SAFETY)
    finally:
        proc.kill()
    out = (tmp_path / "out.jsonl").read_text()
    stderr = err.rest()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    row = json.loads(out)
    # the recording is the played file, not silence
    raw, rate = sf.read(str(rec), dtype="float32")
    assert np.abs(raw).max() > 0.05
    assert row["level_dbfs"] > -50
    assert abs(row["speech_seconds"] - ser.audio.trim_silence(ser.audio.load_audio(source)).size
               / ser.audio.SAMPLE_RATE) < 0.5
    assert row["emotion"] == expected.emotion, (row, expected)


def test_stream_with_duration_prints_lines(pulse_server, model, confident_file, tmp_path):
    source, _ = confident_file
    wav = tmp_path / "source.wav"
    y, sr = sf.read(str(source), dtype="int16")
    sf.write(str(wav), y, sr, subtype="PCM_16")
    proc, err = _start(["--stream", "--stream-mode", "window", "--json", "--duration", "4.5",
                        "--window", "3", "--hop", "0.5", "--model", str(model)],
                       tmp_path / "out.jsonl")
    try:
        err.wait_for("listening", timeout=SAFETY)
        player = pulse_server.play(wav)
        proc.wait(timeout=SAFETY)
        player.wait(timeout=SAFETY)
    finally:
        proc.kill()
    out = (tmp_path / "out.jsonl").read_text()
    stderr = err.rest()
    assert proc.returncode == 0, stderr
    rows = _json_lines(out)
    assert [r["time"] for r in rows] == [3.0, 3.5, 4.0, 4.5]
    assert any(r["emotion"] in ser.corpora.EMOTIONS for r in rows), rows
    for r in rows:
        assert r["emotion"] is None or len(r["probabilities"]) == 8
        # not judged: the same key and words as a file's error (issue 19 item 5)
        assert r["emotion"] is not None or r["error"].startswith("no speech detected"), r


def test_stream_text_mode_until_ctrl_c(pulse_server, model, tmp_path):
    out = tmp_path / "out.txt"
    proc, err = _start(["--stream", "--stream-mode", "window", "--window", "1", "--hop", "0.5",
                        "--model", str(model)], out)
    try:
        err.wait_for("listening", timeout=SAFETY)
        # wait on events, not on a clock a loaded machine can miss: two results, then the
        # "stopped" line that Ctrl-C produces (the timeouts are only safety nets)
        deadline = time.monotonic() + SAFETY
        while out.read_text().count("\n") < 2 and proc.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        err.wait_for("stopped", timeout=SAFETY)
        proc.wait(timeout=SAFETY)
    finally:
        proc.kill()
    stderr = err.rest()
    assert proc.returncode == 0, stderr
    assert "stopped" in stderr and "Traceback" not in stderr
    lines = out.read_text().strip().splitlines()
    assert len(lines) >= 2
    assert all("no speech detected" in line for line in lines)   # nothing is playing: silence


def test_stream_utterances_from_the_virtual_microphone(pulse_server, model, tmp_path,
                                                       shared_data):
    """Three real utterances separated by silence and noise, played into the microphone:
    three segments, in order, with the played lengths and spacing; the session's files."""
    from ser import output
    from test_timeline import UTTERANCES, build_recording
    files_ = [shared_data / "ravdess_speech" / u for u in UTTERANCES[:3]]
    y, truth, _ = build_recording(np.random.default_rng(19), files_)
    sr = 22050
    y = np.concatenate([y, np.zeros(int(2.5 * sr), np.float32)])  # the last one ends well
    wav = tmp_path / "three.wav"
    sf.write(str(wav), y, sr, subtype="PCM_16")
    out_dir = tmp_path / "session"
    proc, err = _start(["--stream", "--json", "--model", str(model), "--output-dir",
                        str(out_dir)], tmp_path / "out.jsonl")
    try:
        err.wait_for("listening", timeout=SAFETY)
        player = pulse_server.play(wav)
        assert player.wait(timeout=SAFETY) == 0, player.stderr.read()
        # Ctrl-C: what was already captured is still judged (no clock to miss)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=SAFETY)
    finally:
        proc.kill()
    stderr = err.rest()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr and "stopped" in stderr
    rows = _json_lines((tmp_path / "out.jsonl").read_text())
    print("live segments", [(r["start"], r["end"], r["emotion"]) for r in rows],
          "played", [tuple(round(x, 3) for x in t) for t in truth])
    assert len(rows) == len(truth), (rows, truth)
    assert all(r["source"] == "microphone" and r["emotion"] in ser.corpora.EMOTIONS
               for r in rows), rows
    assert all(a["end"] <= b["start"] for a, b in zip(rows, rows[1:]))      # in order
    # when playing began is unknown: compare lengths and the spacing of the onsets
    for r, t in zip(rows, truth):
        assert abs((r["end"] - r["start"]) - (t[1] - t[0])) < 0.5, (r, t)
    onsets = np.diff([r["start"] for r in rows])
    assert np.allclose(onsets, np.diff([t[0] for t in truth]), atol=0.3), onsets
    assert "session: 3 utterances" in stderr
    # the session's timeline: CSV and picture, the same segments
    names = sorted(p.name for p in out_dir.iterdir())
    assert len(names) == 2 and names[0].startswith("timeline_stream-") and \
        names[0].endswith(".csv") and names[1] == names[0][:-4] + ".png", names
    back = output.read_timeline(out_dir / names[0])
    assert back == [{k: v for k, v in r.items() if k != "source"} for r in rows]


# --------------------------------------------------------------------------------------------
# Hostile and broken inputs (issue 15): unreadable and empty folders, malformed sidecars,
# lossy formats, long recordings
# --------------------------------------------------------------------------------------------
def _summary(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("summary: ")]
    assert len(lines) == 1, err
    return lines[0]


def test_unreadable_folders_and_files_are_named_and_counted(model, files, unprivileged):
    root, prefix, env = unprivileged
    m = root / "model.h5"
    shutil.copy(model, m)
    shutil.copy(ser.checkpoint.sidecar_path(model), ser.checkpoint.sidecar_path(m))
    inp = root / "in"
    (inp / "Actor_02").mkdir(parents=True)
    for name in ("good.flac", "locked.flac", "Actor_02/inside.flac"):
        shutil.copy(files["ravdess"], inp / name)
    (inp / "notes.txt").write_text("not audio\n")
    for p in [inp, *inp.rglob("*"), m, ser.checkpoint.sidecar_path(m)]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    (inp / "locked.flac").chmod(0)
    (inp / "Actor_02").chmod(0)
    r = subprocess.run([*prefix, sys.executable, str(SCRIPT), "--json", "--model", str(m),
                        str(inp)], capture_output=True, text=True, env=env, timeout=SAFETY)
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode == 1, r.stderr
    rows = {row["file"]: row for row in _json_lines(r.stdout)}
    assert set(rows) == {str(inp / "Actor_02"), str(inp / "good.flac"), str(inp / "locked.flac")}
    assert rows[str(inp / "good.flac")].get("emotion") in ser.corpora.EMOTIONS, rows
    locked = rows[str(inp / "locked.flac")]["error"]
    assert locked.startswith(f"{inp / 'locked.flac'}: ") and "permission denied" in locked
    assert "System error" not in locked
    folder = rows[str(inp / "Actor_02")]["error"]
    assert folder == f"{inp / 'Actor_02'}: cannot read the folder (permission denied)"
    assert f"skipped: {inp / 'notes.txt'}: " in r.stderr            # left out, and named
    summary = _summary(r.stderr)
    for part in ("1 of 2 files judged", "1 failed", "1 folder could not be read",
                 "1 file left out"):
        assert part in summary, summary


def test_empty_folder_is_said_to_be_empty(model, files, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    rc = live_predictions.main(["--model", str(model), str(empty)])
    out, err = capsys.readouterr()
    assert rc == 2 and out == ""                     # nothing could be judged
    assert err.strip().splitlines() == [f"error: {empty}: empty folder (no files in it)"]
    # a folder of other files says so and names them; the batch goes on
    other = tmp_path / "other"
    (other / "sub").mkdir(parents=True)
    (other / "readme.txt").write_text("notes\n")
    rc = live_predictions.main(["--json", "--model", str(model), str(empty), str(other),
                  str(files["ravdess"])])
    out, err = capsys.readouterr()
    assert rc == 1
    rows = _json_lines(out)
    assert [r["file"] for r in rows] == [str(empty), str(other), str(files["ravdess"])]
    assert rows[0]["error"] == f"{empty}: empty folder (no files in it)"
    assert rows[1]["error"].startswith(f"{other}: no audio files") and "1 other file" in \
        rows[1]["error"]
    assert rows[2]["emotion"] in ser.corpora.EMOTIONS
    assert f"skipped: {other / 'readme.txt'}: not an audio file" in err
    assert "1 of 1 files judged" in _summary(err)


@pytest.mark.parametrize("name, content, message", [
    ("deep", "[" * 200_000 + "]" * 200_000, "nested too deeply"),
    ("deep_inside", None, "nested too deeply"),
    ("binary", bytes(range(256)) * 8, "not UTF-8 text"),
    ("format_text", {"format": "1"}, "format"),
    ("newer_format", {"format": ser.checkpoint.SIDECAR_FORMAT + 1}, "newer"),
    ("prior_weight", {"adaptation": "speaker", "speaker_prior_weight": "ten"},
     "speaker_prior_weight"),
])
def test_malformed_sidecar_is_refused_naming_it(model, files, tmp_path, capsys, name, content,
                                               message):
    dest = _variant(model, tmp_path, name, {})
    side = ser.checkpoint.sidecar_path(dest)
    if content is None:      # a valid sidecar with one key nested 200,000 levels deep
        text = side.read_text()
        side.write_text(text[:text.rindex("}")] + ', "extra": ' + "[" * 200_000
                        + "]" * 200_000 + "}")
    elif isinstance(content, dict):
        side.write_text(json.dumps({**json.loads(side.read_text()), **content}))
    elif isinstance(content, bytes):
        side.write_bytes(content)
    else:
        side.write_text(content)
    rc = live_predictions.main(["--model", str(dest), str(files["ravdess"])])
    out, err = capsys.readouterr()
    assert rc == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {side}: "), lines
    assert message in lines[0], lines


def _stream_write(path: Path, y: np.ndarray, sr: int, **kw) -> None:
    """Write audio the way a streaming encoder does (to a pipe, never seeking back): an MP3
    then has no header that states its length (no Xing/Info frame), like sox's MP3s."""
    r, w = os.pipe()
    chunks: list[bytes] = []

    def pump():
        while data := os.read(r, 1 << 16):
            chunks.append(data)
    t = threading.Thread(target=pump)
    t.start()
    with sf.SoundFile(w, "w", samplerate=sr, channels=1, **kw) as f:
        f.write(y)
    t.join()
    os.close(r)
    path.write_bytes(b"".join(chunks))


@pytest.fixture(scope="module")
def lossy_folder(files, tmp_path_factory) -> tuple[Path, dict[str, int]]:
    """Real MP3, Opus and Vorbis files of one RAVDESS clip, and each one's expected length."""
    import soxr
    d = tmp_path_factory.mktemp("lossy")
    y, sr = sf.read(str(files["ravdess"]), dtype="float32")
    lead = np.zeros(sr, np.float32)                     # 1 s of digital silence first
    noisy = (np.random.default_rng(1).standard_normal(sr // 2) * 0.2).astype(np.float32)
    mp3 = {"format": "MP3", "subtype": "MPEG_LAYER_III"}
    sf.write(str(d / "tagged.mp3"), y, sr, **mp3)          # with a Xing/LAME length header
    _stream_write(d / "lead_in.mp3", np.concatenate([lead, y]), sr, **mp3)
    _stream_write(d / "noisy_start.mp3", np.concatenate([noisy, y]), sr, **mp3)
    sf.write(str(d / "clip.opus"), soxr.resample(y, sr, 48000), 48000, format="OGG",
             subtype="OPUS")
    sf.write(str(d / "clip.ogg"), y, sr, format="OGG", subtype="VORBIS")
    n = len(y)
    return d, {"tagged.mp3": n, "lead_in.mp3": n + sr, "noisy_start.mp3": n + sr // 2,
               "clip.opus": n, "clip.ogg": n}


def test_lossy_formats_decode_completely(lossy_folder):
    d, expected = lossy_folder
    for name, n in expected.items():
        y = ser.audio.load_audio(d / name)
        # the whole stream: at most the codec's delay and padding (< 0.1 s) more
        assert -0.01 * ser.audio.SAMPLE_RATE <= y.size - n < 0.1 * ser.audio.SAMPLE_RATE, (name, y.size, n)


def test_lossy_formats_are_judged_like_wav(model, lossy_folder, tmp_path, capsys):
    d, expected = lossy_folder
    rc = live_predictions.main(["--json", "--model", str(model), str(d)])
    out, err = capsys.readouterr()
    assert rc == 0, err
    rows = _json_lines(out)
    assert sorted(Path(r["file"]).name for r in rows) == sorted(expected)
    assert all(r["emotion"] in ser.corpora.EMOTIONS for r in rows), rows
    assert "skipped" not in err and "truncated" not in err
    # an --enrol folder of them: every one is used
    speaker = _variant(model, tmp_path, "speaker", {}, adaptation="speaker")
    rc = live_predictions.main(["--model", str(speaker), "--enrol", str(d), str(d / "clip.opus")])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert f"adapted to the speaker from {len(expected)} enrolment recording(s)" in err


def _quiet_noise_wav(path: Path, seconds: float, sr: int = 8000) -> None:
    rng = np.random.default_rng(0)
    with sf.SoundFile(str(path), "w", samplerate=sr, channels=1, subtype="PCM_16") as f:
        for _ in range(int(seconds // 10)):
            f.write((rng.standard_normal(10 * sr) * 0.01).astype(np.float32))


def test_long_recording_is_refused_from_its_header(model, files, tmp_path, capsys):
    long = tmp_path / "long.wav"
    _quiet_noise_wav(long, 700)
    assert sf.info(str(long)).duration == 700
    rc = live_predictions.main(["--json", "--model", str(model), str(long), str(files["ravdess"])])
    out, err = capsys.readouterr()
    assert rc == 1, err
    rows = _json_lines(out)
    assert set(rows[0]) == {"file", "error"} and rows[0]["file"] == str(long)
    msg = rows[0]["error"]
    assert msg.startswith(f"{long}: 700 s long, more than the 600 s limit"), msg
    assert "--max-seconds" in msg and "use --timeline" in msg     # the tool for long files
    assert rows[1]["emotion"] in ser.corpora.EMOTIONS
    # the limit is the user's to set: a 3.4 s clip is refused under --max-seconds 2
    rc = live_predictions.main(["--model", str(model), "--max-seconds", "2", str(files["ravdess"])])
    out, err = capsys.readouterr()
    assert rc == 1 and out == ""
    assert err.strip().splitlines()[0].startswith(
        f"error: {files['ravdess']}: 3 s long, more than the 2 s limit")
    with pytest.raises(SystemExit) as e:
        live_predictions.main(["--model", str(model), "--max-seconds", "0", str(files["ravdess"])])
    assert e.value.code == 2


def test_length_limit_of_an_mp3_without_length_header(model, lossy_folder, capsys):
    """Such an MP3's header length is a guess (lead_in.mp3: 17 s for 4.4 s of audio): the
    limit is then enforced while decoding, never by the guess."""
    d, _ = lossy_folder
    lead_in = d / "lead_in.mp3"
    assert sf.info(str(lead_in)).duration > 10          # libsndfile's estimate
    rc = live_predictions.main(["--json", "--model", str(model), "--max-seconds", "10", str(lead_in)])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert _json_lines(out)[0]["emotion"] in ser.corpora.EMOTIONS
    rc = live_predictions.main(["--json", "--model", str(model), "--max-seconds", "2", str(lead_in)])
    out, err = capsys.readouterr()
    assert rc == 1
    assert _json_lines(out)[0]["error"].startswith(f"{lead_in}: longer than the 2 s limit")


# --------------------------------------------------------------------------------------------
# The shipped model, once it exists
# --------------------------------------------------------------------------------------------
@pytest.mark.skipif(not ser.paths.DEFAULT_MODEL.exists(), reason=f"{ser.paths.DEFAULT_MODEL} not trained yet")
def test_shipped_model(files, capsys, tmp_path, monkeypatch):
    """The default is the recommended model (not the original's CNN), found from any folder."""
    monkeypatch.chdir(tmp_path)
    assert ser.paths.DEFAULT_MODEL == ser.paths.RECOMMENDED_MODEL != ser.paths.CNN_MODEL
    rc = live_predictions.main(["--json", str(files["ravdess"]), str(files["tess"])])
    rows = _json_lines(capsys.readouterr().out)
    assert rc == 0 and len(rows) == 2
    assert all(r["emotion"] in ser.corpora.EMOTIONS for r in rows)
    assert ser.predict.Predictor().feature == "stats_whisper"
    # the original's reproduction stays one --model away
    cnn = ser.paths.CNN_MODEL.relative_to(ser.paths.ROOT)
    rc = live_predictions.main(["--json", "--model", str(ser.paths.ROOT / cnn),
                                str(files["ravdess"])])
    assert rc == 0 and _json_lines(capsys.readouterr().out)[0]["emotion"] in ser.corpora.EMOTIONS
