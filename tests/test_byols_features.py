"""The BYOL-S encoder in the pipeline: the ``byols`` and ``stats_byols`` feature sets, the
weights converted once into ``models/`` (ser/encoder.py), and models that need them.

Real audio from ../shared/data (skipped where absent), the real checkpoint from
../shared/models (skipped where absent), small inputs.
"""
from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import joblib
import numpy as np
import pytest

import live_predictions
import neural_network
import ser.audio
import ser.augment
import ser.checkpoint
import ser.console
import ser.corpora
import ser.extract
import ser.features
import ser.paths
import ser.predict
import ser.store
from ser import byols, encoder
from ser.cli import encoder as encoder_cli
from conftest import SHARED_DATA, needs_data

MODELS = ser.paths.ROOT.parent / "shared" / "models"
CKPT = MODELS / "byols_default512.pth"
needs_ckpt = pytest.mark.skipif(not CKPT.is_file(), reason=f"BYOL-S checkpoint not in {MODELS}")


@pytest.fixture(scope="session")
def weights(tmp_path_factory) -> Path:
    """The encoder's weights: models/byols_default512.npz, or converted here from the
    checkpoint when models/ has none (then SER_BYOLS_WEIGHTS points at the copy)."""
    path = encoder.weights_path()
    if path.is_file() and encoder.sha256_of(path) == encoder.NPZ_SHA256:
        return path
    if not CKPT.is_file():
        pytest.skip(f"no {path} and no checkpoint in {MODELS} to convert")
    out = encoder.convert(tmp_path_factory.mktemp("weights"), checkpoint=CKPT)
    mp = pytest.MonkeyPatch()
    mp.setenv(encoder.ENV_WEIGHTS, str(out))
    return out


def _ravdess(actor: int, code: int, *, song: bool = False) -> Path:
    kind, vc = ("ravdess_song", 2) if song else ("ravdess_speech", 1)
    intensity = 1 if code == 1 else 2
    return SHARED_DATA / kind / f"Actor_{actor:02d}" / \
        f"03-{vc:02d}-{code:02d}-{intensity:02d}-01-01-{actor:02d}.flac"


TESS_FOLDERS = {1: "neutral", 3: "happy", 4: "sad", 5: "angry", 6: "fear", 7: "disgust",
                8: "pleasant_surprise"}


def _tess(speaker: str, code: int) -> Path:
    folder = SHARED_DATA / "tess"
    name = TESS_FOLDERS[code]
    cands = [d for d in folder.iterdir() if d.name.lower() == f"{speaker}_{name}".lower()
             or (code == 8 and d.name.lower().startswith(f"{speaker.lower()}_pleasant"))]
    return sorted(cands[0].glob("*.flac"))[0]


def corpus(root: Path, *, actors=(1, 2, 3), tess: bool = True, song: bool = True) -> Path:
    """A features folder of real files: one per emotion for each RAVDESS speech actor in
    ``actors``, one per TESS emotion per speaker (renamed like tess_pipeline.py), and two song
    files."""
    for a in actors:
        for code in range(1, 9):
            src = _ravdess(a, code)
            dest = root / f"Actor_{a:02d}" / src.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dest)
    if song:
        for code in (3, 5):
            src = _ravdess(2, code, song=True)
            shutil.copy(src, root / "Actor_02" / src.name)
    if tess:
        for actor, speaker in ((25, "YAF"), (26, "OAF")):
            d = root / f"Actor_{actor}"
            d.mkdir(parents=True, exist_ok=True)
            for i, code in enumerate(TESS_FOLDERS):
                st, rep = ser.corpora.tess_word_code(i)
                shutil.copy(_tess(speaker, code),
                            d / f"03-01-{code:02d}-01-{st:02d}-{rep:02d}-{actor}.flac")
    return root


# --------------------------------------------------------------------------------------------
# The weights: converted once, numpy only, checked
# --------------------------------------------------------------------------------------------
@needs_ckpt
@needs_data
def test_conversion_round_trip_equals_the_checkpoints_encoder(tmp_path, monkeypatch):
    monkeypatch.setenv(byols.ENV_PATH, str(CKPT))        # fetch_checkpoint: the local copy
    assert encoder_cli.main(["--out", str(tmp_path), "--force"]) == 0
    npz = tmp_path / encoder.NPZ_NAME
    assert encoder.sha256_of(npz) == encoder.NPZ_SHA256  # byte for byte the same every time
    assert 2_300_000 < npz.stat().st_size < 2_500_000
    with zipfile.ZipFile(npz) as z:                      # arrays only, nothing to unpickle
        assert sorted(z.namelist()) == sorted(f"{k}.npy" for k in byols.EXPECTED_SHAPES)
    with np.load(npz, allow_pickle=False) as z:
        loaded = {k: z[k] for k in z.files}
    state = byols.read_state_dict(CKPT)
    for k in byols.EXPECTED_SHAPES:
        np.testing.assert_array_equal(loaded[k], state[k])
        assert loaded[k].dtype == np.float32
    # the encoder of the .npz computes what the checkpoint's computes, on a real utterance
    y = ser.audio.resample(ser.audio.load_audio(_ravdess(1, 5)), ser.audio.SAMPLE_RATE, sr=byols.SAMPLE_RATE)
    x = byols.normalise(byols.log_mel(y))
    np.testing.assert_array_equal(encoder.load_encoder(npz).frames(x),
                                  byols.Encoder(state).frames(x))
    text = (tmp_path / encoder.LICENSE_NAME).read_text()
    for must in ("MIT License", "Copyright 2021 Neil Scheidwasser-Clow", byols.SHA256,
                 encoder.SOURCE_COMMIT, byols.URL, "SERAB: A multi-lingual benchmark",
                 encoder.NPZ_SHA256):
        assert must in text, must
    # up to date: a second run converts nothing
    mtime = npz.stat().st_mtime_ns
    assert encoder_cli.main(["--out", str(tmp_path)]) == 0
    assert npz.stat().st_mtime_ns == mtime


def test_weights_with_another_checksum_or_missing_are_refused(tmp_path, weights):
    bad = tmp_path / encoder.NPZ_NAME
    data = bytearray(weights.read_bytes())
    data[-100] ^= 1
    bad.write_bytes(bytes(data))
    with pytest.raises(encoder.EncoderError, match=f"{bad}: sha256 .* is not the BYOL-S"):
        encoder.read_weights(bad)
    with pytest.raises(encoder.EncoderError, match="weights not found"):
        encoder.load_encoder(tmp_path / "none.npz")


# --------------------------------------------------------------------------------------------
# The feature sets
# --------------------------------------------------------------------------------------------
def test_feature_table_and_params():
    assert ser.features.COMPOSITE_SETS == {"combined": ("mfcc", "chroma", "contrast"),
                                "stats_byols": ("stats", "byols"),
                                "stats_whisper": ("stats", "whisper"),
                                "stats_byols_whisper": ("stats", "byols", "whisper")}
    assert ser.features.FEATURE_DIMS["stats_whisper"] == 1015 + 768
    w = ser.features.feature_params("whisper")        # the encoder and the front end it hears
    assert w["encoder"] == "whisper_tiny_en" and w["pooling"] == "mean_std"
    assert w["speech_frontend"] == ser.features.feature_params("stats")["speech_frontend"]
    assert ser.features.needs_encoder("stats_whisper") and ser.features.needs_encoder("whisper")
    assert ser.features.FEATURE_DIMS["byols"] == 1024 and ser.features.FEATURE_DIMS["stats_byols"] == 1015 + 1024
    # combined: exactly what it was before the table (sidecars and caches keep matching)
    assert ser.features.FEATURE_DIMS["combined"] == 59
    assert ser.features.feature_params("combined") == {
        "feature": "combined", "dim": 59, "version": 2, "sample_rate": 22050, "n_fft": 2048,
        "hop_length": 512, "n_mfcc": 40, "n_chroma": 12, "n_contrast_bands": 6,
        "resampler": "soxr_hq", "pooling": "mean"}
    assert list(ser.features.feature_params("combined")) == ["feature", "dim", "version", "sample_rate",
                                                  "n_fft", "hop_length", "n_mfcc", "n_chroma",
                                                  "n_contrast_bands", "resampler", "pooling"]
    p = ser.features.feature_params("byols")
    assert p["encoder"] == "byols_default512" and p["encoder_sha256"] == encoder.NPZ_SHA256
    assert p["checkpoint_sha256"] == byols.SHA256 and p["pooling"] == encoder.POOLING
    assert p["sample_rate"] == 16000 and p["version"] == ser.features.FEATURE_VERSIONS["byols"]
    q = ser.features.feature_params("stats_byols")
    assert q["parts"] == {"stats": ser.features.feature_params("stats"), "byols": p}
    assert encoder.encoders_named(q) == [p]
    assert ser.features.needs_encoder("stats_byols") and not ser.features.needs_encoder("combined")


def test_byols_is_an_encoder_of_the_protocol(weights):
    """BYOL-S behind ser.encoders.Encoder: its frames pooled are the byols set's values, its
    parameters and the pooling are the set's, a missing file is its WeightsError."""
    from ser.encoders import Encoder, WeightsError, embed
    from ser.encoders.byols import BYOLSEncoder
    enc = BYOLSEncoder()
    assert isinstance(enc, Encoder) and (enc.dim, enc.sample_rate) == (512, 16000)
    enc.check_weights()
    y = (0.1 * np.sin(2 * np.pi * 220 * np.arange(22050) / 22050)).astype(np.float32)
    frames = enc.frames(y, sr=22050)
    assert frames.shape[1] == 512 and frames.dtype == np.float32 and np.all(frames >= 0)
    np.testing.assert_array_equal(embed(enc, y, sr=22050, method=encoder.POOLING),
                                  ser.features.extract_features(y, sets=("byols",))["byols"])
    assert {**enc.params(), "pooling": encoder.POOLING, "feature": "byols", "dim": 1024,
            "version": ser.features.FEATURE_VERSIONS["byols"]} == \
        ser.features.feature_params("byols")
    with pytest.raises(WeightsError, match="weights not found"):
        BYOLSEncoder(path=Path("/nonexistent/byols.npz")).check_weights()


@needs_data
def test_byols_vectors_of_real_files(weights):
    for path in (_ravdess(1, 5), _ravdess(2, 3, song=True), _tess("YAF", 3)):
        y = ser.audio.load_audio(path)
        f = ser.features.extract_features(y, sets=("byols", "stats", "stats_byols"))
        v = f["byols"]
        assert v.shape == (1024,) and v.dtype == np.float32 and np.all(np.isfinite(v))
        if CKPT.is_file():   # the same as the encoder read from the authors' checkpoint
            ref = byols.embed(y, sr=ser.audio.SAMPLE_RATE, method=encoder.POOLING,
                              encoder=byols.Encoder.from_checkpoint(CKPT))
            np.testing.assert_array_equal(v, ref)
        np.testing.assert_array_equal(f["stats_byols"], np.concatenate([f["stats"], v]))
        # maxmean_std: the std half is non-negative, the encoder's frames are ReLU outputs
        assert np.all(v >= 0)


@needs_data
def test_cached_per_file_reused_and_composite_from_the_parts(tmp_path, weights):
    root = corpus(tmp_path / "features", actors=(1,), tess=False, song=False)
    r = ser.extract.extract(root, feature_sets=["byols"], jobs=1, progress=False)
    assert r["files"] == 8 and r["computed"] == 8 and not r["skipped"]
    d = ser.store.load_features("byols", features_dir=root)
    assert d["X"].shape == (8, 1024) and d["X"].dtype == np.float32
    assert d["params"] == ser.features.feature_params("byols")
    # one cache entry per file, keyed on the byols parameters (the encoder's sha256 among them)
    folder = root / ".cache" / f"byols-{ser.features.params_hash(ser.features.feature_params('byols'))}"
    rels = list(d["meta"]["path"])
    entries = [ser.extract._cache_file(root / ".cache", "byols",
                                           ser.extract._file_key(root / rel, rel))
               for rel in rels]
    assert all(e.is_file() and e.parent.parent == folder for e in entries)
    assert len([f for f in folder.rglob("*") if f.is_file()]) == 8
    # reused: a second run computes nothing, and reads what the cache holds
    marker = np.full(1024, 7.0, np.float32)
    ser.extract._cache_write(entries[3], marker)
    r = ser.extract.extract(root, feature_sets=["byols"], jobs=1, progress=False)
    assert r["computed"] == 0
    X = ser.store.load_features("byols", features_dir=root)["X"]
    np.testing.assert_array_equal(X[3], marker)
    np.testing.assert_array_equal(np.delete(X, 3, 0), np.delete(d["X"], 3, 0))
    ser.extract._cache_write(entries[3], d["X"][3])
    # stats alone, then the composite: built from the two cached parts, nothing recomputed
    ser.extract.extract(root, feature_sets=["stats"], jobs=1, progress=False)
    r = ser.extract.extract(root, feature_sets=["stats_byols"], jobs=1, progress=False)
    assert r["computed"] == 0
    s = ser.store.load_features("stats", features_dir=root)
    sb = ser.store.load_features("stats_byols", features_dir=root)
    np.testing.assert_array_equal(sb["X"], np.concatenate([s["X"], d["X"]], axis=1))
    np.testing.assert_array_equal(sb["meta"]["path"], d["meta"]["path"])
    assert sb["params"] == ser.features.feature_params("stats_byols")


@needs_data
def test_combined_is_unchanged(tmp_path):
    root = corpus(tmp_path / "features", actors=(2,), tess=False, song=False)
    ser.extract.extract(root, feature_sets=["mfcc", "chroma", "contrast", "combined"],
                            jobs=1, progress=False)
    parts = [ser.store.load_features(f, features_dir=root)["X"]
             for f in ("mfcc", "chroma", "contrast")]
    d = ser.store.load_features("combined", features_dir=root)
    np.testing.assert_array_equal(d["X"], np.concatenate(parts, axis=1))
    assert d["X"].shape == (8, 59) and d["params"] == ser.features.feature_params("combined")
    y = ser.audio.load_audio(root / "Actor_02" / _ravdess(2, 4).name)
    f = ser.features.extract_features(y, sets=("combined", "mfcc"))
    np.testing.assert_array_equal(f["combined"][:40], f["mfcc"])


@needs_data
def test_augmented_copies_of_byols(tmp_path, weights):
    root = corpus(tmp_path / "features", actors=(3,), tess=False, song=False)
    r = ser.extract.extract(root, feature_sets=["byols", "stats_byols"], jobs=1,
                                progress=False, augment=2)
    assert r["augmented"] == 8 and not r["aug_fallbacks"]
    orig = ser.store.load_features("byols", features_dir=root)
    aug = joblib.load(ser.store.aug_output_path(root, "byols"))
    assert aug["X"].shape == (2, 8, 1024) and np.all(np.isfinite(aug["X"]))
    np.testing.assert_array_equal(aug["path"], orig["meta"]["path"])
    assert aug["params"] == ser.features.feature_params("byols")
    # a copy's byols vector is the encoder on that file's augmented audio
    rel = str(orig["meta"]["path"][0])
    ya = ser.augment.augment(ser.audio.load_audio(root / rel), actor=3, copy=2, rel=rel)
    np.testing.assert_allclose(aug["X"][1, 0], encoder.vector(ya, ser.audio.SAMPLE_RATE), rtol=0,
                               atol=1e-6)
    assert not np.allclose(aug["X"][0], orig["X"])
    # the composite's copies are the parts' copies side by side, and all come from the cache
    both = joblib.load(ser.store.aug_output_path(root, "stats_byols"))
    np.testing.assert_array_equal(both["X"][:, :, 1015:], aug["X"])
    r = ser.extract.extract(root, feature_sets=["stats_byols"], jobs=1, progress=False,
                                augment=2)
    assert r["computed"] == 0 and r["augmented"] == 0


# --------------------------------------------------------------------------------------------
# Models that need the encoder
# --------------------------------------------------------------------------------------------
@needs_data
def test_two_epoch_training_sidecar_and_prediction(tmp_path, weights):
    import ser.predict
    import ser.training
    root = corpus(tmp_path / "features")                    # 40 real files
    ser.extract.extract(root, feature_sets=["byols"], jobs=1, progress=False)
    out = tmp_path / "models" / "byols_mlp.h5"
    assert neural_network.main(["--model", "mlp", "--feature", "byols", "--all-data", "--epochs", "2",
                    "--features-dir", str(root), "--media-dir", str(tmp_path / "media"),
                    "--save", str(out), "--quiet"]) == 0
    meta = json.loads(ser.checkpoint.sidecar_path(out).read_text())
    assert meta["feature"] == "byols" and meta["training"]["epochs"] == 2
    assert meta["trained_on"]["rows"] == 40
    fp = meta["feature_params"]
    assert fp["encoder"] == "byols_default512" and fp["encoder_sha256"] == encoder.NPZ_SHA256
    model, meta2 = ser.checkpoint.load_model(out)
    assert model.input_shape[1:] == (1024, 1)
    p = ser.predict.Predictor(out).predict_file(_ravdess(1, 5))
    assert p.emotion in ser.corpora.EMOTIONS and abs(sum(p.probabilities.values()) - 1) < 1e-4


def _byols_model(dest: Path) -> Path:
    """An untrained model on the byols set, with a complete sidecar."""
    keras = ser.console.import_keras()
    m = keras.Sequential([keras.Input((1024, 1)), keras.layers.Flatten(),
                          keras.layers.Dense(ser.corpora.N_CLASSES, activation="softmax")])
    ser.checkpoint.save_model(m, dest, {"model": "test", "labels": list(ser.corpora.EMOTIONS), "feature": "byols",
                           "feature_params": ser.features.feature_params("byols"),
                           "input_shape": [1024, 1], "normalization": None,
                           "adaptation": "none"})
    return dest


@needs_data
def test_model_with_another_or_missing_encoder_is_refused(tmp_path, weights, monkeypatch,
                                                          capsys):
    import ser.predict
    good = _byols_model(tmp_path / "good.h5")
    ser.checkpoint.load_model(good)                                        # the right encoder: loads
    # a sidecar naming another encoder checksum
    other = tmp_path / "other.h5"
    shutil.copy(good, other)
    meta = json.loads(ser.checkpoint.sidecar_path(good).read_text())
    meta["feature_params"]["encoder_sha256"] = "0" * 64
    ser.checkpoint.sidecar_path(other).write_text(json.dumps(meta))
    with pytest.raises(encoder.EncoderError) as e:
        ser.checkpoint.load_model(other)
    assert str(ser.checkpoint.sidecar_path(other)) in str(e.value) and "0" * 64 in str(e.value)
    assert "\n" not in str(e.value)
    wav = str(_ravdess(1, 5))
    assert live_predictions.main(["--model", str(other), wav]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(ser.checkpoint.sidecar_path(other)) in err
    # the encoder's file missing, or with another checksum
    missing = tmp_path / "nowhere" / encoder.NPZ_NAME
    monkeypatch.setenv(encoder.ENV_WEIGHTS, str(missing))
    with pytest.raises(encoder.EncoderError, match=f"{missing}: encoder weights not found"):
        ser.checkpoint.load_model(good)
    assert live_predictions.main(["--model", str(good), wav]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(missing) in err
    changed = tmp_path / encoder.NPZ_NAME
    data = bytearray(weights.read_bytes())
    data[-100] ^= 1
    changed.write_bytes(bytes(data))
    monkeypatch.setenv(encoder.ENV_WEIGHTS, str(changed))
    with pytest.raises(encoder.EncoderError, match=f"{changed}: sha256 .* is not that of"):
        ser.checkpoint.load_model(good)
    assert live_predictions.main(["--model", str(good), wav]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(changed) in err
