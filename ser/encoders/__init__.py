"""Pretrained speech encoders behind one interface.

An encoder turns a clip into a matrix of frame vectors, and a pooling turns that matrix into one
utterance vector that a feature set stores and a model is trained on. Everything a feature set,
the extraction, a model's sidecar and the predictor need to know about an encoder is in the
:class:`Encoder` protocol below, so that a new encoder is one module implementing it and one
``ser.features.encoder_set(name, version, help, encoder, pooling=...)`` entry in the
feature-set table (``tests/test_extending.py`` adds a third one so).

Implementations
---------------
- :mod:`ser.encoders.whisper`: Whisper tiny.en's encoder (OpenAI, MIT) run by CTranslate2, on
  Whisper's log-mel of the clip's own length: (n_frames, 384) frames.
- :mod:`ser.encoders.byols`: BYOL-S (SERAB, MIT), the numpy port of :mod:`ser.byols` with the
  weights :mod:`ser.encoder` converts into ``models/``: (n_frames, 512) frames.

The protocol
------------
An encoder object is cheap to make: it does not read its weights until it is first used, so a
table of encoders can be built at import time. :meth:`Encoder.check_weights` verifies the
weights (present, sha256 as pinned) once, before thousands of clips are extracted, and raises
:class:`WeightsError` or :class:`FetchError` with one line naming the file. The pooled vector of
a clip is ``encoder.pool(encoder.frames(y, sr=sr), method=...)`` (:func:`embed`).

``encoder.params()`` is what a sidecar records about the encoder (its name, the checksums of
its weights, the front end, the pooling, the compute type): a model trained on one encoder's
features is refused with an encoder whose parameters differ.
"""
from __future__ import annotations

from typing import Mapping, Protocol, runtime_checkable

import numpy as np

from ser.audio import mono_samples
from ser.errors import SerError
from ser.fetch import FetchError

__all__ = ["Encoder", "WeightsError", "FetchError", "embed", "mean_std"]


class WeightsError(SerError, ValueError):
    """An encoder's weights cannot be used: missing, or not the pinned files (the message is one
    line naming the file and, for a mismatch, both checksums)."""




@runtime_checkable
class Encoder(Protocol):
    """What every pretrained speech encoder of the project provides.

    Attributes
    ----------
    name : str
        Short, stable identifier used in feature parameters and sidecars
        (e.g. ``"whisper_tiny_en"``).
    dim : int
        Width of one frame vector (the encoder's output width): :meth:`frames` returns
        ``(n_frames, dim)``.
    sample_rate : int
        The rate the encoder's front end works at; :meth:`frames` resamples other rates.
    poolings : Mapping[str, int]
        Pooling methods this encoder offers and the width of the vector each gives.
    """

    name: str
    dim: int
    sample_rate: int
    poolings: Mapping[str, int]

    def params(self) -> dict:
        """Parameters for a sidecar or a feature cache: JSON-serialisable, and equal for two
        encoder objects exactly when they compute the same frames.

        Returns
        -------
        params : dict
            At least ``"encoder"`` (:attr:`name`) and the sha256 of every weights file.
        """
        ...

    def check_weights(self) -> None:
        """Verify the weights now (fetch them first where the encoder downloads them).

        Raises
        ------
        WeightsError
            Missing, or a file's sha256 is not the pinned one.
        FetchError
            A download was needed and failed.
        """
        ...

    def frames(self, y: np.ndarray, *, sr: int) -> np.ndarray:
        """The frame matrix of one clip.

        Parameters
        ----------
        y : np.ndarray, shape (n_samples,)
            Mono audio, finite.
        sr : int, keyword-only
            Its sample rate (resampled to :attr:`sample_rate` if it differs).

        Returns
        -------
        frames : np.ndarray, shape (n_frames, dim), float32
            ``n_frames >= 1``.
        """
        ...

    def pool(self, frames: np.ndarray, *, method: str) -> np.ndarray:
        """One vector from a frame matrix.

        Parameters
        ----------
        frames : np.ndarray, shape (n_frames, dim)
            :meth:`frames`.
        method : str, keyword-only
            One of :attr:`poolings`.

        Returns
        -------
        vector : np.ndarray, shape (poolings[method],), float32
        """
        ...


def embed(encoder: Encoder, y: np.ndarray, *, sr: int, method: str) -> np.ndarray:
    """The pooled vector of one clip: ``encoder.pool(encoder.frames(y, sr=sr), method=method)``.

    Parameters
    ----------
    encoder : Encoder
    y : np.ndarray, shape (n_samples,)
        Mono audio at ``sr``.
    sr : int, keyword-only
    method : str, keyword-only
        One of ``encoder.poolings``.

    Returns
    -------
    vector : np.ndarray, shape (encoder.poolings[method],), float32
    """
    if not isinstance(encoder, Encoder):
        raise TypeError(f"{__name__}.embed: encoder must implement ser.encoders.Encoder; got "
                        f"{type(encoder).__name__}")
    if method not in encoder.poolings:
        raise ValueError(f"{__name__}.embed: method must be one of {sorted(encoder.poolings)} "
                         f"for {encoder.name}; got {method!r}")
    return encoder.pool(encoder.frames(y, sr=sr), method=method)


def check_clip(y, *, where: str, what: str = "y") -> np.ndarray:
    """``y`` as contiguous float32 mono samples, finite; else ValueError naming ``where`` (the
    caller, module included) and the rule."""
    return mono_samples(y, name=f"{where}: {what}", integers=True)


def mean_std(frames: np.ndarray, *, dim: int | None = None, where: str = "mean_std"
             ) -> np.ndarray:
    """Mean over frames, then the standard deviation over frames (population, ddof 0).

    Parameters
    ----------
    frames : np.ndarray, shape (n_frames, d)
        ``n_frames >= 1``, finite.
    dim : int, optional, keyword-only
        If given, ``d`` must equal it.
    where : str, keyword-only
        Named in the error messages (the caller).

    Returns
    -------
    vector : np.ndarray, shape (2 * d,), float32
        ``[mean_0 ... mean_{d-1}, std_0 ... std_{d-1}]``; the statistics are accumulated in
        float64 and rounded once.
    """
    frames = np.asarray(frames)
    if frames.ndim != 2 or frames.shape[0] < 1 or (dim is not None and frames.shape[1] != dim):
        want = f"(n_frames >= 1, {dim})" if dim is not None else "(n_frames >= 1, d)"
        raise ValueError(f"{where}: frames must have shape {want}; got {frames.shape}")
    if not np.issubdtype(frames.dtype, np.floating):
        raise ValueError(f"{where}: frames must be floating point; got dtype {frames.dtype}")
    f = frames.astype(np.float64)
    if not np.all(np.isfinite(f)):
        raise ValueError(f"{where}: frames contain NaN or infinite values")
    return np.concatenate([f.mean(axis=0), f.std(axis=0)]).astype(np.float32)
