"""The feature sets: one table (size, version, parts, parameters, computation).

Adding a feature set is one entry in :data:`SETS`: a cached set has a ``compute`` function
(an :class:`Utterance` -> a vector of ``dim`` values), a composite set lists its ``parts``
(cached sets, concatenated in that order, never computed again). Everything else (the
``--feature`` choices and help, the per-file cache, the ``.joblib`` files, the model sidecars)
is derived from the table.

The computations are numpy alone (no librosa, scipy or numba: a prediction starts in a fraction
of a second, and training and prediction run the same code). Each step copies the expression,
and so the dtypes, of the librosa 0.11 / scipy 1.17 function it replaces;
tests/test_features_numpy.py checks every set against librosa on real and synthetic audio.
"""
from __future__ import annotations

import functools
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ser import encoder as byols_encoder  # the BYOL-S encoder's weights and feature set
from ser import frontend
from ser.audio import (
    HOP_LENGTH,
    MIN_SAMPLES,
    N_FFT,
    SAMPLE_RATE,
    AudioError,
    check_samples,
    resample,
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


# --------------------------------------------------------------------------------------------
# numpy primitives (each = the librosa 0.11 / scipy 1.17 call named in its docstring)
# --------------------------------------------------------------------------------------------
def frame(x: np.ndarray, frame_length: int, hop_length: int) -> np.ndarray:
    """= librosa.util.frame(x, frame_length, hop_length) for 1-d ``x``: a strided view of shape
    (frame_length, n_frames), the same strides as librosa's."""
    return np.lib.stride_tricks.sliding_window_view(x, frame_length)[::hop_length].T


@functools.lru_cache(maxsize=None)
def _hann(n: int) -> np.ndarray:
    """scipy.signal.get_window('hann', n, fftbins=True): the periodic Hann window as scipy's
    general_cosine builds it (float64)."""
    fac = np.linspace(-np.pi, np.pi, n + 1)[:-1]
    w = np.zeros(n)
    for k, a in enumerate((0.5, 0.5)):
        w += a * np.cos(k * fac)
    w.flags.writeable = False
    return w


def stft_magnitude(y: np.ndarray) -> np.ndarray:
    """= np.abs(librosa.stft(y, n_fft=N_FFT, hop_length=HOP_LENGTH)) for float32 ``y``
    (centred, zero padding): the frames windowed and transformed in float64, the spectrum
    rounded to complex64 as librosa stores it. Shape (1 + N_FFT // 2, n_frames), float32."""
    yp = np.pad(y, (N_FFT // 2, N_FFT // 2), mode="constant")
    rows = np.lib.stride_tricks.sliding_window_view(yp, N_FFT)[::HOP_LENGTH]
    # one frame per row: each transform reads contiguous memory (the same 1-d transforms as
    # librosa's axis=-2, checked bit-identical by the tests)
    D = np.fft.rfft(rows * _hann(N_FFT), axis=-1).astype(np.complex64)
    return np.abs(D).T


def power_to_db(S: np.ndarray, *, ref=1.0, amin: float = 1e-10,
                top_db: float | None = 80.0) -> np.ndarray:
    """= librosa.power_to_db for real ``S``."""
    S = np.asarray(S)
    ref_value = ref(S) if callable(ref) else np.abs(ref)
    log_spec = 10.0 * np.log10(np.maximum(amin, S))
    log_spec -= 10.0 * np.log10(np.maximum(amin, ref_value))
    if top_db is not None:
        log_spec = np.maximum(log_spec, log_spec.max() - top_db)
    return log_spec


def _hz_to_mel(frequencies):
    """= librosa.hz_to_mel (Slaney)."""
    frequencies = np.asanyarray(frequencies)
    f_min, f_sp = 0.0, 200.0 / 3
    mels = (frequencies - f_min) / f_sp
    min_log_hz = 1000.0
    min_log_mel = (min_log_hz - f_min) / f_sp
    logstep = np.log(6.4) / 27.0
    if frequencies.ndim:
        log_t = frequencies >= min_log_hz
        mels[log_t] = min_log_mel + np.log(frequencies[log_t] / min_log_hz) / logstep
    elif frequencies >= min_log_hz:
        mels = min_log_mel + np.log(frequencies / min_log_hz) / logstep
    return mels


def _mel_to_hz(mels):
    """= librosa.mel_to_hz (Slaney)."""
    mels = np.asanyarray(mels)
    f_min, f_sp = 0.0, 200.0 / 3
    freqs = f_min + f_sp * mels
    min_log_hz = 1000.0
    min_log_mel = (min_log_hz - f_min) / f_sp
    logstep = np.log(6.4) / 27.0
    if mels.ndim:
        log_t = mels >= min_log_mel
        freqs[log_t] = min_log_hz * np.exp(logstep * (mels[log_t] - min_log_mel))
    elif mels >= min_log_mel:
        freqs = min_log_hz * np.exp(logstep * (mels - min_log_mel))
    return freqs


@functools.lru_cache(maxsize=None)
def mel_basis(sr: int, n_fft: int = N_FFT, n_mels: int = 128) -> np.ndarray:
    """= librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels) (Slaney scale and norm, 0 to
    sr/2, float32), built once per rate. Read-only."""
    fmax = float(sr) / 2
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(fmax), n_mels + 2))
    weights = mel_triangles(mel_f, np.fft.rfftfreq(n=n_fft, d=1.0 / sr))
    enorm = 2.0 / (mel_f[2: n_mels + 2] - mel_f[:n_mels])
    weights *= enorm[:, np.newaxis]
    weights.flags.writeable = False
    return weights


def mel_triangles(mel_f: np.ndarray, fftfreqs: np.ndarray) -> np.ndarray:
    """librosa.filters.mel's triangles before any normalisation: band i rises from edge
    ``mel_f[i]`` to ``mel_f[i + 1]`` and falls to ``mel_f[i + 2]`` (Hz, float64), sampled at
    ``fftfreqs``. Shape (len(mel_f) - 2, len(fftfreqs)), float32, writable."""
    n_mels = len(mel_f) - 2
    weights = np.zeros((n_mels, len(fftfreqs)), dtype=np.float32)
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fftfreqs)
    for i in range(n_mels):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        weights[i] = np.maximum(0, np.minimum(lower, upper))
    return weights


def log_mel(power: np.ndarray, sr: int) -> np.ndarray:
    """= power_to_db(librosa.feature.melspectrogram(S=power, sr=sr)), the filterbank cached.

    librosa's ``einsum("...ft,mf->...mt", power, mel, optimize=True)`` is, for a 2-d
    ``power``, numpy's ``matmul(mel, power)`` on the same arrays (its batch-matmul path, no
    reshape or copy): called directly here, the same product without einsum's parsing."""
    if power.ndim == 2:
        return power_to_db(np.matmul(mel_basis(sr), power))
    return power_to_db(np.einsum("...ft,mf->...mt", power, mel_basis(sr), optimize=True))


@functools.lru_cache(maxsize=None)
def _dct_matrix(n: int, k: int) -> np.ndarray:
    """The first ``k`` rows of the orthonormal DCT-II matrix of size ``n`` (float64)."""
    i = np.arange(n)
    M = np.cos(np.pi / n * (i[None, :] + 0.5) * np.arange(k)[:, None]) * np.sqrt(2.0 / n)
    M[0] *= 1 / np.sqrt(2.0)
    M.flags.writeable = False
    return M


def mfcc(S: np.ndarray, n_mfcc: int = N_MFCC) -> np.ndarray:
    """= librosa.feature.mfcc(S=S, n_mfcc=n_mfcc) (DCT-II, ortho, over the mel axis) for a
    log-mel ``S`` of shape (n_mels, n_frames). scipy's DCT runs in float32; here a float64
    product rounded to float32 (within 1-2 float32 ulps of scipy's)."""
    return (_dct_matrix(S.shape[-2], n_mfcc) @ S.astype(np.float64)).astype(S.dtype)


def normalize(S: np.ndarray, *, norm=np.inf, axis: int = 0) -> np.ndarray:
    """= librosa.util.normalize(S, norm=norm, axis=axis) for norm inf or > 0 (fill None)."""
    threshold = np.finfo(S.dtype).tiny
    mag = np.abs(S).astype(float)
    if norm == np.inf:
        length = np.max(mag, axis=axis, keepdims=True)
    else:
        length = np.sum(mag ** norm, axis=axis, keepdims=True) ** (1.0 / norm)
    length[length < threshold] = 1.0
    Snorm = np.empty_like(S)
    Snorm[:] = S / length
    return Snorm


def _hz_to_octs(frequencies, tuning: float = 0.0, bins_per_octave: int = 12):
    """= librosa.hz_to_octs."""
    A440 = 440.0 * 2.0 ** (tuning / bins_per_octave)
    return np.log2(np.asanyarray(frequencies) / (float(A440) / 16))


def _parabolic_shift(S: np.ndarray) -> np.ndarray:
    """= librosa.core.pitch._parabolic_interpolation(S, axis=-2), the numba stencil's types:
    float32 sums and differences, then float64 (``2 * x``, ``/ 2``), stored as float32; 0 on
    the first and last rows."""
    shifts = np.zeros_like(S)
    x0 = S[1:-1].astype(np.float64)
    a = (S[2:] + S[:-2]).astype(np.float64) - 2 * x0
    b = (S[2:] - S[:-2]).astype(np.float64) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        shifts[1:-1] = np.where(np.abs(b) >= np.abs(a), 0.0, -b / a)
    return shifts


def _localmax(x: np.ndarray) -> np.ndarray:
    """= librosa.util.localmax(x, axis=-2): the first row is never a maximum, the last one
    is where it exceeds the row before."""
    out = np.zeros(x.shape, dtype=bool)
    out[1:-1] = (x[1:-1] > x[:-2]) & (x[1:-1] >= x[2:])
    out[-1] = x[-1] > x[-2]
    return out


def estimate_tuning(S: np.ndarray, sr: int, bins_per_octave: int = 12,
                    resolution: float = 0.01) -> float:
    """= librosa.estimate_tuning(S=S, sr=sr, bins_per_octave=bins_per_octave) (piptrack's
    peaks from 150 to 4000 Hz above a tenth of each frame's maximum, those at least as strong
    as the median, their deviation from the 12-tone grid, the histogram's mode)."""
    n_fft = 2 * (S.shape[-2] - 1)
    S = np.abs(S)
    fmin, fmax, threshold = 150.0, min(4000.0, float(sr) / 2), 0.1
    fft_freqs = np.fft.rfftfreq(n=n_fft, d=1.0 / sr)
    avg = np.gradient(S, axis=-2)
    shift = _parabolic_shift(S)
    dskew = 0.5 * avg * shift
    pitches = np.zeros_like(S)
    mags = np.zeros_like(S)
    freq_mask = ((fmin <= fft_freqs) & (fft_freqs < fmax))[:, None]
    ref_value = np.expand_dims(threshold * np.max(S, axis=-2), -2)
    idx = np.nonzero(freq_mask & _localmax(S * (S > ref_value)))
    pitches[idx] = (idx[-2] + shift[idx]) * float(sr) / n_fft
    mags[idx] = S[idx] + dskew[idx]
    pitch_mask = pitches > 0
    thr = np.median(mags[pitch_mask]) if pitch_mask.any() else 0.0
    frequencies = np.atleast_1d(pitches[(mags >= thr) & pitch_mask])
    frequencies = frequencies[frequencies > 0]
    if not np.any(frequencies):
        return 0.0
    residual = np.mod(bins_per_octave * _hz_to_octs(frequencies), 1.0)
    residual[residual >= 0.5] -= 1.0
    bins = np.linspace(-0.5, 0.5, int(np.ceil(1.0 / resolution)) + 1)
    counts, tuning = np.histogram(residual, bins)
    return float(tuning[np.argmax(counts)])


@functools.lru_cache(maxsize=512)
def chroma_filters(sr: int, n_fft: int, tuning: float, n_chroma: int = N_CHROMA,
                   ctroct: float = 5.0, octwidth: float = 2) -> np.ndarray:
    """= librosa.filters.chroma(sr=sr, n_fft=n_fft, tuning=tuning, n_chroma=n_chroma)
    (float32), cached (the tuning takes one of 101 values). Read-only."""
    frequencies = np.linspace(0, sr, n_fft, endpoint=False)[1:]
    frqbins = n_chroma * _hz_to_octs(frequencies, tuning=tuning, bins_per_octave=n_chroma)
    frqbins = np.concatenate(([frqbins[0] - 1.5 * n_chroma], frqbins))
    binwidthbins = np.concatenate((np.maximum(frqbins[1:] - frqbins[:-1], 1.0), [1]))
    D = np.subtract.outer(frqbins, np.arange(0, n_chroma, dtype="d")).T
    n_chroma2 = np.round(float(n_chroma) / 2)
    D = np.remainder(D + n_chroma2 + 10 * n_chroma, n_chroma) - n_chroma2
    wts = np.exp(-0.5 * (2 * D / np.tile(binwidthbins, (n_chroma, 1))) ** 2)
    wts = normalize(wts, norm=2, axis=0)
    wts *= np.tile(np.exp(-0.5 * (((frqbins / n_chroma - ctroct) / octwidth) ** 2)),
                   (n_chroma, 1))
    wts = np.roll(wts, -3 * (n_chroma // 12), axis=0)
    out = np.ascontiguousarray(wts[:, : int(1 + n_fft / 2)], dtype=np.float32)
    out.flags.writeable = False
    return out


def chroma_stft(S: np.ndarray, sr: int, n_chroma: int = N_CHROMA) -> np.ndarray:
    """= librosa.feature.chroma_stft(S=S, sr=sr, n_chroma=n_chroma) for a magnitude ``S``
    (used as given), with the clip's own tuning estimated. Shape (n_chroma, n_frames)."""
    n_fft = 2 * (S.shape[-2] - 1)
    tuning = estimate_tuning(S, sr, bins_per_octave=n_chroma)
    raw = np.einsum("cf,...ft->...ct", chroma_filters(sr, n_fft, tuning, n_chroma), S,
                    optimize=True)
    return normalize(raw, norm=np.inf, axis=-2)


@functools.lru_cache(maxsize=None)
def _contrast_bands(sr: int, n_fft: int, n_bands: int, fmin: float, quantile: float
                    ) -> tuple[tuple[np.ndarray, bool, int], ...]:
    """librosa.feature.spectral_contrast's octave bands: (bins, drop the last, quantile
    count) per band."""
    freq = np.fft.rfftfreq(n=n_fft, d=1.0 / sr)
    octa = np.zeros(n_bands + 2)
    octa[1:] = fmin * (2.0 ** np.arange(0, n_bands + 1))
    bands = []
    for k, (f_low, f_high) in enumerate(zip(octa[:-1], octa[1:])):
        current_band = np.logical_and(freq >= f_low, freq <= f_high)
        idx = np.flatnonzero(current_band)
        if k > 0:
            current_band[idx[0] - 1] = True
        if k == n_bands:
            current_band[idx[-1] + 1:] = True
        q = int(np.maximum(np.rint(quantile * np.sum(current_band)), 1))
        rows = np.flatnonzero(current_band)
        rows.flags.writeable = False
        bands.append((rows, k < n_bands, q))
    return tuple(bands)


def spectral_contrast(S: np.ndarray, sr: int, n_bands: int = N_CONTRAST_BANDS,
                      fmin: float = 200.0, quantile: float = 0.02) -> np.ndarray:
    """= librosa.feature.spectral_contrast(S=S, sr=sr, n_bands=n_bands) (power_to_db of the
    band peaks minus that of the valleys). Shape (n_bands + 1, n_frames), float64."""
    n_fft = 2 * (S.shape[-2] - 1)
    valley = np.zeros((n_bands + 1, S.shape[-1]))
    peak = np.zeros_like(valley)
    for k, (rows, drop_last, q) in enumerate(_contrast_bands(sr, n_fft, n_bands, fmin,
                                                             quantile)):
        sub_band = S[rows[:-1] if drop_last else rows]
        sortedr = np.sort(sub_band, axis=-2)
        valley[k] = np.mean(sortedr[:q], axis=-2)
        peak[k] = np.mean(sortedr[-q:], axis=-2)
    return power_to_db(peak) - power_to_db(valley)


def trim(y: np.ndarray, top_db: float = TRIM_TOP_DB, frame_length: int = N_FFT,
         hop_length: int = HOP_LENGTH) -> np.ndarray:
    """= librosa.effects.trim(y, top_db=top_db, frame_length=..., hop_length=...)[0]:
    leading and trailing frames more than ``top_db`` below the loudest frame's RMS cut."""
    yp = np.pad(y, (frame_length // 2, frame_length // 2), mode="constant")
    x = frame(yp, frame_length, hop_length)
    power = np.mean(np.square(x, dtype=np.float32), axis=-2, keepdims=True)
    magnitude = np.abs(np.sqrt(power)[..., 0, :])
    ref_value = np.max(magnitude)
    p = np.square(magnitude, out=magnitude)
    db = power_to_db(p, ref=ref_value ** 2, amin=1e-5 ** 2, top_db=None)
    nonzero = np.flatnonzero(db > -top_db)
    if nonzero.size == 0:
        return y[..., 0:0]
    start = int(nonzero[0] * hop_length)
    end = min(y.shape[-1], int((nonzero[-1] + 1) * hop_length))
    return y[..., start:end]


@functools.lru_cache(maxsize=None)
def _savgol_conv(width: int, order: int) -> np.ndarray:
    """= scipy.signal.savgol_coeffs(width, polyorder=order, deriv=order, use='conv')
    (a least-squares fit; float64). Read-only."""
    pos = width // 2
    x = np.arange(-pos, width - pos, dtype=float)[::-1]
    A = x ** np.arange(order + 1).reshape(-1, 1)
    rhs = np.zeros(order + 1)
    rhs[order] = float(math.factorial(order))
    c = np.linalg.lstsq(A, rhs, rcond=None)[0]
    c.flags.writeable = False
    return c


def delta(data: np.ndarray, width: int = 9, order: int = 1) -> np.ndarray:
    """= librosa.feature.delta(data, width=width, order=order, mode='nearest') along the
    last axis of a 2-d ``data``: scipy's savgol_filter, i.e. ndimage.convolve1d with the edge
    values repeated, accumulated in float64 the way ndimage's correlate does for a symmetric
    (even order) or antisymmetric (odd order) filter, output in the input's dtype."""
    w = _savgol_conv(width, order)[::-1]     # convolution = correlation, taps reversed
    h = width // 2
    n = data.shape[-1]
    xp = np.pad(data.astype(np.float64), [(0, 0), (h, h)], mode="edge")
    centre = xp[:, h:h + n]
    sign = 1.0 if order % 2 == 0 else -1.0
    symmetric = all(abs(w[h + j] - sign * w[h - j]) <= np.finfo(float).eps
                    for j in range(1, h + 1))
    if symmetric:
        acc = centre * w[h]
        for j in range(-h, 0):           # ndimage: (x[i+j] +- x[i-j]) * w[j], j = -h .. -1
            left, right = xp[:, h + j:h + j + n], xp[:, h - j:h - j + n]
            acc += ((left + right) if sign > 0 else (left - right)) * w[h + j]
    else:
        acc = xp[:, width - 1:width - 1 + n] * w[width - 1]
        for j in range(width - 1):
            acc += xp[:, j:j + n] * w[j]
    return acc.astype(data.dtype)


# --------------------------------------------------------------------------------------------
# One utterance
# --------------------------------------------------------------------------------------------
class Utterance:
    """One utterance being featurised: its audio and the work its sets share (one STFT, one
    MFCC, chroma and contrast matrix, reused by ``stats`` when trimming leaves it whole)."""

    def __init__(self, y: np.ndarray, sr: int):
        self.y, self.sr = y, sr

    @functools.cached_property
    def magnitude(self) -> np.ndarray:
        """|STFT|, shape (1 + N_FFT // 2, n_frames), float32."""
        return stft_magnitude(self.y)

    @functools.cached_property
    def power(self) -> np.ndarray:
        return self.magnitude ** 2

    @functools.cached_property
    def mfcc(self) -> np.ndarray:
        """MFCC frames, shape (N_MFCC, n_frames), float32."""
        return mfcc(log_mel(self.power, self.sr), n_mfcc=N_MFCC)

    @functools.cached_property
    def chroma(self) -> np.ndarray:
        return chroma_stft(self.magnitude, self.sr, n_chroma=N_CHROMA)

    @functools.cached_property
    def contrast(self) -> np.ndarray:
        return spectral_contrast(self.magnitude, self.sr, n_bands=N_CONTRAST_BANDS)

    @functools.cached_property
    def speech(self) -> frontend.Speech:
        """The utterance through the learned sets' speech front end (:mod:`ser.frontend`):
        16 kHz, loudness-normalised, with its speech frames."""
        return frontend.speech(self.y, self.sr)

    @functools.cached_property
    def trimmed(self) -> "Utterance":
        """The utterance with its leading and trailing silence cut (:func:`trim`), or itself
        when nothing is cut or what is left is shorter than :data:`MIN_SAMPLES`."""
        yt = trim(self.y)
        if len(yt) < MIN_SAMPLES or len(yt) == len(self.y):
            return self
        return Utterance(yt, self.sr)


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
    ready: Callable[[], None] | None = None   # checks (or fetches) what compute needs, once


def _mfcc(u: Utterance) -> np.ndarray:
    return u.mfcc.mean(axis=1)


def _chroma(u: Utterance) -> np.ndarray:
    return u.chroma.mean(axis=1)


def _contrast(u: Utterance) -> np.ndarray:
    return u.contrast.mean(axis=1)


def _stats(u: Utterance) -> np.ndarray:
    """Pooled statistics of the utterance through the speech front end: band-limited to
    8 kHz, loudness-normalised, pooled over its speech frames only."""
    sp = u.speech
    v = Utterance(resample(sp.y, frontend.RATE, sr=u.sr), u.sr)
    n = v.mfcc.shape[1]
    return _pooled_stats(v, mask=sp.mask_at(n, HOP_LENGTH / u.sr))


def _whisper(u: Utterance) -> np.ndarray:
    """Whisper tiny.en's last encoder layer over the front end's audio, mean and std over its
    speech frames (an encoder frame is 20 ms, centred 5 ms after its first mel frame)."""
    from ser.encoders import whisper
    sp = u.speech
    frames = whisper.default_encoder().frames(sp.y, sr=frontend.RATE)
    mask = sp.mask_at(frames.shape[0], 2 * whisper.HOP / whisper.SAMPLE_RATE, offset=0.005)
    return whisper.pool(frames[mask], method=WHISPER_POOLING)


def _whisper_ready() -> None:
    from ser.encoders import whisper
    whisper.default_encoder().check_weights()


WHISPER_POOLING = "mean_std"


def _whisper_params() -> dict:
    from ser.encoders import whisper
    return {**whisper.WhisperEncoder().params(), "pooling": WHISPER_POOLING,
            "speech_frontend": frontend.PARAMS}


def _byols(u: Utterance) -> np.ndarray:
    return byols_encoder.vector(u.y, u.sr)


def _pooled_stats(u: Utterance, *, mask: np.ndarray | None = None) -> np.ndarray:
    """Pooled statistics of frame features of the utterance ``u``, shape
    (FEATURE_DIMS["stats"],): MFCC, deltas and delta-deltas, chroma (with the clip's own tuning
    estimated, librosa's default: measured +0.04 restricted UAR across corpora over a fixed
    A440 grid), spectral contrast, RMS, ZCR, centroid, bandwidth, roll-off, flatness; over
    the frames of ``mask`` (bool, one per STFT frame) when given."""
    m = u.mfcc
    return pool_frames([m, delta(m, width=9), delta(m, width=9, order=2), u.chroma,
                        u.contrast, *spectral_descriptors(u.y, u.magnitude, u.power, u.sr)],
                       mask=mask)


def spectral_descriptors(y: np.ndarray, S: np.ndarray, power: np.ndarray, sr: int
                         ) -> list[np.ndarray]:
    """Frame descriptors from the magnitude ``S`` and ``power`` spectrograms (shape
    (1 + N_FFT // 2, frames)) and the signal: RMS, ZCR, log centroid, log bandwidth, log
    roll-off, log flatness, each of shape (1, frames)."""
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
    frames = frame(padded, N_FFT, HOP_LENGTH)
    zcr = np.mean(np.signbit(frames[1:]) != np.signbit(frames[:-1]), axis=0, keepdims=True)
    return [rms, zcr, np.log1p(centroid), np.log1p(bandwidth), np.log1p(rolloff),
            np.log10(flatness + 1e-10)]


def pool_frames(parts: list[np.ndarray], *, mask: np.ndarray | None = None) -> np.ndarray:
    """Frame features (each (rows, frames), cut to the shortest) pooled over time by
    :data:`STATS` (over the frames where ``mask`` is true, when given): shape
    (sum of rows * 7,), float32."""
    n = min(f.shape[1] for f in parts)
    frames = np.vstack([f[:, :n] for f in parts])
    if mask is not None:
        frames = frames[:, np.asarray(mask[:n], bool)]
    p10, p50, p90 = np.percentile(frames, [10, 50, 90], axis=1)
    return np.concatenate([frames.mean(axis=1), frames.std(axis=1), frames.min(axis=1),
                           frames.max(axis=1), p10, p50, p90]).astype(np.float32)


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
        elif s.compute is not None and s.dim <= 0:
            raise ValueError(f"feature set {s.name}: a computed set needs its dim")
        out[s.name] = s
    return out


# versions: mfcc 2, combined 2, stats 6, stats_byols 2 since the numpy implementation (issue 20):
# its DCT is a float64 product rounded to float32 where scipy's ran in float32, which moves the
# MFCCs by 1-2 float32 ulps; chroma and contrast are bit-identical to librosa's, so unchanged
SETS: dict[str, FeatureSet] = _table(
    FeatureSet("mfcc", N_MFCC, 2, "MFCC means over time", _mfcc),
    FeatureSet("chroma", N_CHROMA, 1, "chroma means", _chroma),
    FeatureSet("contrast", N_CONTRAST_BANDS + 1, 1, "spectral contrast means", _contrast),
    FeatureSet("combined", 0, 2, "the three above", parts=("mfcc", "chroma", "contrast")),
    FeatureSet("stats", STATS_FRAME_DIM * len(STATS), 7, "pooled statistics", _stats,
               params={**FEATURE_PARAMS, "speech_frontend": frontend.PARAMS}),
    FeatureSet("byols", byols_encoder.DIM, byols_encoder.VERSION, "the BYOL-S encoder",
               _byols, params=byols_encoder.feature_params(), encoder=True),
    FeatureSet("stats_byols", 0, 3, "stats and byols", parts=("stats", "byols")),
    FeatureSet("whisper", 768, 1, "Whisper tiny.en's encoder", _whisper,
               params=_whisper_params(), ready=_whisper_ready),
    FeatureSet("stats_whisper", 0, 1, "stats and whisper", parts=("stats", "whisper")),
    FeatureSet("stats_byols_whisper", 0, 1, "stats, byols and whisper",
               parts=("stats", "byols", "whisper")),
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
    """Whether the set needs a pretrained encoder's weights (BYOL-S's, ser/encoder.py, or
    another encoder's: a part with a ``ready`` check)."""
    s = SETS.get(feature)
    return bool(s and (s.encoder or any(SETS[p].ready for p in parts_of(feature))))


def make_ready(feature_sets) -> None:
    """Check (or fetch) once what the sets' computations need (an encoder's weights), so that
    a missing file is one line before the work rather than an error per file."""
    need = {p for f in feature_sets for p in parts_of(f)}
    if any(SETS[p].encoder for p in need):
        byols_encoder.check_ready()
    for p in sorted(need):
        if SETS[p].ready is not None:
            SETS[p].ready()


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
    check_samples(y)
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


def set_vector(feature: str, base) -> np.ndarray:
    """One file's vector of ``feature`` from its base-set vectors (``base(name)``): a
    composite set is the concatenation of its parts (:data:`COMPOSITE_SETS`)."""
    if feature in COMPOSITE_SETS:
        return np.concatenate([base(b) for b in COMPOSITE_SETS[feature]])
    return base(feature)
