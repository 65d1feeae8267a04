"""Augmented copies (create_features.py --augment, neural_network.py --augment): what they
do to the audio, how they are stored, and that they only ever join training rows."""
import json
import shutil

import joblib
import numpy as np
import pytest
import soundfile as sf

import create_features
import neural_network
import ser.audio
import ser.augment
import ser.corpora
import ser.extract
import ser.features
import ser.protocols
import ser.store
from ser.files import dump_trusted
from conftest import needs_data
from test_neural_network import synthetic_features

SR = ser.audio.SAMPLE_RATE


def harmonic(f0=200.0, seconds=1.5, amp=0.3):
    t = np.arange(int(SR * seconds)) / SR
    return (amp * sum(np.sin(2 * np.pi * k * f0 * t) / k for k in (1, 2, 3))).astype(np.float32)


def peak_hz(y):
    spec = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    return np.fft.rfftfreq(len(y), 1 / SR)[np.argmax(spec)]


def test_copy_is_another_voice_and_deterministic():
    y = harmonic(200.0)
    before = np.random.get_state()[1].copy()
    a = ser.augment.augment(y, actor=3, copy=1, rel="Actor_03/x.wav")
    np.testing.assert_array_equal(np.random.get_state()[1], before)   # caller's RNG untouched
    np.testing.assert_array_equal(a, ser.augment.augment(y, actor=3, copy=1,
                                                             rel="Actor_03/x.wav"))
    assert a.dtype == np.float32 and np.all(np.abs(a) <= 1.0) and np.all(np.isfinite(a))
    # speed perturbation: duration and pitch move together by the same factor
    factor = len(y) / len(a)
    lo, hi = ser.augment.AUGMENT_SPEED
    assert lo - 0.01 <= factor <= hi + 0.01 and abs(factor - 1) > 1e-3
    # (the random EQ may make any harmonic the strongest: it is one of the new f0's)
    ratio = peak_hz(a) / (200.0 * factor)
    assert round(ratio) in (1, 2, 3) and ratio == pytest.approx(round(ratio), rel=0.02)
    # one actor's copy is one virtual speaker: same speed for all their files; another copy
    # (or actor) is another speaker
    b = ser.augment.augment(harmonic(300.0), actor=3, copy=1, rel="Actor_03/y.wav")
    assert len(b) == len(a)
    lengths = {len(ser.augment.augment(y, actor=3, copy=c, rel="r")) for c in (1, 2, 3)}
    assert len(lengths) > 1
    with pytest.raises(ValueError, match="start at 1"):
        ser.augment.augment(y, actor=3, copy=0, rel="r")


def _corpus(root):
    rng = np.random.default_rng(0)
    for actor, name, f0 in ((1, "03-01-05-01-01-01-01.wav", 180.0),
                            (1, "03-01-03-02-01-01-01.wav", 220.0),
                            (2, "03-01-04-01-02-01-02.wav", 260.0)):
        d = root / f"Actor_{actor:02d}"
        d.mkdir(parents=True, exist_ok=True)
        y = harmonic(f0) + 0.01 * rng.standard_normal(int(SR * 1.5)).astype(np.float32)
        sf.write(d / name, y, SR, subtype="PCM_16")
    return root


def test_extract_writes_row_aligned_copies_and_caches_them(tmp_path):
    feats = _corpus(tmp_path / "features")
    r = ser.extract.extract(feats, feature_sets=["stats", "mfcc"], jobs=1,
                                progress=False, augment=2)
    assert r["augmented"] == 3 and not r["skipped"]
    orig = ser.store.load_features("stats", features_dir=feats)
    aug = joblib.load(ser.store.aug_output_path(feats, "stats"))
    assert aug["X"].shape == (2, 3, ser.features.FEATURE_DIMS["stats"])
    np.testing.assert_array_equal(aug["path"], orig["meta"]["path"])
    assert not np.allclose(aug["X"][0], orig["X"]) and not np.allclose(aug["X"][0], aug["X"][1])
    assert np.all(np.isfinite(aug["X"]))
    # the copy of a row is that file's audio, augmented: nearer its own original than others
    d = np.linalg.norm(aug["X"][0][:, None, :] - orig["X"][None], axis=2)
    assert np.all(np.argmin(d, axis=1) == np.arange(3))
    mfcc_aug = ser.store.load_augmented("mfcc", features_dir=feats, copies=2)
    assert mfcc_aug.shape == (2, 3, ser.features.N_MFCC)
    # a re-run takes every copy from the cache and writes the same arrays
    again = ser.extract.extract(feats, feature_sets=["stats"], jobs=1, progress=False,
                                    augment=2)
    assert again["augmented"] == 0
    np.testing.assert_array_equal(
        ser.store.load_augmented("stats", features_dir=feats, copies=2), aug["X"])
    with pytest.raises(ValueError, match="2 augmented copies, 3 asked"):
        ser.store.load_augmented("stats", features_dir=feats, copies=3)
    with pytest.raises(ValueError, match="rows do not match"):
        ser.store.load_augmented("stats", features_dir=feats, copies=1,
                                       paths=orig["meta"]["path"][::-1])
    with pytest.raises(ValueError, match=">= 0"):
        ser.extract.extract(feats, feature_sets=["stats"], augment=-1)


def test_a_copy_made_silent_falls_back_alone(tmp_path):
    """A quiet file (-54 dBFS) passes as an original, but the gain of its copy 3 takes it
    below the silence threshold: that copy keeps the original's features, with a message
    naming the file and the copy; its other copies are real, and the same whether or not
    copy 3 was asked for in the same run (no dependence on what was cached)."""
    feats = _corpus(tmp_path / "features")
    y = harmonic(200.0)
    quiet = feats / "Actor_05" / "03-01-02-01-01-01-05.wav"   # actor 5: copy 3 is the quiet one
    quiet.parent.mkdir()
    sf.write(quiet, y / np.abs(y).max() * 10 ** (-54 / 20), SR, subtype="FLOAT")
    r = ser.extract.extract(feats, feature_sets=["stats"], jobs=1, progress=False,
                                augment=3, use_cache=False)
    assert not r["skipped"] and r["files"] == 4
    assert len(r["aug_fallbacks"]) == 1
    assert quiet.name in r["aug_fallbacks"][0] and "copy 3" in r["aug_fallbacks"][0]
    assert "silent" in r["aug_fallbacks"][0]
    orig = ser.store.load_features("stats", features_dir=feats)
    row = list(orig["meta"]["path"]).index(f"Actor_05/{quiet.name}")
    aug3 = ser.store.load_augmented("stats", features_dir=feats, copies=3)
    np.testing.assert_array_equal(aug3[2, row], orig["X"][row])        # the fallback
    assert not np.allclose(aug3[0, row], orig["X"][row])                # real copies
    assert not np.allclose(aug3[1, row], orig["X"][row])
    r2 = ser.extract.extract(feats, feature_sets=["stats"], jobs=1, progress=False,
                                 augment=2, use_cache=False)
    assert not r2["aug_fallbacks"]
    np.testing.assert_array_equal(
        ser.store.load_augmented("stats", features_dir=feats, copies=2), aug3[:2])


def _with_copies(folder, copies=2, seed=1):
    """Synthetic features plus an aligned features_mfcc_aug.joblib (originals + noise)."""
    d = joblib.load(folder / "features_mfcc.joblib")
    rng = np.random.default_rng(seed)
    X = np.stack([d["X"] + rng.normal(0, 0.5, d["X"].shape) for _ in range(copies)])
    dump_trusted({"X": X.astype(np.float32), "path": d["meta"]["path"], "feature": "mfcc",
                  "params": ser.features.feature_params("mfcc"),
                  "augment": {"copies": copies, "version": ser.augment.AUGMENT_VERSION}},
                 ser.store.aug_output_path(folder, "mfcc"))
    return folder


@pytest.fixture
def feats(tmp_path):
    return _with_copies(synthetic_features(tmp_path / "features"))


def test_copies_join_training_rows_only(feats):
    ds = ser.protocols.load_dataset("mfcc", "speech+song+tess", features_dir=feats, augment=2)
    assert ds.copies == 2
    folds = (ser.protocols.split_speaker(ds, 0, k=5) + ser.protocols.split_corpus(ds, 0, train_corpus="ravdess")
             + ser.protocols.split_corpus(ds, 0, train_corpus="tess") + ser.protocols.split_random(ds, 0))
    for f in folds:
        X, y, source = ds.training_rows(f.train)
        assert len(X) == 3 * len(f.train)
        assert set(source.tolist()) == set(f.train.tolist())
        assert not set(source.tolist()) & set(np.concatenate([f.val, f.test]).tolist())
        np.testing.assert_array_equal(y, ds.y[source])
        np.testing.assert_array_equal(X[:len(f.train)], ds.X[f.train])   # originals first
        np.testing.assert_array_equal(X[len(f.train):2 * len(f.train)], ds.aug[0, f.train])
    # per-speaker normalisation treats each copy of an actor as a speaker of its own
    sn = ds.speaker_normalized()
    rows = ds.meta["actor"] == 3
    np.testing.assert_allclose(sn.aug[1][rows].mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(sn.X[rows].mean(axis=0), 0, atol=1e-4)


def test_augmented_run_records_it_and_refuses_missing_copies(feats, tmp_path, capsys):
    media = tmp_path / "media"
    args = ["--features-dir", str(feats), "--media-dir", str(media), "--epochs", "2",
            "--quiet", "--no-save", "--model", "mlp"]
    assert neural_network.main(["--protocol", "corpus", "--train-corpus", "ravdess", "--augment", "2",
                    *args]) == 0
    assert neural_network.main(["--protocol", "corpus", "--train-corpus", "ravdess", *args]) == 0
    recs = json.loads((media / "results.json").read_text())
    assert sorted(r["augmentation"] for r in recs) == [0, 2]   # two records, not replaced
    assert neural_network.main(["--protocol", "speaker", "--augment", "3", *args]) == 1
    assert "3 asked for" in capsys.readouterr().err


@needs_data
def test_corpus_protocol_on_real_files_with_copies_and_adaptation(shared_data, tmp_path):
    """A 2-epoch run of the corpus protocol on a small real subset, with augmented copies and
    speaker adaptation, writes a complete record."""
    root = tmp_path / "features"
    for actor in (1, 2, 3, 4):
        src = shared_data / "ravdess_speech" / f"Actor_{actor:02d}"
        for p in sorted(src.glob("*.flac"))[::8]:
            (root / src.name).mkdir(parents=True, exist_ok=True)
            shutil.copy(p, root / src.name / p.name)
    tess = root / "Actor_25"
    tess.mkdir(parents=True)
    n_tess = 0
    for folder in sorted((shared_data / "tess").glob("YAF_*")):
        emotion = folder.name.split("_", 1)[1].lower()
        code = ser.corpora.TESS_EMOTION_CODES[ser.corpora.TESS_FOLDER_EMOTIONS.get(emotion, emotion)]
        for i, p in enumerate(sorted(folder.glob("*.*"))[:2]):
            statement, repetition = ser.corpora.tess_word_code(i)
            shutil.copy(p, tess / f"03-01-{code:02d}-01-{statement:02d}-{repetition:02d}-25"
                                  f"{p.suffix}")
            n_tess += 1
    assert create_features.main(["--features-dir", str(root), "--feature", "stats",
                                 "--augment", "1", "--quiet", "--jobs", "2"]) == 0
    media = tmp_path / "media"
    assert neural_network.main(["--features-dir", str(root), "--media-dir", str(media), "--model", "mlp",
                    "--feature", "stats", "--protocol", "corpus", "--train-corpus", "ravdess",
                    "--augment", "1", "--norm", "speaker", "--epochs", "2", "--quiet",
                    "--no-save"]) == 0
    (rec,) = json.loads((media / "results.json").read_text())
    assert (rec["protocol"], rec["train_corpus"], rec["test_corpus"]) == \
        ("corpus", "ravdess", "tess")
    assert (rec["adaptation"], rec["augmentation"], rec["feature"]) == ("speaker", 1, "stats")
    assert rec["n_test"] == n_tess == 14
    for k in ("uar_restricted", "uar_8way", "accuracy", "macro_f1"):
        assert 0.0 <= rec[k] <= 1.0, k
    assert (media / "results.md").read_text().count("corpus (ravdess→tess)") == 1
