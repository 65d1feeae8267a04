"""Augmented copies of an utterance: another voice (speed) through another channel."""
from __future__ import annotations

import zlib

import numpy as np

from ser.audio import SAMPLE_RATE, AudioError, resample

AUGMENT_VERSION = 2            # 2: the recording chain (band, room, codec), noise to 40 dB SNR
AUGMENT_SPEED = (0.88, 1.12)   # speed perturbation: pitch and tempo together (another voice)


def augment_chain():
    """The channel an augmented copy goes through (audiomentations): a random 7-band EQ
    (another microphone and room), often band-limiting (telephone, small speaker, rumble
    filter), often noise at 10-40 dB SNR, and a gain change. :func:`recording_chain` follows
    it."""
    import audiomentations as A
    return A.Compose([
        A.SevenBandParametricEQ(min_gain_db=-8.0, max_gain_db=8.0, p=1.0),
        A.OneOf([A.LowPassFilter(min_cutoff_freq=3000.0, max_cutoff_freq=7500.0, p=1.0),
                 A.HighPassFilter(min_cutoff_freq=80.0, max_cutoff_freq=400.0, p=1.0),
                 A.BandPassFilter(min_center_freq=800.0, max_center_freq=2000.0, p=1.0)],
                p=0.6),
        A.AddGaussianSNR(min_snr_db=10.0, max_snr_db=40.0, p=0.6),
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
    y = recording_chain(np.clip(y, -1.0, 1.0).astype(np.float32), sr, rng=rng,
                        noise_seed=zlib.crc32(f"room|{seed}|{rel}".encode()))
    return np.clip(y, -1.0, 1.0).astype(np.float32)


CHAIN_RATES = (8000, 11025, 16000)      # what phones, headsets and old recorders deliver
CHAIN_CODECS = (("MP3", "MPEG_LAYER_III"), ("OGG", "OPUS"))


def recording_chain(y: np.ndarray, sr: int, *, rng: np.random.Generator,
                    noise_seed: int) -> np.ndarray:
    """The device and room of a virtual speaker (drawn from ``rng``, one per actor and copy):
    with probability 0.35 a lower sample rate (8, 11.025 or 16 kHz and back: the band a phone
    or a headset keeps), 0.3 a small room (an exponentially decaying noise impulse response,
    RT60 0.15-0.6 s, mixed 20-50 %), 0.3 a lossy codec (MP3 or Opus at 16 kHz, libsndfile,
    compression level 0.3-0.9). Shape (about n,), float32."""
    band, room, codec = rng.random(3) < (0.35, 0.3, 0.3)
    rate = int(rng.choice(CHAIN_RATES))
    rt60, wet = float(rng.uniform(0.15, 0.6)), float(rng.uniform(0.2, 0.5))
    fmt, subtype = CHAIN_CODECS[int(rng.integers(len(CHAIN_CODECS)))]
    level = float(rng.uniform(0.3, 0.9))
    n = len(y)
    if band:
        y = resample(resample(y, sr, sr=rate), rate, sr=sr)[:n]
    if room:
        t = np.arange(int(rt60 * sr)) / sr
        ir = np.random.default_rng(noise_seed).standard_normal(len(t)) * 10 ** (-3 * t / rt60)
        ir = (ir / np.sqrt(np.sum(ir ** 2))).astype(np.float64)
        m = 1 << int(np.ceil(np.log2(n + len(ir))))
        tail = np.fft.irfft(np.fft.rfft(y, m) * np.fft.rfft(ir, m), m)[:n]
        dry = np.sqrt(np.mean(y.astype(np.float64) ** 2)) + 1e-12
        tail *= dry / (np.sqrt(np.mean(tail ** 2)) + 1e-12)
        y = ((1 - wet) * y + wet * tail).astype(np.float32)
    if codec:
        y = _codec(y, sr, fmt, subtype, level)[:n]
    return np.asarray(y, np.float32)


def _codec(y: np.ndarray, sr: int, fmt: str, subtype: str, level: float) -> np.ndarray:
    """``y`` encoded with a lossy codec at 16 kHz in memory and decoded back to ``sr``."""
    import io

    import soundfile as sf
    buf = io.BytesIO()
    sf.write(buf, np.clip(resample(y, sr, sr=16000), -1, 1), 16000, format=fmt,
             subtype=subtype, compression_level=level)
    buf.seek(0)
    z, rate = sf.read(buf, dtype="float32")
    return resample(z if z.ndim == 1 else z.mean(axis=1), rate, sr=sr)
