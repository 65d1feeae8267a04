"""ser.export: Keras -> TFLite flatbuffer at training time, run by LiteRT alone at prediction.

Real models only: a tiny Keras model built here and the shipped models (their outputs on real
features of ../shared/data), no mocks. The runner's process must never import TensorFlow.
"""
import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from ser import export

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted(p for p in (ROOT / "models").glob("*.h5") if p.with_suffix(".json").exists())
ATOL = 1e-5


def _project():
    """The project's model loader and feature path (ser_common before the package refactor,
    the ser package after it)."""
    try:
        from ser import audio, checkpoint, features
        return (checkpoint.load_model, checkpoint.model_input, audio.load_audio,
                features.extract_features)
    except ImportError:
        import ser_common as sc
        return sc.load_model, sc.model_input, sc.load_audio, sc.extract_features


def _sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _keras():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    return keras


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A small real Keras model (conv + dense, seeded weights), exported once."""
    keras = _keras()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((40, 1)),
                              keras.layers.Conv1D(8, 5, activation="relu"),
                              keras.layers.Flatten(),
                              keras.layers.Dense(8, activation="softmax")])
    folder = tmp_path_factory.mktemp("tiny")
    entry = export.export_tflite(model, folder / "tiny.tflite")
    return model, folder / "tiny.tflite", entry


def test_tiny_export_writes_the_flatbuffer_and_its_sidecar_entry(tiny):
    model, path, entry = tiny
    blob = path.read_bytes()
    assert entry["file"] == "tiny.tflite"
    assert entry["format"] == "tflite"
    assert entry["sha256"] == hashlib.sha256(blob).hexdigest()
    assert entry["bytes"] == len(blob)
    assert entry["input_shape"] == [40, 1] and entry["output_shape"] == [8]
    assert {"keras", "ai-edge-litert"} <= set(entry["converter"])
    json.dumps(entry)                                   # goes into the JSON sidecar as is
    assert [p.name for p in path.parent.iterdir()] == ["tiny.tflite"]   # no temporary left


def test_tiny_runner_matches_keras_for_any_batch(tiny):
    model, path, entry = tiny
    runner = export.LiteRTModel(path, sha256=entry["sha256"])
    assert runner.input_shape == (40, 1) and runner.output_shape == (8,)
    X = np.random.default_rng(1).standard_normal((7, 40, 1)).astype(np.float32)
    want = model.predict(X, verbose=0)
    for n in (7, 1, 3, 7):                              # the interpreter is resized each time
        got = runner(X[:n])
        assert got.shape == (n, 8) and got.dtype == np.float32
        np.testing.assert_allclose(got, want[:n], atol=ATOL, rtol=0)
    assert runner(X[:0]).shape == (0, 8)
    with pytest.raises(ValueError, match=r"tiny\.tflite: input of shape \(2, 39, 1\)"):
        runner(X[:2, :39])


def test_export_of_the_same_model_is_byte_identical(tiny, tmp_path):
    model, path, entry = tiny
    again = export.export_tflite(model, tmp_path / "again.tflite")
    assert again["sha256"] == entry["sha256"]
    # the canonical export: from the saved H5 (names as saved, not the process's history)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save(str(tmp_path / "tiny.h5"))
    a = export.export_from_h5(tmp_path / "tiny.h5")
    b = export.export_from_h5(tmp_path / "tiny.h5", tmp_path / "b.tflite")
    assert a["file"] == "tiny.tflite" and (tmp_path / "tiny.tflite").exists()
    assert a["sha256"] == b["sha256"]


def test_wrong_checksum_missing_file_and_damaged_file_are_refused(tiny, tmp_path):
    model, path, entry = tiny
    with pytest.raises(export.ExportError) as e:
        export.LiteRTModel(path, sha256="0" * 64)
    msg = str(e.value)
    assert msg.startswith(f"{path}: checksum mismatch") and "\n" not in msg
    damaged = tmp_path / "damaged.tflite"
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    damaged.write_bytes(bytes(blob))
    with pytest.raises(export.ExportError, match=f"^{damaged}: checksum mismatch"):
        export.LiteRTModel(damaged, sha256=entry["sha256"])
    with pytest.raises(export.ExportError, match=f"^{tmp_path / 'none.tflite'}: exported "
                                                 f"model not found"):
        export.LiteRTModel(tmp_path / "none.tflite", sha256=entry["sha256"])
    not_tflite = tmp_path / "text.tflite"
    not_tflite.write_bytes(b"not a flatbuffer")
    with pytest.raises(export.ExportError, match=f"^{not_tflite}: not a usable TFLite model"):
        export.LiteRTModel(not_tflite,
                           sha256=hashlib.sha256(b"not a flatbuffer").hexdigest())


def _saved(model, folder: Path) -> tuple[Path, dict]:
    """``model`` saved as ``folder/tiny.h5`` with its export made here (so recorded as this
    installation's conversion of that H5)."""
    import warnings

    from ser import checkpoint
    folder.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save(str(folder / "tiny.h5"))
    return folder / "tiny.h5", checkpoint.export_entry(folder / "tiny.h5")


def test_load_exported_takes_only_a_file_beside_the_model(tiny, tmp_path):
    model = tiny[0]
    h5, entry = _saved(model, tmp_path / "m")
    path = h5.with_suffix(".tflite")
    meta = {"input_shape": [40, 1], "litert": entry}
    assert export.load_exported(h5, meta).input_shape == (40, 1)
    assert export.load_exported(h5, {"input_shape": [40, 1]}) is None
    with pytest.raises(export.ExportError, match="litert.file must be a file name beside"):
        export.load_exported(h5, {"input_shape": [40, 1],
                                  "litert": {**entry, "file": "../tiny.tflite"}})
    with pytest.raises(export.ExportError, match=r"input \[40, 1\] does not match the "
                                                 r"sidecar's \[20, 2\]"):
        export.load_exported(h5, {"input_shape": [20, 2], "litert": entry})
    with pytest.raises(export.ExportMissing, match=f"^{tmp_path / 'gone.tflite'}: exported "
                                                   f"model not found"):
        export.load_exported(tmp_path / "m.h5", {"input_shape": [40, 1],
                                                 "litert": {**entry, "file": "gone.tflite"}})
    # the H5 it was made from, recorded: a replaced H5 makes the export stale
    h5.write_bytes(b"other weights")
    with pytest.raises(export.ExportError) as e:
        export.load_exported(h5, meta)
    msg = str(e.value)
    assert msg.startswith(f"{path}: stale export") and str(h5) in msg and "\n" not in msg
    h5.unlink()


def test_runner_process_imports_no_tensorflow(tiny):
    """Importing ser.export and running a flatbuffer loads neither TensorFlow nor Keras, and
    prints nothing (LiteRT's XNNPACK line on stderr is silenced)."""
    model, path, entry = tiny
    code = textwrap.dedent(f"""
        import json, sys
        import numpy as np
        from ser.export import LiteRTModel
        m = LiteRTModel({str(path)!r}, sha256={entry['sha256']!r})
        p = m(np.zeros((2, 40, 1), np.float32))
        heavy = sorted({{k.split('.')[0] for k in sys.modules}}
                       & {{'tensorflow', 'keras', 'tf_keras', 'tensorboard'}})
        print(json.dumps({{"heavy": heavy, "shape": list(p.shape)}}))
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out == {"heavy": [], "shape": [2, 8]}
    assert r.stderr == ""


@pytest.mark.parametrize("h5", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_model_export_matches_keras_on_real_features(h5, tmp_path, shared_data):
    load_model, model_input, load_audio, extract_features = _project()
    model, meta = load_model(h5)
    entry = export.export_from_h5(h5, tmp_path / f"{h5.stem}.tflite")
    assert entry["input_shape"] == list(meta["input_shape"]) and entry["output_shape"] == [8]
    # the shipped export (python -m ser.cli.export) is this one, made from this H5
    shipped = meta.get(export.SIDECAR_KEY)
    assert shipped is not None, f"{h5}: no export in its sidecar (python -m ser.cli.export {h5})"
    assert shipped["sha256"] == entry["sha256"] == _sha(export.tflite_path(h5))
    assert shipped["h5_sha256"] == _sha(h5) and shipped["file"] == f"{h5.stem}.tflite"
    again = export.export_tflite(model, tmp_path / "again.tflite")
    assert again["sha256"] == entry["sha256"]         # the loaded model = its H5's export
    runner = export.LiteRTModel(tmp_path / entry["file"], sha256=entry["sha256"])
    files = (sorted((shared_data / "ravdess_speech" / "Actor_02").glob("*.flac"))[::10]
             + sorted(shared_data.glob("tess/*/*.flac"))[::700]
             + sorted(shared_data.glob("originals/ravdess_speech/*/*.wav")))
    assert len(files) >= 8
    feature = meta["feature"]
    V = np.stack([extract_features(load_audio(f), sets=(feature,))[feature] for f in files])
    X = np.ascontiguousarray(model_input(V, meta), dtype=np.float32)
    want = model.predict(X, verbose=0)
    got = runner(X)
    np.testing.assert_allclose(got, want, atol=ATOL, rtol=0)
    rows = np.concatenate([runner(X[i:i + 1]) for i in range(len(X))])
    np.testing.assert_allclose(rows, want, atol=ATOL, rtol=0)
