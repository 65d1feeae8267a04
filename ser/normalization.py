"""Feature normalisation, fitted and applied in one place.

Two kinds, both z-scores of the feature vectors (``{"mean": [...], "std": [...]}``):

- **global** (``--norm global``): one mean and std fitted on a training's rows
  (:func:`fit_normalization`); a saved model's sidecar carries it as ``normalization``.
- **per speaker** (``--norm speaker``): each speaker's rows z-scored with that speaker's own
  statistics (:func:`speaker_normalize` at training time); at prediction a speaker's statistics
  come from their own unlabelled audio, shrunk towards the population's (:func:`speaker_stats`,
  :func:`shrunk_stats`; the running estimate is :class:`ser.adaptation.SpeakerAdaptation`).
  The sidecar then carries the population's global statistics, as the fallback and the prior,
  and its ``adaptation`` is ``"speaker"`` (:func:`adaptation_of`).

:func:`normalize` applies either, in float32; :func:`normalization_problem` judges statistics
read from a sidecar. A saved model's input is :func:`ser.checkpoint.model_input` (this
normalisation, then the sidecar's input shape).

The arithmetic is the one the shipped models were trained with: global statistics in the
dtype of the rows given (float32), per-speaker ones in float64 stored as float32, applied in
float32; changing any of it changes the models that re-train from it.
"""
from __future__ import annotations

import numpy as np

NORMS = ("none", "global", "speaker")
"""The normalisations a training can ask for (``TrainConfig.norm``, ``--norm``)."""

SPEAKER_PRIOR = 10.0   # pseudo-utterances of the population statistics in a speaker's estimate

GLOBAL_STD_FLOOR = 1e-8    # a global std below this (a constant feature) is replaced by 1
SPEAKER_STD_FLOOR = 1e-6   # the same for a speaker's std

NORM_MIN_STD = 1e-9       # below both floors: a sidecar std under it was not written by training
NORM_MAX_ABS_MEAN = 1e12  # feature values are at most ~1e4 (Hz, dB, coefficients)


def adaptation_of(norm: str) -> str:
    """The sidecar's ``adaptation`` for a training's ``norm`` (:data:`NORMS`): ``"speaker"``
    for per-speaker normalisation, else ``"none"``."""
    return "speaker" if norm == "speaker" else "none"


def fit_normalization(X: np.ndarray, norm: str) -> dict | None:
    """The global z-score of the rows ``X`` (n, dim) for ``norm`` ``"global"``; ``None`` for
    ``"none"``. Mean and std are computed in ``X``'s dtype; a std below
    :data:`GLOBAL_STD_FLOOR` becomes 1.

    Raises
    ------
    ValueError
        Any other ``norm`` (per-speaker statistics are :func:`speaker_normalize`'s).
    """
    if norm == "none":
        return None
    if norm == "global":
        mean = X.mean(axis=0)
        std = X.std(axis=0)
        std[std < GLOBAL_STD_FLOOR] = 1.0
        return {"mean": mean.tolist(), "std": std.tolist()}
    raise ValueError(f"unknown normalisation {norm!r} (none or global)")


def normalize(X: np.ndarray, norm: dict | None) -> np.ndarray:
    """Apply the z-score ``norm`` (``None``: none) to the rows ``X``, in float32."""
    X = np.asarray(X, dtype=np.float32)
    if not norm:
        return X
    return (X - np.asarray(norm["mean"], np.float32)) / np.asarray(norm["std"], np.float32)


def speaker_stats(X: np.ndarray, prior: dict | None = None, *,
                  prior_weight: float = SPEAKER_PRIOR) -> dict:
    """Mean/std of one speaker's feature vectors, shrunk towards ``prior`` when few.

    Parameters
    ----------
    X : np.ndarray, shape (n_utterances, dim)
    prior : dict, optional
        Population ``{"mean", "std"}``; with it, the estimate is a weighted blend
        (``prior_weight`` pseudo-utterances), so that a speaker with 3 utterances gets mostly
        the population's std while one with 100 gets their own.

    Raises
    ------
    ValueError
        ``X`` has no rows.
    """
    X = np.asarray(X, dtype=np.float64)
    n = X.shape[0]
    if n == 0:
        raise ValueError("speaker statistics need at least one utterance")
    return shrunk_stats(n, X.mean(axis=0), X.var(axis=0), prior, prior_weight=prior_weight)


def shrunk_stats(n: int, mean: np.ndarray, var: np.ndarray, prior: dict | None = None, *,
                 prior_weight: float = SPEAKER_PRIOR) -> dict:
    """:func:`speaker_stats` from the moments of ``n`` utterances (for running estimates)."""
    mean = np.asarray(mean, dtype=np.float64)
    var = np.maximum(np.asarray(var, dtype=np.float64), 0.0)
    if prior is not None:
        pm, ps = np.asarray(prior["mean"], float), np.asarray(prior["std"], float)
        w = n / (n + prior_weight)
        # shrink the variance strongly, the mean lightly (a mean is reliable much sooner)
        mean = (n * mean + 1.0 * pm) / (n + 1.0)
        var = w * var + (1 - w) * ps ** 2
    std = np.sqrt(var)
    std[std < SPEAKER_STD_FLOOR] = 1.0
    return {"mean": mean.astype(np.float32).tolist(), "std": std.astype(np.float32).tolist(),
            "n": int(n)}


def speaker_normalize(X: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Z-score the rows of each group (speaker) with that group's own statistics
    (:func:`speaker_stats` without a prior, applied by :func:`normalize`), in float32."""
    X = np.asarray(X, dtype=np.float32)
    out = np.empty_like(X)
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        out[idx] = normalize(X[idx], speaker_stats(X[idx]))
    return out


def normalization_problem(norm: dict, dim: int) -> str | None:
    """What is wrong with a z-score normalisation ``{"mean": [...], "std": [...]}`` of a
    ``dim``-value feature set, judged in float32, the dtype it is applied in
    (:func:`normalize`): a value that is finite in float64 can overflow there. ``None``: it
    is one that training can have written."""
    with np.errstate(over="ignore"):
        mean = np.asarray(norm["mean"], np.float64).astype(np.float32)
        std = np.asarray(norm["std"], np.float64).astype(np.float32)
    if mean.shape != (dim,) or std.shape != (dim,):
        return (f"has {mean.size} means and {std.size} stds, but the feature set has {dim} "
                f"values")
    if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std))):
        return "has values that are not finite in float32"
    if not (np.all(std >= NORM_MIN_STD) and np.all(np.abs(mean) <= NORM_MAX_ABS_MEAN)):
        return (f"has a std below {NORM_MIN_STD:g} or a mean beyond {NORM_MAX_ABS_MEAN:g}, "
                f"which training never writes")
    return None
