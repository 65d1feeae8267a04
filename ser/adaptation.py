"""Speaker adaptation: per-speaker statistics, shrunk towards the population's."""
from __future__ import annotations

import numpy as np

SPEAKER_PRIOR = 10.0   # pseudo-utterances of the population statistics in a speaker's estimate


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
    std[std < 1e-6] = 1.0
    return {"mean": mean.astype(np.float32).tolist(), "std": std.astype(np.float32).tolist(),
            "n": int(n)}


def speaker_normalize(X: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Z-score the rows of each group (speaker) with that group's own statistics."""
    X = np.asarray(X, dtype=np.float32)
    out = np.empty_like(X)
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        st = speaker_stats(X[idx])
        out[idx] = (X[idx] - np.asarray(st["mean"], np.float32)) / np.asarray(st["std"],
                                                                              np.float32)
    return out


class NoAdaptation:
    """The normalisation hook; this one keeps the sidecar's normalisation unchanged.

    Adaptive modes subclass it: :meth:`observe` receives the feature vector of every
    window of running audio that passed the energy gate (streaming only, before it is judged);
    :meth:`normalization` returns what :func:`model_input` should apply next
    (``None`` or ``{"mean": [...], "std": [...]}``). The sidecar's ``adaptation`` key names the
    class in :data:`ADAPTATIONS` that a model was trained for.
    """
    name = "none"

    def __init__(self, meta: dict):
        self.meta = meta

    def observe(self, vector: np.ndarray) -> None:
        """Update statistics from one feature vector of running audio (no-op here)."""

    def normalization(self) -> dict | None:
        return self.meta.get("normalization")


class SpeakerAdaptation(NoAdaptation):
    """Per-speaker normalisation, for models trained with ``--norm speaker``.

    The speaker's own unlabelled audio (``--enrol`` files, and in ``--stream`` every window
    that passed the gate) gives their feature mean and std, shrunk towards the population's
    (the sidecar's ``normalization``, weighted as ``speaker_prior_weight`` utterances) so that a
    few utterances cannot throw the estimate far off. Before any audio is seen it is the
    population's normalisation. The model itself never changes.
    """
    name = "speaker"

    def __init__(self, meta: dict):
        super().__init__(meta)
        self.n = 0
        self._sum = self._sumsq = 0.0      # running moments: O(1) per window
        self.prior_weight = float(meta.get("speaker_prior_weight", SPEAKER_PRIOR))
        self._norm = meta.get("normalization")

    def observe(self, vector: np.ndarray) -> None:
        v = np.asarray(vector, dtype=np.float64)
        self.n += 1
        self._sum = self._sum + v
        self._sumsq = self._sumsq + v * v
        mean = self._sum / self.n
        self._norm = shrunk_stats(self.n, mean, self._sumsq / self.n - mean * mean,
                                     self.meta["normalization"],
                                     prior_weight=self.prior_weight)

    def normalization(self) -> dict | None:
        return self._norm


ADAPTATIONS: dict[str, type[NoAdaptation]] = {"none": NoAdaptation,
                                              "speaker": SpeakerAdaptation}
