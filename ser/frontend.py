"""The speech front end of the learned feature sets: hear the voice, not the recording chain.

A user's recording differs from the training corpora in everything but the emotion: its rate
(phones and headsets give 16 kHz), its gain, the silence and noise floor around the speech,
its codec. The learned sets (``stats``, ``whisper``) therefore see every clip through one
front end, the same in training, files, ``--timeline``, ``--stream`` and the Python API:

1. **The band every input shares**: resampled to 16 kHz (soxr_hq), so that nothing above
   8 kHz (absent from a 16 kHz input, shaped by MP3 encoders) enters a feature.
2. **Speech frames**: 25 ms frames every 10 ms whose level is within :data:`SPEECH_RANGE_DB`
   of the clip's loudest frame and at least :data:`ABOVE_FLOOR_DB` above its noise floor
   (the 10th percentile of frame levels). Leading and trailing silence, padding and the
   pauses' noise floor do not enter the statistics (the loudest frame, unlike a percentile,
   does not move when silence is added).
3. **Loudness**: the clip scaled so that the RMS of its active speech (the frames within
   :data:`ACTIVE_RANGE_DB` of the loudest: how many quiet frames a clip has does not move it)
   is :data:`TARGET_DBFS`, with a gain of at most :data:`MAX_GAIN_DB`; the chain's gain is
   gone.

Why levels and not the Silero detector of :mod:`ser.vad` (which finds utterances in long
recordings): it costs 30-130 ms a 3 s clip here, more than all features and the model together;
within one clip the frames' levels are enough to tell its speech from its pauses.

The mfcc set and the improved CNN keep the original's front end (22050 Hz, no normalisation):
they reproduce the original.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ser.audio import resample

RATE = 16000                  # Hz: the front end's band (and every speech encoder's rate)
FRAME = 400                   # samples: 25 ms
HOP = 160                     # samples: 10 ms
TARGET_DBFS = -25.0           # the speech frames' RMS after normalisation
MAX_GAIN_DB = 50.0            # a quieter clip is raised by at most this
SPEECH_RANGE_DB = 35.0        # speech frames: within this of the loudest frame ...
ABOVE_FLOOR_DB = 6.0          # ... and at least this above the noise floor
ACTIVE_RANGE_DB = 15.0        # loudness: the RMS of the frames within this of the loudest
FLOOR_PERCENTILE = 10
SPAN_MARGIN = 0.2             # s: context kept either side of the speech for the encoders
VERSION = 1                   # bump when what the front end computes changes

PARAMS = {"frontend": VERSION, "rate": RATE, "frame": FRAME, "hop": HOP,
          "target_dbfs": TARGET_DBFS, "max_gain_db": MAX_GAIN_DB,
          "speech_range_db": SPEECH_RANGE_DB, "above_floor_db": ABOVE_FLOOR_DB,
          "active_range_db": ACTIVE_RANGE_DB}
"""What defines the front end: part of every learned set's parameters (caches, sidecars);
:data:`SPAN_MARGIN` is a parameter of the sets that use :meth:`Speech.segment`."""


@dataclass(frozen=True)
class Speech:
    """One clip through the front end.

    Attributes
    ----------
    y : np.ndarray, shape (n,), float32
        The clip at :data:`RATE`, loudness-normalised.
    speech : np.ndarray, shape (n_frames,), bool
        Which 10 ms frames (centred at ``i * HOP``) are speech.
    gain_db : float
        The gain applied.
    """
    y: np.ndarray
    speech: np.ndarray
    gain_db: float

    def mask_at(self, n_frames: int, hop_seconds: float, *, offset: float = 0.0) -> np.ndarray:
        """The speech mask for another frame grid: frame ``j`` centred at
        ``offset + j * hop_seconds`` seconds is speech when the nearest front-end frame is
        (a frame centred more than one front-end hop outside the clip is not). Where no frame
        is speech (a clip that is all one level), every frame is taken."""
        t = offset + np.arange(n_frames) * hop_seconds
        pos = np.rint(t * RATE / HOP).astype(np.int64)
        inside = (pos >= -1) & (pos <= len(self.speech))
        mask = self.speech[np.clip(pos, 0, len(self.speech) - 1)] & inside
        return mask if mask.any() else np.ones(n_frames, bool)

    def segment(self, *, margin: float = SPAN_MARGIN) -> tuple[np.ndarray, int]:
        """The audio from the first speech frame to the last, with ``margin`` seconds either
        side, zero-padded where the margin passes an end of the clip: what an encoder whose
        frames see their whole input (Whisper's attention) should hear, so that the silence,
        padding or noise floor around an utterance does not reach the frames of its speech.

        Returns
        -------
        y : np.ndarray, shape (n,), float32
        start : int
            The sample of :attr:`y` where the segment starts (negative when zero-padded).
        """
        idx = np.flatnonzero(self.speech)
        if not idx.size:
            return self.y, 0
        pad = int(round(margin * RATE))
        start = int(idx[0]) * HOP - FRAME // 2 - pad
        end = int(idx[-1]) * HOP + FRAME // 2 + pad
        seg = self.y[max(start, 0):min(end, len(self.y))]
        seg = np.pad(seg, (max(0, -start), max(0, end - len(self.y))))
        return np.ascontiguousarray(seg, np.float32), start


def frame_levels(y: np.ndarray) -> np.ndarray:
    """Level (dBFS, RMS) of 25 ms frames every 10 ms, centred (edges zero-padded), of the
    signal's variation (its mean removed). Shape (1 + len(y) // HOP,)."""
    y = np.asarray(y, np.float32)
    y = y - np.float32(np.mean(y, dtype=np.float64))
    padded = np.pad(y, FRAME // 2)
    n = 1 + len(y) // HOP
    idx = np.arange(FRAME)[None, :] + HOP * np.arange(n)[:, None]
    frames = padded[np.minimum(idx, len(padded) - 1)]
    ms = np.einsum("ij,ij->i", frames, frames, dtype=np.float64) / FRAME
    return 10.0 * np.log10(np.maximum(ms, 1e-20))


def speech_frames(levels: np.ndarray) -> np.ndarray:
    """Which frames are speech, from their levels (see the module's step 2)."""
    floor = np.percentile(levels, FLOOR_PERCENTILE)
    return levels >= max(float(np.max(levels)) - SPEECH_RANGE_DB, floor + ABOVE_FLOOR_DB)


def speech(y: np.ndarray, sr: int) -> Speech:
    """A clip through the front end (band, speech frames, loudness).

    Parameters
    ----------
    y : np.ndarray, shape (n_samples,)
        Mono audio, finite (checked by the caller: :func:`ser.audio.check_samples`).
    sr : int
        Its rate.
    """
    y16 = resample(y, sr, sr=RATE)
    levels = frame_levels(y16)
    mask = speech_frames(levels)
    if not mask.any():
        mask = np.ones_like(mask)
    active = levels[levels >= float(np.max(levels)) - ACTIVE_RANGE_DB]
    ms = float(np.mean(10.0 ** (active / 10.0)))
    gain_db = float(min(MAX_GAIN_DB, TARGET_DBFS - 10.0 * np.log10(max(ms, 1e-20))))
    y16 = (y16 - np.float32(np.mean(y16, dtype=np.float64))) * np.float32(10 ** (gain_db / 20))
    return Speech(np.ascontiguousarray(y16, np.float32), mask, gain_db)
