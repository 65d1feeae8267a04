"""ser.normalization: the global z-score and the per-speaker statistics, fitted and applied in
one module (issue 30).

The arithmetic must stay the one the shipped models were trained with (dtype, order of
operations, floors), bit for bit: each function is compared with the code it replaced, copied
below as it stood in ser/training.py, ser/checkpoint.py and ser/adaptation.py, on real feature
vectors of RAVDESS clips; with the repository's features (``make features``) also with the
shipped models' sidecars.
"""
import json
from pathlib import Path

import numpy as np
import pytest

import ser.adaptation
import ser.audio
import ser.checkpoint
import ser.features
import ser.normalization as N
import ser.paths
import ser.protocols
from tiny_model import training_files

# --- the code before issue 30, verbatim ----------------------------------------------------


def old_fit_normalization(X, norm):                      # ser/training.py
    if norm == "none":
        return None
    if norm == "global":
        mean = X.mean(axis=0)
        std = X.std(axis=0)
        std[std < 1e-8] = 1.0
        return {"mean": mean.tolist(), "std": std.tolist()}
    raise ValueError(f"unknown normalisation {norm!r} (none or global)")


def old_normalize(X, meta):                              # ser/checkpoint.py
    norm = meta.get("normalization")
    X = np.asarray(X, dtype=np.float32)
    if not norm:
        return X
    return (X - np.asarray(norm["mean"], np.float32)) / np.asarray(norm["std"], np.float32)


def old_model_input(vectors, meta):                      # ser/checkpoint.py
    X = old_normalize(np.atleast_2d(vectors), meta)
    return X.reshape((X.shape[0], *meta["input_shape"]))


def old_speaker_stats(X, prior=None, *, prior_weight=10.0):      # ser/adaptation.py
    X = np.asarray(X, dtype=np.float64)
    n = X.shape[0]
    if n == 0:
        raise ValueError("speaker statistics need at least one utterance")
    return old_shrunk_stats(n, X.mean(axis=0), X.var(axis=0), prior, prior_weight=prior_weight)


def old_shrunk_stats(n, mean, var, prior=None, *, prior_weight=10.0):
    mean = np.asarray(mean, dtype=np.float64)
    var = np.maximum(np.asarray(var, dtype=np.float64), 0.0)
    if prior is not None:
        pm, ps = np.asarray(prior["mean"], float), np.asarray(prior["std"], float)
        w = n / (n + prior_weight)
        mean = (n * mean + 1.0 * pm) / (n + 1.0)
        var = w * var + (1 - w) * ps ** 2
    std = np.sqrt(var)
    std[std < 1e-6] = 1.0
    return {"mean": mean.astype(np.float32).tolist(), "std": std.astype(np.float32).tolist(),
            "n": int(n)}


def old_speaker_normalize(X, groups):
    X = np.asarray(X, dtype=np.float32)
    out = np.empty_like(X)
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        st = old_speaker_stats(X[idx])
        out[idx] = (X[idx] - np.asarray(st["mean"], np.float32)) / np.asarray(st["std"],
                                                                              np.float32)
    return out


# -------------------------------------------------------------------------------------------


def same_bits(a, b) -> bool:
    """Equal arrays of the same dtype and shape, bit for bit (NaN-safe, -0.0 != 0.0)."""
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def same_stats(a: dict | None, b: dict | None) -> bool:
    """Equal statistics dicts, each list of floats bit for bit (as json.dumps writes them)."""
    if a is None or b is None:
        return a is b
    return list(a) == list(b) and all(
        same_bits(np.array(a[k], np.float64), np.array(b[k], np.float64))
        if isinstance(a[k], list) else a[k] == b[k] for k in a) \
        and json.dumps(a) == json.dumps(b)


@pytest.fixture(scope="module")
def real(shared_data):
    """Feature vectors (mfcc, 40; stats, 1015; float32 as create_features.py stores them) of
    three RAVDESS actors' clips, eight emotions each, and each row's actor."""
    files = training_files(shared_data)
    vecs = [ser.features.extract_features(ser.audio.load_audio(f), sets=("mfcc", "stats"))
            for f in files]
    actors = np.array([int(Path(f).stem.split("-")[-1]) for f in files])
    return {s: np.stack([v[s] for v in vecs]).astype(np.float32) for s in ("mfcc", "stats")}, \
        actors


def _variants(X: np.ndarray) -> list[np.ndarray]:
    """The rows as given; with a column of zeros (its std 0: the floors) and a constant one
    (in float32 its std is not 0 but a rounding error above the global floor: kept as it is);
    in float64."""
    flat = X.copy()
    flat[:, 3] = 0.0
    flat[:, 4] = flat[0, 4]
    return [X, flat, X.astype(np.float64)]


def test_global_statistics_are_fitted_as_before(real):
    feats, _ = real
    for X in (v for s in feats.values() for v in _variants(s)):
        assert N.fit_normalization(X, "none") is None
        new, old = N.fit_normalization(X, "global"), old_fit_normalization(X, "global")
        assert same_stats(new, old)
        for k in ("mean", "std"):        # float32 rows: float32 statistics, as the sidecars have
            assert np.array(new[k]).astype(X.dtype).astype(np.float64).tolist() == new[k]
    flat = _variants(feats["mfcc"])[1]
    assert N.fit_normalization(flat, "global")["std"][3] == 1.0
    for bad in ("speaker", "nonsense"):
        with pytest.raises(ValueError, match="unknown normalisation"):
            N.fit_normalization(feats["mfcc"], bad)


def test_normalised_inputs_are_the_same_bits(real):
    feats, _ = real
    for X in (v for s in feats.values() for v in _variants(s)):
        norm = old_fit_normalization(X, "global")
        for n in (norm, None):
            meta = {"normalization": n, "input_shape": [X.shape[1], 1]}
            assert same_bits(N.normalize(X, n), old_normalize(X, meta))
            assert same_bits(ser.checkpoint.model_input(X, meta), old_model_input(X, meta))
            assert same_bits(ser.checkpoint.model_input(X[0], meta), old_model_input(X[0], meta))
        assert N.normalize(X, norm).dtype == np.float32


def test_per_speaker_statistics_are_the_same_bits(real):
    feats, actors = real
    groups = actors.copy()
    groups[-1] = 99                          # a speaker with one utterance: every std floored
    for X in (v for s in feats.values() for v in _variants(s)):
        assert same_bits(N.speaker_normalize(X, groups), old_speaker_normalize(X, groups))
        prior = old_fit_normalization(X.astype(np.float32), "global")
        for n in (1, 2, 5, len(X)):
            for p in (None, prior):
                assert same_stats(N.speaker_stats(X[:n], p), old_speaker_stats(X[:n], p))
                assert same_stats(N.speaker_stats(X[:n], p, prior_weight=3.0),
                                  old_speaker_stats(X[:n], p, prior_weight=3.0))


def test_the_running_estimate_of_enrolment_is_the_same_bits(real):
    """SpeakerAdaptation.observe (enrolment, streaming) against the old arithmetic."""
    feats, _ = real
    X = feats["stats"]
    prior = old_fit_normalization(X, "global")
    a = ser.adaptation.SpeakerAdaptation({"normalization": prior, "speaker_prior_weight": 10.0})
    s = q = 0.0
    for i, v in enumerate(X[:10], 1):
        a.observe(v)
        v = np.asarray(v, dtype=np.float64)
        s, q = s + v, q + v * v
        want = old_shrunk_stats(i, s / i, q / i - (s / i) ** 2, prior, prior_weight=10.0)
        assert same_stats(a.normalization(), want)


def test_the_dataset_speaker_normalisation_and_adaptation_name():
    rng = np.random.default_rng(3)
    X = rng.normal(2.0, 3.0, (12, 5)).astype(np.float32)
    actors = np.repeat([1, 2, 3], 4)
    aug = rng.normal(0.0, 1.0, (2, 12, 5)).astype(np.float32)
    ds = ser.protocols.Dataset(X, np.arange(12) % 8, {"actor": actors}, "mfcc", {}, aug)
    sn = ds.speaker_normalized()
    assert same_bits(sn.X, old_speaker_normalize(X, actors))
    assert same_bits(sn.aug, np.stack([old_speaker_normalize(a, actors) for a in aug]))
    assert [N.adaptation_of(n) for n in N.NORMS] == ["none", "none", "speaker"]


def test_speaker_stats_shrink_towards_the_population():
    rng = np.random.default_rng(0)
    prior = {"mean": [0.0] * 3, "std": [1.0] * 3}
    own = rng.normal(5.0, 3.0, size=(400, 3))
    few = N.speaker_stats(own[:2], prior)
    many = N.speaker_stats(own, prior)
    # two utterances: the std stays near the population's, many: near the speaker's own
    assert np.all(np.abs(np.array(few["std"]) - 1.0) < np.abs(np.array(few["std"]) - 3.0))
    np.testing.assert_allclose(many["std"], own.std(0), rtol=0.05)
    np.testing.assert_allclose(many["mean"], own.mean(0), atol=0.05)
    with pytest.raises(ValueError):
        N.speaker_stats(np.zeros((0, 3)), prior)


def test_speaker_normalize_uses_each_group_alone():
    X = np.concatenate([np.full((5, 2), 10.0), np.full((5, 2), -3.0)])
    X += np.random.default_rng(1).normal(0, 1, X.shape)
    Z = N.speaker_normalize(X, np.array([1] * 5 + [2] * 5))
    np.testing.assert_allclose(Z[:5].mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(Z[5:].std(0), 1, atol=1e-4)


def test_a_sidecar_normalisation_is_judged_in_float32():
    ok = {"mean": [0.5, -2.0], "std": [1.0, 3.0]}
    assert N.normalization_problem(ok, 2) is None
    assert "has 2 means" in N.normalization_problem(ok, 3)
    assert "not finite in float32" in N.normalization_problem({"mean": [1e39, 0.0],
                                                                "std": [1.0, 1.0]}, 2)
    assert "std below" in N.normalization_problem({"mean": [0.0, 0.0], "std": [1e-10, 1.0]}, 2)


SHIPPED = [(p, json.loads(p.with_suffix(".json").read_text()))
           for p in sorted(ser.paths.MODELS_DIR.glob("*.h5")) if p.with_suffix(".json").exists()]


@pytest.mark.parametrize("path,side", SHIPPED, ids=[p.stem for p, _ in SHIPPED])
def test_the_shipped_sidecars_normalisation_is_refitted_exactly(path, side):
    """What train_final fits on the repository's features is the shipped sidecar's
    normalisation, bit for bit: the population's statistics of every row (per-speaker models),
    else those of the training rows, augmented copies included; and the per-speaker rows
    the model trained on are the old code's."""
    feature, subset = side["feature"], side["trained_on"]["subset"]
    augment = side["training"].get("augment", 0)
    try:
        ds = ser.protocols.load_dataset(feature, subset, augment=augment)
    except FileNotFoundError as e:
        pytest.skip(f"the repository's features are not made here (make features): {e}")
    if len(ds) != side["trained_on"]["rows"]:
        pytest.skip(f"{ds.source} is not the data {path.name} was trained on")
    if side["adaptation"] == "speaker":
        got = N.fit_normalization(ds.X, "global")
        sn = ds.speaker_normalized()
        assert same_bits(sn.X, old_speaker_normalize(ds.X, ds.meta["actor"]))
    else:
        Xtr, _, _ = ds.training_rows(np.arange(len(ds)))
        got = N.fit_normalization(Xtr, side["training"]["norm"])
        assert same_stats(got, old_fit_normalization(Xtr, side["training"]["norm"]))
    assert same_stats(got, side["normalization"])
