"""Signal processing in numpy: each function equals the librosa 0.11 / scipy 1.17 call named in
its docstring, the same expression and so the same dtypes (tests/test_features_numpy.py checks
them against librosa on real and synthetic audio).

No librosa, scipy or numba here: a prediction starts in a fraction of a second, and training and
prediction run the same code. The feature sets built from these are in :mod:`ser.features`;
the BYOL-S and Whisper front ends reuse :func:`mel_triangles`.
"""
from __future__ import annotations

import functools
import math

import numpy as np

from ser.audio import HOP_LENGTH, N_FFT

N_MFCC = 40
N_CHROMA = 12
N_CONTRAST_BANDS = 6           # spectral contrast gives n_bands + 1 = 7 values
TRIM_TOP_DB = 30               # "stats": silence trimmed before pooling


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


def hz_to_mel(frequencies):
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


def mel_to_hz(mels):
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
    mel_f = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(fmax), n_mels + 2))
    weights = mel_triangles(mel_f, np.fft.rfftfreq(n=n_fft, d=1.0 / sr))
    enorm = 2.0 / (mel_f[2: n_mels + 2] - mel_f[:n_mels])
    weights *= enorm[:, np.newaxis]
    weights.flags.writeable = False
    return weights


def mel_triangles(mel_f: np.ndarray, fftfreqs: np.ndarray, *, dtype=np.float32) -> np.ndarray:
    """librosa.filters.mel's triangles before any normalisation: band i rises from edge
    ``mel_f[i]`` to ``mel_f[i + 1]`` and falls to ``mel_f[i + 2]`` (Hz, float64), sampled at
    ``fftfreqs``. Shape (len(mel_f) - 2, len(fftfreqs)), ``dtype`` (librosa's float32; float64
    to normalise before rounding, as Whisper's filters are), writable."""
    n_mels = len(mel_f) - 2
    weights = np.zeros((n_mels, len(fftfreqs)), dtype=dtype)
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
