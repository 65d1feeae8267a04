"""Confidence that means what it says: temperature scaling and the calibration error.

A model's probabilities ``p`` become ``softmax(log(p) / T)``: ``T > 1`` softens an
over-confident model, ``T < 1`` sharpens a timid one; the ranking of the classes (and so the
label) never changes. ``T`` is fitted on speakers the model never trained on (the validation
actors of each fold of a protocol, and with ``--augment`` their augmented copies: the same
voices through other recording chains); an all-data model takes the temperature fitted across the
folds of its recipe's ``speaker`` protocol (``neural_network.py --protocol speaker``).
"""
from __future__ import annotations

import math

import numpy as np

T_MIN, T_MAX = 0.05, 20.0          # the search range of fit_temperature
N_BINS = 10                        # the bins of the calibration error and the diagram


def _check(proba: np.ndarray, y: np.ndarray | None = None, *, where: str) -> np.ndarray:
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] == 0:
        raise ValueError(f"{where}: probabilities must have shape (n > 0, classes); got "
                         f"{p.shape}")
    if not np.all(np.isfinite(p)) or np.any(p < 0):
        raise ValueError(f"{where}: probabilities must be finite and >= 0")
    if y is not None:
        y = np.asarray(y)
        if y.shape != (p.shape[0],):
            raise ValueError(f"{where}: labels must have shape ({p.shape[0]},); got {y.shape}")
        if y.min() < 0 or y.max() >= p.shape[1]:
            raise ValueError(f"{where}: labels must lie in 0..{p.shape[1] - 1}")
    return p


def apply_temperature(proba: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log(proba) / temperature)`` row by row; shape (n, classes), rows sum to 1."""
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature)
            and temperature > 0):
        raise ValueError(f"apply_temperature: temperature must be a finite number > 0; got "
                         f"{temperature!r}")
    p = _check(proba, where="apply_temperature")
    z = np.log(np.maximum(p, 1e-12)) / float(temperature)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def nll(proba: np.ndarray, y: np.ndarray) -> float:
    """Mean negative log-likelihood of the true labels."""
    p = _check(proba, y, where="nll")
    return float(-np.mean(np.log(np.maximum(p[np.arange(len(y)), y], 1e-12))))


def fit_temperature(proba: np.ndarray, y: np.ndarray) -> float:
    """The temperature in [T_MIN, T_MAX] that minimises the NLL of ``y`` (golden-section
    search on log T; the NLL is convex in 1/T)."""
    _check(proba, y, where="fit_temperature")
    f = lambda logt: nll(apply_temperature(proba, math.exp(logt)), y)   # noqa: E731
    a, b = math.log(T_MIN), math.log(T_MAX)
    g = (math.sqrt(5) - 1) / 2
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = f(c), f(d)
    while b - a > 1e-4:
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = f(d)
    return float(math.exp((a + b) / 2))


def reliability(proba: np.ndarray, y: np.ndarray, n_bins: int = N_BINS
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per confidence bin (``n_bins`` equal bins of the top probability): the mean
    confidence, the accuracy and the number of rows (empty bins: nan, nan, 0)."""
    p = _check(proba, y, where="reliability")
    conf = p.max(axis=1)
    right = p.argmax(axis=1) == np.asarray(y)
    bins = np.minimum((conf * n_bins).astype(int), n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(bins, conf, n_bins) / count
        acc = np.bincount(bins, right.astype(float), n_bins) / count
    return mean_conf, acc, count


def ece(proba: np.ndarray, y: np.ndarray, n_bins: int = N_BINS) -> float:
    """Expected calibration error: the row-weighted mean |accuracy - confidence| over bins."""
    conf, acc, count = reliability(proba, y, n_bins)
    keep = count > 0
    return float(np.sum(count[keep] * np.abs(acc[keep] - conf[keep])) / count.sum())


def selective(proba: np.ndarray, y: np.ndarray, thresholds=(0.3, 0.4, 0.5, 0.6, 0.7)
              ) -> dict[str, dict]:
    """For each threshold P (``--min-confidence P``): the fraction of rows whose top
    probability is at least P (``coverage``) and the accuracy on those (``accuracy``)."""
    p = _check(proba, y, where="selective")
    conf, right = p.max(axis=1), p.argmax(axis=1) == np.asarray(y)
    out = {}
    for t in thresholds:
        keep = conf >= t
        out[f"{t:g}"] = {"coverage": float(keep.mean()),
                         "accuracy": float(right[keep].mean()) if keep.any() else None}
    return out
