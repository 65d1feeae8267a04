"""Temperature scaling and the calibration error: known answers on synthetic predictions, and
the figures a protocol run and an all-data model carry."""
import json

import numpy as np
import pytest

import ser.calibration as cal
import ser.protocols
import ser.training
from conftest import SHARED_DATA, needs_data
from test_neural_network import synthetic_features


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _sampled(n=20000, k=8, seed=0):
    """Labels drawn from known probabilities: those probabilities are calibrated."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, size=(n, k))
    p = _softmax(z)
    y = np.array([rng.choice(k, p=row) for row in p])
    return z, p, y


def test_temperature_one_is_the_identity_and_labels_never_change():
    _, p, _ = _sampled(500)
    np.testing.assert_allclose(cal.apply_temperature(p, 1.0), p, atol=1e-9)
    for t in (0.3, 2.5):
        q = cal.apply_temperature(p, t)
        np.testing.assert_allclose(q.sum(axis=1), 1.0)
        np.testing.assert_array_equal(q.argmax(axis=1), p.argmax(axis=1))
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        cal.apply_temperature(p, 0.0)
    with pytest.raises(ValueError, match=r"shape \(n > 0, classes\)"):
        cal.apply_temperature(np.ones(3), 1.0)


def test_an_overconfident_model_gets_its_temperature_back():
    z, p, y = _sampled()
    over = _softmax(3.0 * z)                 # the same ranking, three times too sharp
    t = cal.fit_temperature(over, y)
    assert 2.7 < t < 3.3
    assert 0.9 < cal.fit_temperature(p, y) < 1.1
    assert cal.ece(p, y) < 0.02              # calibrated by construction
    assert cal.ece(over, y) > 0.1
    assert cal.ece(cal.apply_temperature(over, t), y) < 0.02
    assert cal.nll(cal.apply_temperature(over, t), y) < cal.nll(over, y)


def test_reliability_bins_and_selective_prediction():
    p = np.array([[0.95, 0.05], [0.9, 0.1], [0.55, 0.45], [0.6, 0.4]])
    y = np.array([0, 1, 0, 0])
    conf, acc, count = cal.reliability(p, y, n_bins=10)
    assert count.tolist() == [0, 0, 0, 0, 0, 1, 1, 0, 0, 2]
    assert acc[9] == 0.5 and conf[9] == pytest.approx(0.925)
    assert cal.ece(p, y, n_bins=10) == pytest.approx((2 * 0.425 + 0.45 + 0.4) / 4)
    s = cal.selective(p, y, thresholds=(0.5, 0.9, 0.99))
    assert s == {"0.5": {"coverage": 1.0, "accuracy": 0.75},
                 "0.9": {"coverage": 0.5, "accuracy": 0.5},
                 "0.99": {"coverage": 0.0, "accuracy": None}}


def test_a_protocol_run_and_an_all_data_model_carry_their_calibration(tmp_path):
    feats = synthetic_features(tmp_path / "features")
    cfg = ser.training.TrainConfig(epochs=3, batch_size=32, norm="global")
    media = tmp_path / "media"
    records, _ = ser.training.run(models=["mlp"], protocol="speaker", subset="speech+song+tess",
                                  feature="mfcc", cfg=cfg, features_dir=feats,
                                  media_dir=media, k=2, progress=False)
    (rec,) = records
    for f in rec["folds"]:
        assert cal.T_MIN < f["temperature"] < cal.T_MAX and 0 <= f["ece_calibrated"] <= 1
    assert rec["temperature"] == pytest.approx(np.mean([f["temperature"] for f in rec["folds"]]))
    cov = [rec["selective"][t]["coverage"] for t in sorted(rec["selective"], key=float)]
    assert cov == sorted(cov, reverse=True)
    assert (media / "reliability.png").stat().st_size > 0
    side = ser.training.train_final(
        "mlp", subset="speech+song+tess", feature="mfcc", cfg=cfg, out=tmp_path / "m.h5",
        features_dir=feats, protocol_record=ser.training.protocol_records(
            media, "mlp", "speech+song+tess", "mfcc", "global", 0, 1))
    assert side["calibration"]["temperature"] == rec["temperature"]
    assert side["calibration"]["fitted_on"].startswith("validation actors of the speaker")
    # without a speaker-protocol record: fitted on the actors the epoch probes held out
    side = ser.training.train_final("mlp", subset="speech+song+tess", feature="mfcc", cfg=cfg,
                                    out=tmp_path / "n.h5", features_dir=feats)
    assert side["calibration"]["fitted_on"].startswith("actors held out by the epoch probes")
    assert json.loads((tmp_path / "n.json").read_text())["calibration"] == side["calibration"]


def test_with_augmented_copies_the_temperature_also_hears_the_validation_speakers_copies():
    """The validation speakers through other recording chains (their augmented copies) join
    the rows the temperature is fitted on: copies the model finds harder give a softer
    temperature than the originals alone would."""
    rng = np.random.default_rng(0)
    n, d = 480, 12
    y = np.arange(n) % 8
    centres = rng.normal(0, 1, (8, d)) * 2.0
    X = (centres[y] + rng.normal(0, 1, (n, d))).astype(np.float32)
    aug = np.stack([X + rng.normal(0, 2.5, X.shape).astype(np.float32) for _ in range(2)])
    ds = ser.protocols.Dataset(X, y, {"actor": np.arange(n) % 6 + 1}, "mfcc", {}, aug)
    idx = np.arange(n)
    fold = ser.protocols.Fold(idx[idx % 6 < 4], idx[idx % 6 == 4], idx[idx % 6 == 5])
    cfg = ser.training.TrainConfig(epochs=20, batch_size=32, norm="global", augment=2)
    (m, *_), model, norm = ser.training._fold_result("mlp", ds, fold, cfg, "speaker")
    Xv, yv, _ = ds.training_rows(fold.val)
    assert len(yv) == 3 * len(fold.val)
    t_all = cal.fit_temperature(ser.training.predict_proba(model, Xv, norm), yv)
    t_own = cal.fit_temperature(ser.training.predict_proba(model, X[fold.val], norm), y[fold.val])
    assert m["temperature"] == pytest.approx(t_all)
    assert t_all > 1.1 * t_own


@needs_data
def test_the_predictor_applies_the_sidecar_temperature_and_min_confidence(tmp_path):
    import ser.predict
    from tiny_model import build_tiny_model
    model = build_tiny_model(tmp_path, SHARED_DATA)
    side = json.loads(model.with_suffix(".json").read_text())
    side["calibration"] = {"temperature": 2.5, "fitted_on": "a test"}
    model.with_suffix(".json").write_text(json.dumps(side))
    clip = sorted((SHARED_DATA / "ravdess_speech" / "Actor_01").glob("*.flac"))[0]
    raw = ser.predict.Predictor(model, calibrated=False).predict_file(clip)
    p = ser.predict.Predictor(model)
    assert p.temperature == 2.5
    got = p.predict_file(clip)
    want = cal.apply_temperature(np.array([list(raw.probabilities.values())]), 2.5)[0]
    np.testing.assert_allclose(list(got.probabilities.values()), want, atol=1e-6)
    assert got.emotion == raw.emotion and got.confidence < raw.confidence
    unsure = ser.predict.Predictor(model, min_confidence=got.confidence + 1e-3)
    u = unsure.predict_file(clip)
    assert u.emotion == ser.predict.UNCERTAIN and u.confidence == pytest.approx(got.confidence)
    side["calibration"] = {"temperature": -1}
    model.with_suffix(".json").write_text(json.dumps(side))
    with pytest.raises(ser.predict.ModelError, match=r"malformed sidecar: calibration is an "
                                                     r"object, expected"):
        ser.predict.Predictor(model)
