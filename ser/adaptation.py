"""Speaker adaptation at prediction time: the hook that says which normalisation a model's
input gets next (the arithmetic is :mod:`ser.normalization`'s)."""
from __future__ import annotations

import numpy as np

from ser.normalization import SPEAKER_PRIOR, shrunk_stats


class NoAdaptation:
    """The normalisation hook; this one keeps the sidecar's normalisation unchanged.

    Adaptive modes subclass it: :meth:`observe` receives the feature vector of every
    window of running audio that passed the energy gate (streaming only, before it is judged);
    :meth:`normalization` returns what :func:`ser.checkpoint.model_input` should apply
    next (``None`` or ``{"mean": [...], "std": [...]}``). The sidecar's ``adaptation`` key
    names the class in :data:`ADAPTATIONS` that a model was trained for.
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
