"""BYOL-S behind the encoder protocol (:class:`ser.encoders.Encoder`).

BYOL-S (SERAB, Scheidwasser-Clow et al., ICASSP 2022; MIT) is ported to numpy in
:mod:`ser.byols` (its log-mel, normalisation and convolutional encoder: (n_frames, 512)
frames); its weights are the ``.npz`` that ``python -m ser.cli.encoder`` converts once into
``models/`` (:mod:`ser.encoder`: the file, its checksum, its licence). This module only joins
the two into the protocol, so that the feature-set table treats BYOL-S as it treats Whisper.
"""
from __future__ import annotations

import os
import types

import numpy as np

from ser import byols
from ser import encoder as weights

NAME = weights.NAME
DIM = byols.EMBED_DIM
"""Width of one frame."""
SAMPLE_RATE = byols.SAMPLE_RATE
POOLINGS = types.MappingProxyType(dict(byols.POOLINGS))


class BYOLSEncoder:
    """BYOL-S's frames of a clip, its pooling, its weights' check.

    Parameters
    ----------
    path : path-like, optional, keyword-only
        The converted ``.npz``; default :func:`ser.encoder.weights_path` (``models/``, or
        ``SER_BYOLS_WEIGHTS``). Nothing is read until the encoder is first used.
    """

    name = NAME
    dim = DIM
    sample_rate = SAMPLE_RATE
    poolings = POOLINGS

    def __init__(self, *, path: str | os.PathLike | None = None):
        self.path = path

    def __repr__(self) -> str:
        return f"BYOLSEncoder(path={self.path!r})"

    def params(self) -> dict:
        """The weights (file, sha256, the checkpoint's) and the front end; the pooling is the
        feature set's (see :func:`ser.encoder.feature_params`, which adds it)."""
        out = weights.feature_params()
        del out["pooling"]
        return out

    def check_weights(self) -> None:
        """Raise :class:`ser.encoder.EncoderError` (a :class:`ser.encoders.WeightsError`), one
        line naming the file, when the weights are missing or not the pinned ones."""
        weights.load_encoder(self.path)

    def frames(self, y: np.ndarray, *, sr: int) -> np.ndarray:
        """Frames of one clip (:func:`ser.byols.clip_frames` with these weights): resampled to
        16 kHz (soxr_hq), BYOL-S's log-mel, normalised, the encoder. Shape (n_frames, 512)."""
        return byols.clip_frames(y, sr=sr, encoder=weights.load_encoder(self.path))

    def pool(self, frames: np.ndarray, *, method: str = weights.POOLING) -> np.ndarray:
        """See :func:`ser.byols.pool`."""
        return byols.pool(frames, method=method)
