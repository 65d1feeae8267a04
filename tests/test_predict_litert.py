"""A saved model's LiteRT export (issue 20): written by save_model, served by the Predictor
without TensorFlow, refused when it does not belong to its H5.

Real models only: the tiny model of tests/tiny_model.py (trained here on real files), an
untrained GRU built here (LiteRT cannot convert it), and the shipped models on real files of
../shared/data. The TensorFlow-free prediction runs in a child process, whose ``sys.modules``
is what is checked.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

import live_predictions
import ser.checkpoint
import ser.export
import ser.predict
from tiny_model import build_tiny_model

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "models" / "emotion_mlp_stats_whisper.h5"
ATOL = 1e-5
HEAVY = ("tensorflow", "keras", "tf_keras", "tensorboard")


def _sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _copy(model: Path, dest_dir: Path, *, suffixes=(".h5", ".json", ".tflite")) -> Path:
    dest_dir.mkdir(parents=True, exist_ok=True)
    for s in suffixes:
        shutil.copy2(model.with_suffix(s), dest_dir / f"{model.stem}{s}")
    return dest_dir / model.name


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, shared_data) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny"), shared_data)


@pytest.fixture(scope="module")
def clips(shared_data) -> list[Path]:
    d = shared_data
    return [d / "ravdess_speech/Actor_05/03-01-05-02-01-01-05.flac",
            d / "tess/YAF_happy/YAF_back_happy.flac",
            d / "originals/ravdess_speech/Actor_01/03-01-02-01-01-02-01.wav",
            d / "ravdess_song/Actor_02/03-02-03-02-01-01-02.flac"]


def _one_line_model_error(path: Path, **kw) -> str:
    with pytest.raises(ser.predict.ModelError) as e:
        ser.predict.Predictor(path, **kw)
    msg = str(e.value)
    assert "\n" not in msg, msg
    return msg


# --------------------------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------------------------
def test_save_model_writes_the_export_and_its_sidecar_entry(tiny):
    lite = tiny.with_suffix(".tflite")
    meta = ser.checkpoint.read_sidecar(tiny)
    entry = meta["litert"]
    assert lite.is_file() and entry["file"] == lite.name and entry["format"] == "tflite"
    assert entry["sha256"] == _sha(lite) and entry["bytes"] == lite.stat().st_size
    assert entry["h5_sha256"] == _sha(tiny)
    assert entry["input_shape"] == meta["input_shape"] == [40, 1]
    assert entry["output_shape"] == [8]
    # the export is the saved H5's (deterministic), not the in-memory model's
    again = ser.export.export_from_h5(tiny, tiny.parent / "again" / "x.tflite")
    assert again["sha256"] == entry["sha256"]
    assert sorted(p.name for p in tiny.parent.iterdir()) == ["again", "tiny.h5", "tiny.json",
                                                            "tiny.tflite"]   # no temporary


def test_litert_predictions_equal_keras(tiny, clips):
    lite = ser.predict.Predictor(tiny)
    assert lite.backend == "litert" and lite._model is None      # Keras not loaded
    assert ser.predict.Predictor(tiny, backend="litert").backend == "litert"
    tf = ser.predict.Predictor(tiny, backend="tf")
    assert tf.backend == "tf.function"
    X = np.stack([lite.features(lite.load(f)) for f in clips])
    Xin = np.ascontiguousarray(ser.checkpoint.model_input(X, lite.meta), dtype=np.float32)
    want = tf.model.predict(Xin, verbose=0)
    np.testing.assert_allclose(lite._infer(Xin), want, atol=ATOL, rtol=0)
    for f, row in zip(clips, want):
        p = lite.predict_file(f)
        np.testing.assert_allclose([p.probabilities[k] for k in lite.labels], row,
                                   atol=ATOL, rtol=0)
        assert p.probabilities == pytest.approx(tf.predict_file(f).probabilities, abs=ATOL)
    # the Keras model is still there for code that needs it, loaded on first use
    m = lite.model
    assert lite._model is m and m.input_shape[1:] == (40, 1)
    np.testing.assert_allclose(m.predict(Xin, verbose=0), want, atol=1e-6, rtol=0)


def test_replacing_a_model_keeps_the_previous_export(tiny, tmp_path):
    path = _copy(tiny, tmp_path / "m")
    before = {s: _sha(path.with_suffix(s)) for s in (".h5", ".json", ".tflite")}
    model = ser.predict.Predictor(tiny, backend="tf").model
    model.set_weights([w * 0.5 for w in model.get_weights()])      # other weights
    meta = json.loads(path.with_suffix(".json").read_text())
    kept = ser.checkpoint.save_model(model, path, meta)
    assert kept is not None
    for s, digest in before.items():
        assert _sha(kept.with_suffix(s)) == digest, s                # the old trio, complete
    new = ser.checkpoint.read_sidecar(path)["litert"]
    assert new["sha256"] == _sha(path.with_suffix(".tflite")) != before[".tflite"]
    assert new["h5_sha256"] == _sha(path)
    assert ser.predict.Predictor(path).backend == "litert"
    assert not list(path.parent.glob(".*.tmp*"))


def test_a_model_litert_cannot_convert_is_saved_without_an_export(tiny, tmp_path, capfd):
    import keras
    keras.utils.set_random_seed(0)
    gru = keras.Sequential([keras.Input((40, 1)), keras.layers.GRU(4),
                            keras.layers.Dense(8, activation="softmax")])   # untrained
    meta = json.loads(tiny.with_suffix(".json").read_text())         # (has a litert entry)
    dest = tmp_path / "gru.h5"
    (tmp_path / "gru.tflite").write_bytes(b"an older save's export")
    capfd.readouterr()
    ser.checkpoint.save_model(gru, dest, meta)
    err = capfd.readouterr().err
    notes = [line for line in err.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and notes[0].startswith(f"note: {dest}: saved without a LiteRT "
                                                   f"export ("), err
    side = ser.checkpoint.read_sidecar(dest)
    assert "litert" not in side
    assert not (tmp_path / "gru.tflite").exists()                     # no stale export left
    p = ser.predict.Predictor(dest)
    assert p.backend in ("tf.function", "predict_on_batch")
    assert not list(tmp_path.glob(".*.tmp*"))


def test_add_export_to_a_saved_model(tiny, tmp_path):
    model = ser.predict.Predictor(tiny, backend="tf").model
    meta = json.loads(tiny.with_suffix(".json").read_text())
    path = tmp_path / "plain.h5"
    ser.checkpoint.save_model(model, path, meta, export=False)
    assert "litert" not in json.loads(path.with_suffix(".json").read_text())
    assert not path.with_suffix(".tflite").exists()
    h5 = _sha(path)
    before = json.loads(path.with_suffix(".json").read_text())
    entry = ser.checkpoint.add_export(path)
    after = json.loads(path.with_suffix(".json").read_text())
    assert _sha(path) == h5                                          # the H5 only read
    assert after == {**before, "litert": entry} and list(after)[-1] == "litert"
    assert entry["sha256"] == _sha(path.with_suffix(".tflite"))
    assert entry["sha256"] == ser.checkpoint.read_sidecar(tiny)["litert"]["sha256"]  # same H5 config
    assert ser.predict.Predictor(path).backend == "litert"
    # the command line: python -m ser.cli.export, again the same bytes
    r = subprocess.run([sys.executable, "-m", "ser.cli.export", str(path)], cwd=ROOT,
                       capture_output=True, text=True, timeout=300,
                       env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert r.returncode == 0 and r.stdout.startswith(f"{path}: plain.tflite"), r.stderr
    assert json.loads(path.with_suffix(".json").read_text()) == after


# --------------------------------------------------------------------------------------------
# Refusals: the files do not belong together
# --------------------------------------------------------------------------------------------
def test_tampered_export_is_refused_naming_it(tiny, tmp_path, clips, capsys):
    path = _copy(tiny, tmp_path / "tampered")
    lite = path.with_suffix(".tflite")
    blob = bytearray(lite.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    lite.write_bytes(bytes(blob))
    msg = _one_line_model_error(path)
    assert msg.startswith(f"{lite}: checksum mismatch"), msg
    assert _one_line_model_error(path, backend="litert") == msg
    rc = live_predictions.main(["--json", "--backend", "litert", "--model", str(path),
                                str(clips[0])])
    out, err = capsys.readouterr()
    assert rc == 2 and out == "" and err.splitlines() == [f"error: {msg}"]
    # --backend tf does not use the export: the H5 and its sidecar still serve
    assert ser.predict.Predictor(path, backend="tf").backend == "tf.function"


def test_stale_export_of_a_replaced_h5_is_refused(tiny, tmp_path):
    path = _copy(tiny, tmp_path / "stale")
    model = ser.predict.Predictor(tiny, backend="tf").model
    model.set_weights([w + 0.25 for w in model.get_weights()])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save(str(path))                 # the H5 replaced by hand, no new export
    msg = _one_line_model_error(path)
    lite = path.with_suffix(".tflite")
    assert msg.startswith(f"{lite}: stale export") and str(path) in msg, msg
    assert "python -m ser.cli.export" in msg


def test_an_export_left_behind_is_not_needed(tiny, tmp_path):
    """Only the H5 and its sidecar copied (they are the source): TensorFlow serves it."""
    path = _copy(tiny, tmp_path / "bare", suffixes=(".h5", ".json"))
    assert ser.predict.Predictor(path).backend in ("litert", "tf.function")
    assert ser.predict.Predictor(path)._model is not None            # the Keras path


def test_export_of_another_input_is_refused(tiny, tmp_path):
    path = _copy(tiny, tmp_path / "shape")
    side = path.with_suffix(".json")
    meta = json.loads(side.read_text())
    meta["input_shape"] = [4, 10]
    side.write_text(json.dumps(meta))
    msg = _one_line_model_error(path)
    assert msg.startswith(f"{path}: model input (40, 1) does not match its sidecar's "
                          f"(4, 10)"), msg


@pytest.mark.parametrize("change, problem", [
    ({"sha256": "abc"}, "litert.sha256 is a string \"abc\", expected 64 lowercase hex digits"),
    ({"file": "../tiny.tflite"}, "litert.file is a string \"../tiny.tflite\", expected a file "
                                 "name beside the model"),
    ({"file": None}, "litert.file is null"),
    ({"input_shape": [40, "1"]}, "litert.input_shape is a list, expected a list of positive"),
    ({"h5_sha256": None}, "litert.h5_sha256 is null"),
    ({"format": "onnx"}, "litert.format is a string \"onnx\", expected \"tflite\""),
    ("no h5_sha256", "litert lacks h5_sha256"),
    ("not an object", "litert is a list, expected null or an object"),
])
def test_malformed_export_entry_is_refused_naming_the_sidecar(tiny, tmp_path, change, problem):
    path = _copy(tiny, tmp_path / "entry")
    side = path.with_suffix(".json")
    meta = json.loads(side.read_text())
    if change == "no h5_sha256":
        del meta["litert"]["h5_sha256"]
    elif change == "not an object":
        meta["litert"] = [1]
    else:
        meta["litert"].update(change)
    side.write_text(json.dumps(meta))
    for backend in ("auto", "tf"):
        msg = _one_line_model_error(path, backend=backend)
        assert msg.startswith(f"{side}: malformed sidecar: {problem}"), msg
    meta["litert"] = None                         # null: no export
    side.write_text(json.dumps(meta))
    assert ser.predict.Predictor(path).backend in ("litert", "tf.function")


# --------------------------------------------------------------------------------------------
# A shipped model, in a fresh process: no TensorFlow, no Keras
# --------------------------------------------------------------------------------------------
_CHILD = textwrap.dedent("""
    import json, sys
    from ser.predict import Predictor
    p = Predictor(sys.argv[1])
    r = p.predict_file(sys.argv[2])
    heavy = sorted({k.split('.')[0] for k in sys.modules} & set(sys.argv[3].split(',')))
    print(json.dumps({"backend": p.backend, "heavy": heavy, "emotion": r.emotion,
                      "probabilities": r.probabilities}))
""")


@pytest.mark.skipif(not SHIPPED.exists(), reason=f"{SHIPPED} not trained yet")
def test_shipped_model_predicts_without_tensorflow(shared_data):
    clip = shared_data / "originals/ravdess_speech/Actor_05/03-01-05-02-01-01-05.wav"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    r = subprocess.run([sys.executable, "-c", _CHILD, str(SHIPPED), str(clip), ",".join(HEAVY)],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["backend"] == "litert" and out["heavy"] == [], out
    assert r.stderr == ""
    # the same judgement as the Keras path in this process
    want = ser.predict.Predictor(SHIPPED, backend="tf").predict_file(clip)
    assert out["emotion"] == want.emotion
    assert out["probabilities"] == pytest.approx(want.probabilities, abs=ATOL)


@pytest.mark.skipif(not SHIPPED.exists(), reason=f"{SHIPPED} not trained yet")
def test_cli_with_the_export_imports_no_tensorflow(shared_data):
    """live_predictions.py --json on one file, run through runpy in a child process."""
    clip = shared_data / "ravdess_speech/Actor_05/03-01-05-02-01-01-05.flac"
    code = textwrap.dedent(f"""
        import atexit, json, os, runpy, sys
        def dump():
            heavy = sorted({{k.split('.')[0] for k in sys.modules}} & {set(HEAVY)!r})
            os.write(2, ("HEAVY " + json.dumps(heavy) + "\\n").encode())
        atexit.register(dump)
        sys.argv = ["live_predictions.py", "--json", "--backend", "litert",
                    "--model", {str(SHIPPED)!r}, {str(clip)!r}]
        runpy.run_path({str(ROOT / "live_predictions.py")!r}, run_name="__main__")
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    row = json.loads(r.stdout.splitlines()[0])
    assert row["file"] == str(clip) and row["emotion"] in ser.predict.EMOTIONS
    assert "HEAVY []" in r.stderr.splitlines(), r.stderr
