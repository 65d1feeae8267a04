import dataclasses
import json

import numpy as np
import pytest

import neural_network
import ser.checkpoint
import ser.corpora
import ser.features
import ser.models
import ser.protocols
import ser.training
from ser.files import dump_trusted


def synthetic_features(folder, *, actors=range(1, 11), tess=True, classes=range(8),
                       per=6, dim=40, seed=0):
    """A features_mfcc.joblib whose classes are separable, with real-looking metadata."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 3, size=(8, dim))
    rows = []
    for a in actors:
        for ch, corpus in ((1, "ravdess_speech"), (2, "ravdess_song")):
            for c in classes:
                for i in range(per // 2):
                    rows.append((a, ch, corpus, c))
    if tess:
        for a in (25, 26):
            for c in [c for c in classes if c != 1]:
                for i in range(per):
                    rows.append((a, 1, "tess", c))
    y = np.array([r[3] for r in rows])
    X = (centers[y] + rng.normal(0, 1.0, size=(len(rows), dim))).astype(np.float32)
    meta = {"path": np.array([f"Actor_{r[0]:02d}/{i}.wav" for i, r in enumerate(rows)]),
            "corpus": np.array([r[2] for r in rows]),
            "actor": np.array([r[0] for r in rows]),
            "vocal_channel": np.array([r[1] for r in rows]),
            "intensity": np.ones(len(rows), int), "statement": np.ones(len(rows), int),
            "repetition": np.ones(len(rows), int)}
    folder.mkdir(parents=True, exist_ok=True)
    dump_trusted({"X": X, "y": y, "meta": meta, "feature": "mfcc",
                  "params": ser.features.feature_params("mfcc")}, folder / "features_mfcc.joblib")
    return folder


@pytest.fixture
def feats(tmp_path):
    return synthetic_features(tmp_path / "features")


@pytest.mark.parametrize("name", list(ser.models.MODELS))
def test_every_model_learns_in_two_epochs(name, feats):
    ds = ser.protocols.load_dataset("mfcc", "speech+song+tess", features_dir=feats)
    fold = ser.protocols.Fold(np.arange(len(ds)), None, np.arange(0))
    cfg = ser.training.TrainConfig(epochs=2, batch_size=16, norm="global")
    model, hist, norm, _ = ser.training.train_one(name, ds, fold, cfg)
    assert len(hist["loss"]) == 2 and hist["loss"][1] < hist["loss"][0]
    assert model.output_shape == (None, 8)


def test_speaker_folds_never_share_an_actor(feats):
    ds = ser.protocols.load_dataset("mfcc", "speech+song+tess", features_dir=feats)
    folds = ser.protocols.split_speaker(ds, 1, k=5)
    assert len(folds) == 5
    tested = []
    for f in folds:
        a_tr, a_va, a_te = (set(ds.meta["actor"][i].tolist()) for i in (f.train, f.val, f.test))
        assert not (a_tr & a_te) and not (a_va & a_te) and not (a_tr & a_va)
        assert {25, 26} <= a_tr and not ({25, 26} & (a_te | a_va))
        assert len(a_te) == 2 and len(a_va) == 2
        tested += sorted(a_te)
    assert sorted(tested) == list(range(1, 11))   # every RAVDESS actor tested exactly once


def test_corpus_split_keeps_the_test_corpus_out(feats):
    ds = ser.protocols.load_dataset("mfcc", "speech+song+tess", features_dir=feats)
    (f,) = ser.protocols.split_corpus(ds, 0, train_corpus="ravdess")
    assert set(ds.meta["corpus"][f.test]) == {"tess"}
    assert "tess" not in set(ds.meta["corpus"][np.concatenate([f.train, f.val])])
    assert not set(ds.meta["actor"][f.train]) & set(ds.meta["actor"][f.val])
    (g,) = ser.protocols.split_corpus(ds, 0, train_corpus="tess")
    assert set(ds.meta["corpus"][np.concatenate([g.train, g.val])]) == {"tess"}
    assert "tess" not in set(ds.meta["corpus"][g.test])
    assert ser.corpora.EMOTIONS.index("calm") not in set(ds.y[g.test])


def test_random_split_is_the_original_split_minus_validation(feats):
    ds = ser.protocols.load_dataset("mfcc", "song+tess", features_dir=feats)
    (o,) = ser.protocols.split_original(ds)
    (r,) = ser.protocols.split_random(ds)
    np.testing.assert_array_equal(o.test, r.test)
    assert o.test_is_val and not r.test_is_val
    assert set(r.train) | set(r.val) == set(o.train) and not set(r.train) & set(r.val)


def test_reports_results_and_replacement(feats, tmp_path):
    media = tmp_path / "media"
    args = ["--features-dir", str(feats), "--media-dir", str(media), "--epochs", "2",
            "--quiet", "--no-save"]
    assert neural_network.main(["--model", "all", "--protocol", "speaker", "--folds", "2", *args]) == 0
    for name in ("loss.png", "accuracy.png", "confusion_matrix.png",
                 "classification_report.png", "classification_report.txt",
                 "model_comparison.png", "results.json", "results.md",
                 "lstm_confusion_matrix.png"):
        assert (media / name).stat().st_size > 100, name
    assert "neutral" in (media / "classification_report.txt").read_text()
    recs = json.loads((media / "results.json").read_text())
    assert len(recs) == 4
    for r in recs:
        for k in ("model", "protocol", "subset", "feature", "accuracy", "uar", "macro_f1",
                  "weighted_f1", "uar_std", "folds", "epochs", "train_seconds", "seed",
                  "adaptation"):
            assert k in r, k
        assert r["protocol"] == "speaker" and len(r["folds"]) == 2 and 0 <= r["uar"] <= 1
    assert neural_network.main(["--protocol", "corpus", "--train-corpus", "ravdess", *args]) == 0
    assert neural_network.main(["--model", "basic_cnn", "--protocol", "speaker", "--folds", "2",
                    "--seed", "7", *args]) == 0
    recs2 = json.loads((media / "results.json").read_text())
    assert len(recs2) == 5     # the basic_cnn speaker record was replaced, corpus added
    basic = [r for r in recs2 if r["model"] == "basic_cnn" and r["protocol"] == "speaker"]
    assert len(basic) == 1 and basic[0]["seed"] == 7
    corpus = [r for r in recs2 if r["protocol"] == "corpus"][0]
    assert corpus["train_corpus"] == "ravdess" and corpus["test_corpus"] == "tess"
    assert 0 <= corpus["uar_restricted"] <= 1 and 0 <= corpus["uar_8way"] <= 1
    assert "test-set-as-validation" not in (media / "results.md").read_text()
    assert neural_network.main(["--protocol", "original", *args]) == 0
    assert "original (test-set-as-validation)" in (media / "results.md").read_text()


def test_trainings_side_by_side_equal_one_after_the_other(feats, tmp_path):
    """--jobs 2 (the default: folds x models in two local processes) gives the records (but
    the timing), reports and plots of --jobs 1, and the model the comparison keeps."""
    timing = ("train_seconds", "seconds_per_epoch")
    media = {j: tmp_path / f"media_{j}" for j in (1, 2)}
    for j, m in media.items():
        assert neural_network.main(["--model", "all", "--protocol", "speaker", "--folds", "2",
                                    "--features-dir", str(feats), "--media-dir", str(m),
                                    "--epochs", "3", "--quiet", "--no-save",
                                    "--jobs", str(j)]) == 0
    r1, r2 = (json.loads((m / "results.json").read_text()) for m in media.values())
    assert [r["model"] for r in r1] == list(ser.models.ORIGINAL_MODELS) == \
        [r["model"] for r in r2]
    for a, b in zip(r1, r2):
        assert {k: v for k, v in a.items() if k not in timing} == \
            {k: v for k, v in b.items() if k not in timing}
    files = sorted(p.name for p in media[1].iterdir())
    assert files == sorted(p.name for p in media[2].iterdir())
    for name in files:
        if name not in ("results.json", "results.md"):
            assert (media[1] / name).read_bytes() == (media[2] / name).read_bytes(), name
    assert neural_network.main(["--model", "mlp", "--jobs", "0", "--features-dir", str(feats),
                                "--media-dir", str(tmp_path / "m0"), "--no-save"]) == 2


def test_seeded_runs_repeat(feats, tmp_path):
    ds = ser.protocols.load_dataset("mfcc", "song+tess", features_dir=feats)
    (f,) = ser.protocols.split_random(ds, 3)
    cfg = ser.training.TrainConfig(epochs=2, batch_size=32, norm="global", seed=3)
    a = ser.training.train_one("basic_cnn", ds, f, cfg)[1]["loss"]
    b = ser.training.train_one("basic_cnn", ds, f, cfg)[1]["loss"]
    np.testing.assert_allclose(a, b, rtol=1e-5)


def test_h5_round_trip_sidecar_and_further_training(feats, tmp_path):
    out = tmp_path / "models" / "m.h5"
    cfg = ser.training.TrainConfig(epochs=2, batch_size=32, norm="global")
    side = ser.training.train_final("improved_cnn", subset="speech+song+tess", feature="mfcc", cfg=cfg,
                          out=out, features_dir=feats, epochs=2)
    model, meta = ser.checkpoint.load_model(out)
    assert meta == side                 # what train_final returns is what was written
    assert meta["model"] == "improved_cnn" and meta["format"] == ser.checkpoint.SIDECAR_FORMAT
    for k in (*ser.checkpoint.SIDECAR_KEYS, "trained_on", "training", "protocol", "versions"):
        assert k in meta, k
    assert meta["feature_params"] == ser.features.feature_params("mfcc")
    assert meta["input_shape"] == [40, 1] and len(meta["normalization"]["mean"]) == 40
    assert meta["trained_on"]["corpora"] == ["ravdess_song", "ravdess_speech", "tess"]
    ds = ser.protocols.load_dataset("mfcc", "speech+song+tess", features_dir=feats)
    # the reloaded model predicts what the trained one did (retrain identically to compare)
    keras_model, _, norm, _ = ser.training.train_one(
        "improved_cnn", ds, ser.protocols.Fold(np.arange(len(ds)), None, np.arange(0)),
        ser.training.TrainConfig(epochs=2, batch_size=32, norm="global"), epochs_fixed=True)
    X = ser.checkpoint.model_input(ds.X[:50], meta)
    np.testing.assert_allclose(model.predict(X, verbose=0), keras_model.predict(X, verbose=0),
                               atol=1e-5)
    # loading with compile=False, then compiling, allows further training
    ser.models.compile_model(model, 1e-3)
    h = model.fit(X, ds.y[:50], epochs=1, verbose=0)
    assert np.isfinite(h.history["loss"][0])


def test_bad_input_is_a_clear_error(tmp_path, feats, capsys):
    assert neural_network.main(["--features-dir", str(tmp_path / "none"), "--no-save"]) == 1
    assert "features not found" in capsys.readouterr().err
    with pytest.raises(ValueError, match="no rows"):
        synthetic_features(tmp_path / "f2", tess=False)
        ser.protocols.load_dataset("mfcc", "tess", features_dir=tmp_path / "f2")
    with pytest.raises(ValueError, match="single class"):
        synthetic_features(tmp_path / "f3", classes=[3])
        ser.protocols.load_dataset("mfcc", "song", features_dir=tmp_path / "f3")
    with pytest.raises(ValueError, match="unknown part"):
        ser.corpora.parse_subset("song+voices")
    assert neural_network.main(["--features-dir", str(feats), "--subset", "song+voices"]) == 2
    assert "unknown part" in capsys.readouterr().err


def test_ensemble_averages_members_trained_apart(feats, tmp_path):
    ds = ser.protocols.load_dataset("mfcc", "speech+song+tess", features_dir=feats)
    (f,) = ser.protocols.split_random(ds, 0)
    cfg = ser.training.TrainConfig(epochs=3, batch_size=32, norm="global", seed=5, ensemble=3)
    model, hist, norm, _ = ser.training.train_one("mlp", ds, f, cfg)
    assert len(hist["member_best_epochs"]) == 3
    X = ser.checkpoint.model_input(ds.X[f.test], {"normalization": norm, "input_shape": [40, 1]})
    members = [model.get_layer(f"member{i}") for i in (1, 2, 3)]
    each = np.stack([m.predict(X, verbose=0) for m in members])
    np.testing.assert_allclose(model.predict(X, verbose=0), each.mean(axis=0), atol=1e-6)
    assert not np.allclose(each[0], each[1], atol=1e-3)        # other seeds, other members
    # member 1 is the single model of the same seed
    single, *_ = ser.training.train_one("mlp", ds, f, dataclasses.replace(cfg, ensemble=1))
    np.testing.assert_allclose(each[0], single.predict(X, verbose=0), atol=1e-5)
    # saved as one H5 with its sidecar, reloaded, predicts the same
    out = tmp_path / "ens.h5"
    ser.training.train_final("mlp", subset="speech+song+tess", feature="mfcc", cfg=cfg, out=out,
                   features_dir=feats, epochs=2)
    loaded, meta = ser.checkpoint.load_model(out)
    assert meta["training"]["ensemble"] == 3
    assert len([layer for layer in loaded.layers if layer.name.startswith("member")]) == 3
    assert neural_network.main(["--features-dir", str(feats), "--no-save", "--ensemble", "0"]) == 2


def test_metrics_of_a_corpus_without_some_class_do_not_warn():
    """TESS has no calm: a prediction of calm on it is a wrong answer, not a warning for the
    user (sklearn's 'y_pred contains classes not in y_true' once reached the terminal)."""
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = ser.training.metrics(np.array([0, 0, 2, 2]), np.array([0, 1, 2, 2]))
    assert m["uar"] == pytest.approx(0.75) and m["accuracy"] == pytest.approx(0.75)


def test_best_epoch_is_the_epoch_whose_weights_the_model_keeps(feats):
    """Validation labels that contradict training: the validation loss is lowest after the
    first epoch, but early stopping only looks from epoch 6 on and restores the best of
    those. The best epoch reported (what the all-data model is then trained for) is that one."""
    ds = ser.protocols.load_dataset("mfcc", "song+tess", features_dir=feats)
    (f,) = ser.protocols.split_random(ds, 3)
    y = ds.y.copy()
    y[f.val] = (y[f.val] + 4) % 8
    ds = ser.protocols.Dataset(ds.X, y, ds.meta, ds.feature, ds.params, None)
    cfg = ser.training.TrainConfig(epochs=40, batch_size=32, norm="global", seed=3, patience=3)
    model, hist, norm, _ = ser.training.train_one("mlp", ds, f, cfg)
    assert int(np.argmin(hist["val_loss"])) + 1 < 6 <= hist["best_epoch"] < len(hist["loss"])
    Xv = ser.checkpoint.model_input(ds.X[f.val], {"normalization": norm,
                                                 "input_shape": [ds.X.shape[1], 1]})
    loss = model.evaluate(Xv, y[f.val], verbose=0, batch_size=32)[0]
    want = min(hist["val_loss"][5:])
    assert hist["val_loss"][hist["best_epoch"] - 1] == want
    assert loss == pytest.approx(want, rel=1e-4)


def test_version_and_the_exit_codes_help_lists_are_those_main_returns(feats, tmp_path, capsys):
    import subprocess
    import sys

    import ser
    from conftest import ROOT
    r = subprocess.run([sys.executable, "neural_network.py", "--version"], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == f"neural_network.py {ser.__version__}"
    text = " ".join(neural_network.build_parser().format_help().split())
    status = text[text.index("Exit status:"):]
    for code in ("0 done", "1 an error during the work", "2 bad arguments"):
        assert code in status, code
    common = ["--features-dir", str(feats), "--media-dir", str(tmp_path / "media"), "--quiet"]
    usage = [["--model", "all", "--all-data"], ["--all-data", "--no-save"], ["--jobs", "0"],
             ["--exclude-actors", "1,x", "--all-data"], ["--subset", "song+voices"],
             ["--subset", "csv", "--no-save"],                       # a subset without rows
             ["--protocol", "speaker", "--folds", "11", "--no-save"]]   # 10 actors to split
    for argv in usage:
        assert neural_network.main([*argv, *common]) == 2, argv
        assert len(capsys.readouterr().err.strip().splitlines()) == 1, argv
    with pytest.raises(SystemExit) as e:                      # argparse's own usage errors
        neural_network.main(["--protocol", "nonsense"])
    assert e.value.code == 2
    capsys.readouterr()
    assert neural_network.main(["--features-dir", str(tmp_path / "none"), "--no-save"]) == 1
    assert "features not found" in capsys.readouterr().err
    assert not (tmp_path / "media").exists()          # every refusal came before any work


def test_the_experiment_notice_comes_only_with_a_saved_model(feats, tmp_path, monkeypatch,
                                                             capsys):
    """Said once the model is saved in the run folder; not when nothing is saved (a speaker
    protocol run, --no-save), not when the run fails at once (then no run folder is left)."""
    runs = tmp_path / "runs"
    monkeypatch.setattr(neural_network, "RUNS_DIR", runs)
    common = ["--features-dir", str(feats), "--epochs", "1", "--quiet"]
    assert neural_network.main([*common, "--protocol", "speaker", "--folds", "2"]) == 0
    out = capsys.readouterr()
    assert "differs from the shipped recipe" not in out.err + out.out
    (folder,) = runs.iterdir()
    assert (folder / "results.json").exists() and not list(folder.glob("*.h5"))
    assert neural_network.main([*common, "--no-save"]) == 0
    assert "differs" not in capsys.readouterr().err
    assert f"reports in {folder}" in out.out
    assert neural_network.main([*common[2:], "--features-dir", str(tmp_path / "none")]) == 1
    out = capsys.readouterr()
    assert "differs" not in out.err and "features not found" in out.err
    assert len(list(runs.iterdir())) == 2                 # no folder for the failed run
    assert neural_network.main([*common, "--subset", "speech"]) == 0
    out = capsys.readouterr()
    (model,) = runs.glob("improved_cnn_mfcc_random_*/improved_cnn.h5")
    assert (model.parent / "results.json").exists()      # the reports beside it
    notice = [line for line in out.err.splitlines() if "differs" in line]
    assert notice == [f"this run differs from the shipped recipe cnn (--subset speech, --epochs "
                      f"1, --features-dir {feats}): its model is {model}, not "
                      f"Emotion_Voice_Detection_Model.h5 (--save PATH to choose)"]
    assert f"saved {model}" in out.out
