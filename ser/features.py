"""The feature sets: one table (size, version, parts, parameters, computation).

Adding a feature set is one entry in :data:`SETS`: a cached set has a ``compute`` function
(an :class:`Utterance` -> a vector of ``dim`` values), a composite set lists its ``parts``
(cached sets, concatenated in that order, never computed again). Everything else (the
``--feature`` choices and help, the per-file cache, the ``.joblib`` files, the model sidecars)
is derived from the table.
"""
from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ser import encoder as byols_encoder  # the BYOL-S encoder's weights and feature set
from ser import numba_cache  # every librosa call goes through numba_cache.librosa()
from ser.audio import (
    HOP_LENGTH,
    MIN_SAMPLES,
    N_FFT,
    SAMPLE_RATE,
    AudioError,
    check_signal,
)

N_MFCC = 40
N_CHROMA = 12
N_CONTRAST_BANDS = 6           # spectral contrast gives n_bands + 1 = 7 values
TRIM_TOP_DB = 30               # "stats": silence trimmed before pooling
STATS = ("mean", "std", "min", "max", "p10", "p50", "p90")
# "stats" frames: MFCC 40 + deltas + delta-deltas, chroma 12, contrast 7, RMS, ZCR, spectral
# centroid, bandwidth, roll-off, flatness; each pooled by STATS over the frames
STATS_FRAME_DIM = 3 * N_MFCC + N_CHROMA + (N_CONTRAST_BANDS + 1) + 6
FEATURE_PARAMS = {"sample_rate": SAMPLE_RATE, "n_fft": N_FFT, "hop_length": HOP_LENGTH,
                  "n_mfcc": N_MFCC, "n_chroma": N_CHROMA, "n_contrast_bands": N_CONTRAST_BANDS,
                  "resampler": "soxr_hq", "pooling": "mean"}


class Utterance:
    """One utterance being featurised: its audio and the work its sets share (one STFT)."""

    def __init__(self, y: np.ndarray, sr: int):
        self.y, self.sr = y, sr

    @functools.cached_property
    def magnitude(self) -> np.ndarray:
        """|STFT|, shape (1 + N_FFT // 2, n_frames)."""
        librosa = numba_cache.librosa()
        return np.abs(librosa.stft(self.y, n_fft=N_FFT, hop_length=HOP_LENGTH))


@dataclass(frozen=True)
class FeatureSet:
    """One entry of :data:`SETS`."""
    name: str
    dim: int
    version: int                 # bump when the code changes what the set computes
    help: str                    # a few words for --help
    compute: Callable[[Utterance], np.ndarray] | None = None   # cached sets
    parts: tuple[str, ...] = ()  # composite sets: the cached sets concatenated, in order
    params: dict = field(default_factory=lambda: FEATURE_PARAMS)  # what defines its values
    encoder: bool = False        # needs the BYOL-S encoder's weights (ser/encoder.py)


def _mfcc(u: Utterance) -> np.ndarray:
    librosa = numba_cache.librosa()
    return librosa.feature.mfcc(S=_log_mel(u.magnitude ** 2, u.sr), n_mfcc=N_MFCC).mean(axis=1)


def _chroma(u: Utterance) -> np.ndarray:
    librosa = numba_cache.librosa()
    return librosa.feature.chroma_stft(S=u.magnitude, sr=u.sr, n_chroma=N_CHROMA).mean(axis=1)


def _contrast(u: Utterance) -> np.ndarray:
    librosa = numba_cache.librosa()
    return librosa.feature.spectral_contrast(S=u.magnitude, sr=u.sr,
                                             n_bands=N_CONTRAST_BANDS).mean(axis=1)


def _stats(u: Utterance) -> np.ndarray:
    return _pooled_stats(u.y, u.sr)


def _byols(u: Utterance) -> np.ndarray:
    return byols_encoder.vector(u.y, u.sr)


def _table(*sets: FeatureSet) -> dict[str, FeatureSet]:
    out: dict[str, FeatureSet] = {}
    for s in sets:
        if s.parts:        # a composite: its size and needs come from its parts
            bad = [p for p in s.parts if p not in out or out[p].parts]
            if bad:
                raise ValueError(f"feature set {s.name}: parts {bad} are not cached sets "
                                 f"listed before it")
            s = FeatureSet(s.name, sum(out[p].dim for p in s.parts), s.version, s.help,
                           parts=s.parts, params=s.params,
                           encoder=any(out[p].encoder for p in s.parts))
        out[s.name] = s
    return out


SETS: dict[str, FeatureSet] = _table(
    FeatureSet("mfcc", N_MFCC, 1, "MFCC means over time", _mfcc),
    FeatureSet("chroma", N_CHROMA, 1, "chroma means", _chroma),
    FeatureSet("contrast", N_CONTRAST_BANDS + 1, 1, "spectral contrast means", _contrast),
    FeatureSet("combined", 0, 1, "the three above", parts=("mfcc", "chroma", "contrast")),
    FeatureSet("stats", STATS_FRAME_DIM * len(STATS), 5, "pooled statistics", _stats),
    FeatureSet("byols", byols_encoder.DIM, byols_encoder.VERSION, "the BYOL-S encoder",
               _byols, params=byols_encoder.feature_params(), encoder=True),
    FeatureSet("stats_byols", 0, 1, "stats and byols", parts=("stats", "byols")),
)
"""Every feature set, by name, in the order of ``--feature all``."""

# views of the table
FEATURE_SETS = tuple(SETS)
CACHED_FEATURES = tuple(n for n, s in SETS.items() if not s.parts)   # computed, cached per file
COMPOSITE_SETS = {n: s.parts for n, s in SETS.items() if s.parts}
FEATURE_DIMS = {n: s.dim for n, s in SETS.items()}
FEATURE_VERSIONS = {n: s.version for n, s in SETS.items()}


def describe_sets() -> str:
    """``mfcc (MFCC means over time, 40), ...``: the table for --help."""
    return ", ".join(f"{s.name} ({s.help}, {s.dim})" for s in SETS.values())


def parts_of(feature: str) -> tuple[str, ...]:
    """The cached sets a feature set is made of: its parts if composite, else itself."""
    return COMPOSITE_SETS.get(feature, (feature,))


def needs_encoder(feature: str) -> bool:
    """Whether the set needs the BYOL-S encoder's weights (ser/encoder.py)."""
    s = SETS.get(feature)
    return bool(s and s.encoder)


def feature_params(feature: str) -> dict:
    """Parameters that define a feature set (stored in caches and model sidecars).

    A composite set whose parts share their parameters (``combined``) has them flat, as a
    cached set; one whose parts differ (``stats_byols``) lists each part's under ``parts``.
    """
    if feature not in FEATURE_SETS:
        raise ValueError(f"unknown feature set {feature!r} (choose from {', '.join(FEATURE_SETS)})")
    head = {"feature": feature, "dim": FEATURE_DIMS[feature], "version": FEATURE_VERSIONS[feature]}
    parts = parts_of(feature)
    own = [SETS[p].params for p in parts]
    if all(o == own[0] for o in own):
        return {**head, **own[0]}
    return {**head, "parts": {p: feature_params(p) for p in parts}}


def params_hash(params: dict) -> str:
    return hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]


@functools.lru_cache(maxsize=None)
def _mel_basis(sr: int) -> np.ndarray:
    """librosa.filters.mel for N_FFT, built once per rate (~1 ms per call otherwise)."""
    librosa = numba_cache.librosa()
    basis = librosa.filters.mel(sr=sr, n_fft=N_FFT)
    basis.flags.writeable = False
    return basis


def _log_mel(power: np.ndarray, sr: int) -> np.ndarray:
    """= power_to_db(librosa.feature.melspectrogram(S=power, sr=sr)), cached filterbank."""
    librosa = numba_cache.librosa()
    return librosa.power_to_db(np.einsum("...ft,mf->...mt", power, _mel_basis(sr),
                                         optimize=True))


def extract_features(y: np.ndarray, *, sr: int = SAMPLE_RATE,
                     sets: tuple[str, ...] = ("mfcc",)) -> dict[str, np.ndarray]:
    """Feature vectors of one utterance, computing the STFT once.

    Parameters
    ----------
    y : np.ndarray, shape (n_samples,)
        Mono audio at ``sr`` (from :func:`ser.audio.load_audio`).
    sr : int, keyword-only
    sets : tuple of str, keyword-only
        Any of :data:`FEATURE_SETS` (see :data:`SETS`).

    Returns
    -------
    dict
        name -> np.ndarray of shape (FEATURE_DIMS[name],), float32, all finite.
    """
    unknown = [s for s in sets if s not in SETS]
    if unknown:
        raise ValueError(f"unknown feature set(s) {unknown} (choose from {FEATURE_SETS})")
    check_signal(y)
    need = {p for s in sets for p in parts_of(s)}
    u = Utterance(np.asarray(y, dtype=np.float32), sr)
    out = {name: SETS[name].compute(u) for name in CACHED_FEATURES if name in need}
    result = {}
    for s in sets:
        v = np.asarray(set_vector(s, out.__getitem__), dtype=np.float32)
        if not np.all(np.isfinite(v)):
            raise AudioError("features are not finite")
        result[s] = v
    return result


def _pooled_stats(y: np.ndarray, sr: int) -> np.ndarray:
    """Pooled statistics of frame features, shape (FEATURE_DIMS["stats"],).

    Written for speed (live streaming): the mel filterbank is cached and the simple spectral
    descriptors are computed directly from the magnitude spectrogram.
    """
    librosa = numba_cache.librosa()
    yt, _ = librosa.effects.trim(y, top_db=TRIM_TOP_DB, frame_length=N_FFT,
                                 hop_length=HOP_LENGTH)
    if len(yt) >= MIN_SAMPLES:
        y = yt
    S = np.abs(librosa.stft(y, n_fft=N_FFT, hop_length=HOP_LENGTH))
    power = S ** 2
    mfcc = librosa.feature.mfcc(S=_log_mel(power, sr), n_mfcc=N_MFCC)
    d1 = librosa.feature.delta(mfcc, width=9, mode="nearest")
    d2 = librosa.feature.delta(mfcc, width=9, order=2, mode="nearest")
    # chroma with the clip's own tuning estimated (librosa's default): ~7 ms of a 3 s window,
    # but measured +0.04 restricted UAR across corpora over a fixed A440 grid
    chroma = librosa.feature.chroma_stft(S=S, sr=sr, n_chroma=N_CHROMA)
    freqs = np.fft.rfftfreq(N_FFT, 1.0 / sr)[:, None]
    mag_sum = np.maximum(S.sum(axis=0, keepdims=True), 1e-10)
    centroid = (freqs * S).sum(axis=0, keepdims=True) / mag_sum
    bandwidth = np.sqrt((S / mag_sum * (freqs - centroid) ** 2).sum(axis=0, keepdims=True))
    cum = np.cumsum(power, axis=0)
    rolloff = freqs[np.argmax(cum >= 0.85 * cum[-1:], axis=0), 0][None, :]
    rms = np.sqrt(power.mean(axis=0, keepdims=True) * 2 / N_FFT)
    flatness = np.exp(np.log(power + 1e-10).mean(axis=0, keepdims=True)) / \
        (power.mean(axis=0, keepdims=True) + 1e-10)
    padded = np.pad(y, N_FFT // 2, mode="edge")
    frames = librosa.util.frame(padded, frame_length=N_FFT, hop_length=HOP_LENGTH)
    zcr = np.mean(np.signbit(frames[1:]) != np.signbit(frames[:-1]), axis=0, keepdims=True)
    n = min(S.shape[1], zcr.shape[1])
    contrast = librosa.feature.spectral_contrast(S=S, sr=sr, n_bands=N_CONTRAST_BANDS)
    frames = np.vstack([f[:, :n] for f in (
        mfcc, d1, d2, chroma, contrast, rms, zcr, np.log1p(centroid),
        np.log1p(bandwidth), np.log1p(rolloff), np.log10(flatness + 1e-10))])
    p10, p50, p90 = np.percentile(frames, [10, 50, 90], axis=1)
    return np.concatenate([frames.mean(axis=1), frames.std(axis=1), frames.min(axis=1),
                           frames.max(axis=1), p10, p50, p90]).astype(np.float32)


def set_vector(feature: str, base) -> np.ndarray:
    """One file's vector of ``feature`` from its base-set vectors (``base(name)``): a
    composite set is the concatenation of its parts (:data:`COMPOSITE_SETS`)."""
    if feature in COMPOSITE_SETS:
        return np.concatenate([base(b) for b in COMPOSITE_SETS[feature]])
    return base(feature)
