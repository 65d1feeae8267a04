"""Augmented copies of an utterance: another voice (speed) through another channel."""
from __future__ import annotations

import zlib

import numpy as np

from ser.audio import SAMPLE_RATE, AudioError, resample

AUGMENT_VERSION = 1
AUGMENT_SPEED = (0.88, 1.12)   # speed perturbation: pitch and tempo together (another voice)


def augment_chain():
    """The channel an augmented copy goes through (audiomentations): a random 7-band EQ
    (another microphone and room), often band-limiting (telephone, small speaker, rumble
    filter), often noise at 10-35 dB SNR, and a gain change."""
    import audiomentations as A
    return A.Compose([
        A.SevenBandParametricEQ(min_gain_db=-8.0, max_gain_db=8.0, p=1.0),
        A.OneOf([A.LowPassFilter(min_cutoff_freq=3000.0, max_cutoff_freq=7500.0, p=1.0),
                 A.HighPassFilter(min_cutoff_freq=80.0, max_cutoff_freq=400.0, p=1.0),
                 A.BandPassFilter(min_center_freq=800.0, max_center_freq=2000.0, p=1.0)],
                p=0.6),
        A.AddGaussianSNR(min_snr_db=10.0, max_snr_db=35.0, p=0.6),
        A.Gain(min_gain_db=-12.0, max_gain_db=6.0, p=1.0),
    ])


COPY_SILENT_PEAK_DBFS = -60.0
"""An augmented copy whose peak the gain took to or below this is left out (the file keeps its
original features as that copy). A rule of the training data, not of judging (that is
:func:`ser.audio.check_signal`): unchanged since the shipped models' features were made, so
that they re-train byte for byte."""


def check_copy_level(ya: np.ndarray) -> None:
    """Refuse (AudioError) a copy made silent by its gain (:data:`COPY_SILENT_PEAK_DBFS`)."""
    peak = float(np.max(np.abs(ya))) if ya.size else 0.0
    if peak <= 10 ** (COPY_SILENT_PEAK_DBFS / 20):
        raise AudioError(f"silent (peak {20 * np.log10(max(peak, 1e-12)):.0f} dBFS "
                         f"< {COPY_SILENT_PEAK_DBFS:.0f} dBFS), no speech detected")


def augment(y: np.ndarray, *, actor: int, copy: int, rel: str, sr: int = SAMPLE_RATE
            ) -> np.ndarray:
    """Augmented copy number ``copy`` (1, 2, ...) of one utterance of ``actor``.

    Every utterance of one actor in one copy goes through the same speed factor and the same
    channel (a "virtual speaker" with their own microphone, so that per-speaker statistics
    mean something for copies too); the noise differs per file. Deterministic: the result
    depends only on the audio, ``actor``, ``copy`` and ``rel`` (not on the order of work).

    Parameters
    ----------
    y : np.ndarray, shape (n_samples,)
        Mono audio at ``sr``.
    actor, copy : int, keyword-only
    rel : str, keyword-only
        The file's path relative to the features folder (seeds its noise).

    Returns
    -------
    np.ndarray, shape (about n_samples / speed factor,), float32 in [-1, 1]
    """
    import random
    if copy < 1:
        raise ValueError(f"augmented copy numbers start at 1, got {copy}")
    seed = zlib.crc32(f"aug{AUGMENT_VERSION}|{actor}|{copy}".encode())
    rng = np.random.default_rng(seed)
    factor = float(rng.uniform(*AUGMENT_SPEED))
    y = resample(np.asarray(y, np.float32), int(round(sr * factor)), sr=sr)
    chain = augment_chain()
    # audiomentations draws from the global generators: seed them, and give the caller's back
    saved = random.getstate(), np.random.get_state()
    try:
        random.seed(seed)
        np.random.seed(seed)
        chain.randomize_parameters(samples=y, sample_rate=sr)   # the virtual speaker's channel
        chain.freeze_parameters()
        np.random.seed(zlib.crc32(f"{seed}|{rel}".encode()))     # this file's noise
        y = chain(samples=y, sample_rate=sr)
    finally:
        random.setstate(saved[0])
        np.random.set_state(saved[1])
    return np.clip(y, -1.0, 1.0).astype(np.float32)
