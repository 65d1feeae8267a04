"""The BYOL-S speech encoder (SERAB, 512-d), readable and runnable without PyTorch.

BYOL-S is BYOL-A's ``AudioNTT2020`` network trained self-supervised on the speech subset of
AudioSet and published with the SERAB benchmark (Scheidwasser-Clow, Kegler, Beckmann, Cernak:
"SERAB: A multi-lingual benchmark for speech emotion recognition", ICASSP 2022). The layout of
the checkpoint and of the network is described in ``../shared/models/README.md``.

This module holds

- :func:`read_state_dict`: the PyTorch zip checkpoint read with :mod:`zipfile` and a restricted
  unpickler that resolves only ``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2``
  (and ``_rebuild_tensor``) and the ``torch.*Storage`` names; every other global is refused, so
  a checkpoint cannot run code when it is read. Every key and shape of the network is checked.
- :func:`fetch_checkpoint`: the checkpoint from its pinned public URL (with :mod:`pooch`, checked
  by sha256), or a local copy (``SER_BYOLS_PATH``), also checked.
- :func:`log_mel`: the front end the network was trained on (64 HTK mel bands, natural log).
- :class:`Encoder`: numpy inference (BatchNorm folded into the convolutions, each convolution
  one im2col matrix product), single clips and batches of clips of different lengths.
- :func:`pool` and :func:`embed`: utterance vectors from the frames.
- :func:`keras_encoder`: the same network as a Keras model (for fine-tuning); Keras is imported
  only there.

Everything is float32.
"""
from __future__ import annotations

import collections
import functools
import io
import os
import pickle
import zipfile
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ser.audio import resample
from ser.console import import_keras
from ser.dsp import mel_triangles
from ser.encoders import check_clip
from ser.errors import SerError
from ser.fetch import FetchError, retrieve  # noqa: F401  (FetchError: part of this API)
from ser.files import require_sha256, sha256_file

# --------------------------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------------------------
URL = ("https://github.com/Neclow/SERAB/raw/cc0ebd74014c19ce4fad752afe5dfd374fc7fdb2/SERAB/"
       "checkpoints/default512_BYOLAs64x96-2107281850-e100-bs256-lr0003-rs42.pth")
"""The checkpoint's raw download, pinned to SERAB commit cc0ebd74."""
SHA256 = "449f5d0dc6b6fa8433d5e43769097520d3bc0fdae88977a7ac29e2e72ca51b52"
SIZE = 2_409_434
"""Size of the checkpoint in bytes."""
LICENCE = ("MIT (SERAB repository LICENSE, copyright 2021 Scheidwasser-Clow, Kegler, Beckmann, "
           "Cernak); cite SERAB, ICASSP 2022")
FNAME = "byols_default512.pth"
ENV_PATH = "SER_BYOLS_PATH"
"""Environment variable: a local copy of the checkpoint (checked by sha256, never downloaded)."""
ENV_URL = "SER_BYOLS_URL"
"""Environment variable: a mirror replacing :data:`URL`."""

SAMPLE_RATE = 16000
N_MELS = 64
FMIN = 60
FMAX = 7800
N_FFT = 1024
WIN = 400
HOP = 160
NORM_MEAN = -8.0445
NORM_STD = 5.2735
"""Mean and standard deviation of :func:`log_mel` over all of ``../shared/data``."""
EMBED_DIM = 512
BN_EPS = 1e-5
MIN_FRAMES = 8
"""The encoder halves the time axis three times: fewer log-mel frames leave no output frame."""
MIN_SAMPLES = (MIN_FRAMES - 1) * HOP
"""Shortest signal (at 16 kHz) that :func:`log_mel` turns into :data:`MIN_FRAMES` frames."""

CONV_LAYERS = ("features.0", "features.4", "features.8")
BN_LAYERS = ("features.1", "features.5", "features.9")
FC_LAYERS = ("fc.0", "fc.3")
# Every float32 tensor of the network (the README's layer table), PyTorch layout.
EXPECTED_SHAPES: dict[str, tuple[int, ...]] = {}
for _conv, _bn, _cin in zip(CONV_LAYERS, BN_LAYERS, (1, 64, 64)):
    EXPECTED_SHAPES[f"{_conv}.weight"] = (64, _cin, 3, 3)
    EXPECTED_SHAPES[f"{_conv}.bias"] = (64,)
    for _p in ("weight", "bias", "running_mean", "running_var"):
        EXPECTED_SHAPES[f"{_bn}.{_p}"] = (64,)
for _fc in FC_LAYERS:
    EXPECTED_SHAPES[f"{_fc}.weight"] = (512, 512)
    EXPECTED_SHAPES[f"{_fc}.bias"] = (512,)
del _conv, _bn, _cin, _p, _fc
OPTIONAL_KEYS = tuple(f"{bn}.num_batches_tracked" for bn in BN_LAYERS)
"""BatchNorm's step counters (int64 scalars): in the checkpoint, not used for inference."""

POOLINGS = {"maxmean": EMBED_DIM, "maxmean_std": 2 * EMBED_DIM, "mean_std": 2 * EMBED_DIM}
"""Pooling over time -> vector size. ``maxmean`` is BYOL-A's own (max + mean over time);
``maxmean_std`` appends the standard deviation (the README's measured 1024 values)."""


class CheckpointError(SerError, ValueError):
    """A checkpoint file that cannot be used; the message names the file and the rule broken."""


# --------------------------------------------------------------------------------------------
# Reading the PyTorch zip checkpoint without PyTorch
# --------------------------------------------------------------------------------------------
_STORAGE_DTYPES = {
    "FloatStorage": "f4", "DoubleStorage": "f8", "HalfStorage": "f2",
    "LongStorage": "i8", "IntStorage": "i4", "ShortStorage": "i2", "CharStorage": "i1",
    "ByteStorage": "u1", "BoolStorage": "?",
}


class _StorageType:
    """Stands for ``torch.<Name>Storage`` in the pickle: a dtype, nothing callable."""

    __slots__ = ("name", "dtype")

    def __init__(self, name: str, dtype: str) -> None:
        self.name = name
        self.dtype = dtype


class _Storage:
    """One storage: a flat array read from ``data/<key>``."""

    __slots__ = ("key", "array")

    def __init__(self, key: str, array: np.ndarray) -> None:
        self.key = key
        self.array = array


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler of a PyTorch ``data.pkl`` that resolves only the globals a state dict needs."""

    def __init__(self, file, *, path: Path, archive: zipfile.ZipFile, prefix: str,
                 byteorder: str) -> None:
        super().__init__(file)
        self._path = path
        self._archive = archive
        self._prefix = prefix
        self._byteorder = byteorder
        self._members = set(archive.namelist())
        self._storages: dict[str, _Storage] = {}

    def _fail(self, msg: str) -> CheckpointError:
        return CheckpointError(f"{self._path}: {msg}")

    def find_class(self, module: str, name: str):
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return self._rebuild_tensor_v2
        if module == "torch._utils" and name == "_rebuild_tensor":
            return self._rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name, _STORAGE_DTYPES[name])
        raise self._fail(f"refused global {module}.{name} in data.pkl (a state dict needs only "
                         "collections.OrderedDict, torch._utils._rebuild_tensor_v2 and "
                         "torch.*Storage; a checkpoint naming anything else is not read)")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise self._fail(f"unsupported persistent id {pid!r} in data.pkl (expected "
                             "('storage', storage_type, key, location, numel))")
        _, stype, key, _location, numel = pid
        if not isinstance(stype, _StorageType):
            raise self._fail(f"persistent id {pid!r}: storage type is not a torch.*Storage")
        if not isinstance(key, str) or not isinstance(numel, int) or numel < 0:
            raise self._fail(f"persistent id {pid!r}: key must be a string, numel an int >= 0")
        if key in self._storages:
            return self._storages[key]
        member = f"{self._prefix}data/{key}"
        if member not in self._members:
            raise self._fail(f"storage key {key!r} is missing (no {member} in the archive)")
        dtype = np.dtype(stype.dtype).newbyteorder("<" if self._byteorder == "little" else ">")
        raw = self._archive.read(member)
        need = numel * dtype.itemsize
        if len(raw) < need:
            raise self._fail(f"storage {member} holds {len(raw)} bytes, its {stype.name} of "
                             f"{numel} elements needs {need}")
        array = np.frombuffer(raw, dtype=dtype, count=numel).astype(dtype.newbyteorder("="))
        storage = _Storage(key, array)
        self._storages[key] = storage
        return storage

    def _rebuild_tensor_v2(self, storage, storage_offset, size, stride, requires_grad=False,
                           backward_hooks=None, metadata=None):
        return self._rebuild_tensor(storage, storage_offset, size, stride)

    def _rebuild_tensor(self, storage, storage_offset, size, stride):
        if not isinstance(storage, _Storage):
            raise self._fail("a tensor is rebuilt from something that is not a storage")
        ints = all(isinstance(v, int) and v >= 0 for v in (storage_offset, *size, *stride))
        if not (isinstance(size, tuple) and isinstance(stride, tuple)
                and len(size) == len(stride) and ints):
            raise self._fail(f"tensor of storage {storage.key!r}: offset {storage_offset!r}, "
                             f"size {size!r}, stride {stride!r} are not non-negative int tuples "
                             "of one length")
        flat = storage.array
        if any(s == 0 for s in size):
            return np.zeros(size, dtype=flat.dtype)
        last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride))
        if last >= flat.size:
            raise self._fail(f"tensor of storage {storage.key!r} (offset {storage_offset}, size "
                             f"{size}, stride {stride}) reaches element {last} of a storage of "
                             f"{flat.size}")
        view = np.lib.stride_tricks.as_strided(
            flat[storage_offset:], shape=size,
            strides=tuple(s * flat.itemsize for s in stride), writeable=False)
        return np.array(view, order="C", copy=True)


def _archive_prefix(path: Path, names: Sequence[str]) -> str:
    """The folder holding ``data.pkl`` (``archive/`` here; PyTorch names it after the file)."""
    pkls = [n for n in names if n == "data.pkl" or n.endswith("/data.pkl")]
    tops = [n for n in pkls if n.count("/") <= 1]
    if not tops:
        raise CheckpointError(f"{path}: a zip, but not a PyTorch checkpoint (no data.pkl in "
                              "the archive)")
    if len(tops) > 1:
        raise CheckpointError(f"{path}: more than one data.pkl in the archive ({tops})")
    return tops[0][: -len("data.pkl")]


def check_state_dict(state: dict, *, source: str | os.PathLike = "state dict") -> None:
    """Check that ``state`` holds exactly the network's tensors with the README's shapes.

    Parameters
    ----------
    state : dict of str to np.ndarray
        Keys as in :data:`EXPECTED_SHAPES` (float32), optionally :data:`OPTIONAL_KEYS` (scalars).
    source : str or path-like, keyword-only
        Named in the error messages.

    Raises
    ------
    CheckpointError
        A key missing or unexpected, a shape or dtype not as expected.
    """
    if not isinstance(state, dict):
        raise CheckpointError(f"{source}: holds a {type(state).__name__}, not a state dict")
    missing = [k for k in EXPECTED_SHAPES if k not in state]
    if missing:
        raise CheckpointError(f"{source}: not the BYOL-S network: missing keys {missing}")
    extra = [k for k in state if k not in EXPECTED_SHAPES and k not in OPTIONAL_KEYS]
    if extra:
        raise CheckpointError(f"{source}: not the BYOL-S network: unexpected keys {extra}")
    for key, shape in EXPECTED_SHAPES.items():
        value = state[key]
        if not isinstance(value, np.ndarray) or value.shape != shape:
            got = getattr(value, "shape", type(value).__name__)
            raise CheckpointError(f"{source}: {key} has shape {got}, the network needs {shape}")
        if value.dtype != np.float32:
            raise CheckpointError(f"{source}: {key} is {value.dtype}, the network needs float32")
        if not np.all(np.isfinite(value)):
            raise CheckpointError(f"{source}: {key} holds NaN or infinite values")
    for key in OPTIONAL_KEYS:
        if key in state and (not isinstance(state[key], np.ndarray) or state[key].shape != ()):
            raise CheckpointError(f"{source}: {key} should be a scalar tensor")
    for bn in BN_LAYERS:
        if np.any(state[f"{bn}.running_var"] < 0):
            raise CheckpointError(f"{source}: {bn}.running_var has negative variances")


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read the BYOL-S checkpoint (PyTorch zip format) without PyTorch and without running code.

    ``data.pkl`` is read by an unpickler that resolves only ``collections.OrderedDict``,
    ``torch._utils._rebuild_tensor_v2`` / ``_rebuild_tensor`` and the ``torch.*Storage`` names;
    the tensors are built from ``data/<key>`` with their offset, shape and stride. The result is
    checked against the network's layer table (:data:`EXPECTED_SHAPES`).

    Parameters
    ----------
    path : path-like
        The ``.pth`` file.

    Returns
    -------
    state : dict of str to np.ndarray
        PyTorch names and layouts: ``features.0.weight`` (64, 1, 3, 3), ``fc.0.weight``
        (512, 512) as (out, in), ...; float32 (the ``num_batches_tracked`` counters int64).

    Raises
    ------
    CheckpointError
        Not found, not a zip, no ``data.pkl``, a refused global, a missing storage, a tensor
        outside its storage, or keys / shapes that are not the network's.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path}: not a zip archive (PyTorch checkpoints are zips since "
                              "PyTorch 1.6; older raw-pickle checkpoints are not read)")
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            prefix = _archive_prefix(path, names)
            byteorder = "little"
            if f"{prefix}byteorder" in names:
                byteorder = archive.read(f"{prefix}byteorder").decode("ascii", "replace").strip()
                if byteorder not in ("little", "big"):
                    raise CheckpointError(f"{path}: unknown byteorder {byteorder!r}")
            pkl = archive.read(f"{prefix}data.pkl")
            unpickler = _RestrictedUnpickler(io.BytesIO(pkl), path=path, archive=archive,
                                             prefix=prefix, byteorder=byteorder)
            try:
                state = unpickler.load()
            except CheckpointError:
                raise
            except Exception as e:   # a malformed pickle raises many types
                raise CheckpointError(f"{path}: data.pkl is not a readable state dict "
                                      f"({type(e).__name__}: {e})") from None
    except zipfile.BadZipFile as e:
        raise CheckpointError(f"{path}: damaged zip archive ({e})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: data.pkl holds a {type(state).__name__}, not a state "
                              "dict")
    result = {}
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, np.ndarray):
            raise CheckpointError(f"{path}: entry {key!r} is not a named tensor")
        result[key] = value
    check_state_dict(result, source=path)
    return result


# --------------------------------------------------------------------------------------------
# Fetching the checkpoint
# --------------------------------------------------------------------------------------------
sha256_of = sha256_file   # hex sha256 of a file (ser/files.py)


def fetch_checkpoint(*, url: str = URL, path: str | os.PathLike | None = None,
                     cache_dir: str | os.PathLike | None = None) -> Path:
    """The checkpoint on disk, verified by its sha256; downloaded once into a cache if needed.

    Parameters
    ----------
    url : str, keyword-only
        Where to download from. The environment variable ``SER_BYOLS_URL`` replaces the default
        :data:`URL` (a mirror); an explicit other ``url`` wins over it.
    path : path-like, keyword-only
        A local copy to use instead of downloading (also from ``SER_BYOLS_PATH``); it must have
        the checkpoint's sha256.
    cache_dir : path-like, keyword-only
        Download cache (default ``pooch.os_cache("ser")``). A cached file is re-checked on every
        call and downloaded again if it does not match.

    Returns
    -------
    path : Path
        The verified checkpoint.

    Raises
    ------
    CheckpointError
        The local copy is missing or its sha256 is not :data:`SHA256`.
    FetchError
        The download failed (network, HTTP status) or what arrived has the wrong sha256; no
        file is left under the cache name then.
    """
    local = path if path is not None else os.environ.get(ENV_PATH) or None
    if local is not None:
        return require_sha256(
            local, SHA256, CheckpointError,
            missing=f"checkpoint not found (from {'path=' if path is not None else ENV_PATH})",
            mismatch=f"does not match the BYOL-S checkpoint's {SHA256}")
    if url == URL and os.environ.get(ENV_URL):
        url = os.environ[ENV_URL]
    if not isinstance(url, str) or not url:
        raise FetchError(f"no URL to download the checkpoint from (url={url!r})")
    import pooch
    folder = Path(cache_dir) if cache_dir is not None else Path(pooch.os_cache("ser"))
    return retrieve(url, sha256=SHA256, folder=folder, fname=FNAME)


# --------------------------------------------------------------------------------------------
# Front end
# --------------------------------------------------------------------------------------------
def _hz_to_mel_htk(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def _mel_to_hz_htk(m):
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def _mel_edges() -> np.ndarray:
    """The 66 band edges in Hz (= librosa.mel_frequencies(66, fmin=60, fmax=7800, htk=True))."""
    return _mel_to_hz_htk(np.linspace(_hz_to_mel_htk(FMIN), _hz_to_mel_htk(FMAX), N_MELS + 2))


@functools.lru_cache(maxsize=1)
def mel_filterbank() -> np.ndarray:
    """The 64 HTK mel filters, 60-7800 Hz, no normalisation (torchaudio's MelSpectrogram defaults).

    = librosa.filters.mel(sr=16000, n_fft=1024, n_mels=64, fmin=60, fmax=7800, htk=True,
    norm=None) in numpy, bit for bit (tests/test_byols.py): no librosa, hence no numba, at
    prediction time.

    Returns
    -------
    fb : np.ndarray, shape (64, 513), float32, read-only
    """
    fb = mel_triangles(_mel_edges(), np.fft.rfftfreq(n=N_FFT, d=1.0 / SAMPLE_RATE))
    fb.flags.writeable = False
    return fb


def mel_centres() -> np.ndarray:
    """Centre frequencies of the 64 mel bands in Hz, shape (64,), float64."""
    return _mel_edges()[1:-1]


@functools.lru_cache(maxsize=1)
def _window() -> np.ndarray:
    """Periodic Hann window of WIN samples (torch.hann_window, scipy 'hann' with fftbins), float64.

    Float64 like librosa's: the frames are windowed and transformed in float64 and the spectrum
    rounded to complex64 (what torch / librosa keep), which matches the reference log-mel to
    one float32 ulp; a float32 FFT differs by ~1e-5.
    """
    n = np.arange(WIN)
    w = 0.5 - 0.5 * np.cos(2 * np.pi * n / WIN)
    w.flags.writeable = False
    return w


def _check_signal(y, *, where: str, what: str = "y") -> np.ndarray:
    return check_clip(y, where=f"{__name__}.{where}", what=what)


def log_mel(y: np.ndarray, *, sr: int = SAMPLE_RATE) -> np.ndarray:
    """BYOL-S's front end: natural log of a 64-band HTK mel power spectrogram at 16 kHz.

    STFT with n_fft 1024, a 400-sample periodic Hann window (centred in the FFT frame), hop
    160, centred frames with reflect padding (torchaudio's default); power spectrogram; the
    filters of :func:`mel_filterbank`; ``log(mel + float32 eps)``. Not normalised (see
    :data:`NORM_MEAN`, :data:`NORM_STD`).

    Parameters
    ----------
    y : np.ndarray, shape (n_samples,)
        Mono audio at 16 kHz, finite, at least :data:`MIN_SAMPLES` samples.
    sr : int, keyword-only
        Must be 16000 (resample first, e.g. with ``ser.audio.resample``; :func:`embed` does).

    Returns
    -------
    logmel : np.ndarray, shape (64, 1 + n_samples // 160), float32
    """
    if sr != SAMPLE_RATE:
        raise ValueError(f"{__name__}.log_mel: sr must be {SAMPLE_RATE} (the encoder's rate); "
                         f"got {sr}: resample first")
    y = _check_signal(y, where="log_mel")
    if y.size < MIN_SAMPLES:
        raise ValueError(f"{__name__}.log_mel: y must have at least {MIN_SAMPLES} samples "
                         f"({MIN_FRAMES} frames, the encoder's minimum); got {y.size}")
    return _log_mel(y)


def _log_mel(y: np.ndarray) -> np.ndarray:
    pad = N_FFT // 2
    padded = np.pad(y, pad, mode="reflect")
    n_frames = 1 + y.size // HOP
    # Only the WIN samples under the window matter; they sit (N_FFT - WIN) // 2 into each frame.
    # Zero-padding them at the end instead changes the phase, not the power.
    start = (N_FFT - WIN) // 2
    frames = np.lib.stride_tricks.sliding_window_view(padded[start:], WIN)[::HOP][:n_frames]
    spec = np.fft.rfft(frames * _window(), n=N_FFT, axis=-1).astype(np.complex64)
    power = np.abs(spec) ** 2                                          # (T, 513) float32
    mel = mel_filterbank() @ power.T                                   # (64, T)
    return np.log(mel + np.finfo(np.float32).eps).astype(np.float32, copy=False)


def normalise(logmel: np.ndarray) -> np.ndarray:
    """``(logmel - NORM_MEAN) / NORM_STD``, float32, any shape."""
    return ((np.asarray(logmel, dtype=np.float32) - np.float32(NORM_MEAN))
            / np.float32(NORM_STD)).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Numpy inference
# --------------------------------------------------------------------------------------------
def _fold_batchnorm(state: dict, conv: str, bn: str) -> tuple[np.ndarray, np.ndarray]:
    """Conv weights (out, in, 3, 3) and bias with BatchNorm folded in, float64 arithmetic."""
    w = state[f"{conv}.weight"].astype(np.float64)
    b = state[f"{conv}.bias"].astype(np.float64)
    scale = (state[f"{bn}.weight"].astype(np.float64)
             / np.sqrt(state[f"{bn}.running_var"].astype(np.float64) + BN_EPS))
    w = w * scale[:, None, None, None]
    b = (b - state[f"{bn}.running_mean"]) * scale + state[f"{bn}.bias"]
    return w, b


class Encoder:
    """BYOL-S in numpy: log-mel (normalised) -> frames (T // 8, 512).

    Built from a state dict (:func:`read_state_dict`). BatchNorm is folded into the
    convolutions; each 3x3 convolution is one matrix product of im2col patches (channels last,
    patch index (kh, kw, in)) with a (9 * in, 64) matrix; ReLU; 2x2 max-pool with floor (as
    PyTorch); then (mel 8, time, 64 ch) -> (time, 8 * 64) with index mel * 64 + channel, as the
    PyTorch model's permute + reshape; ``fc.0`` + ReLU, ``fc.3`` + ReLU. Float32 throughout.

    Parameters
    ----------
    state_dict : dict of str to np.ndarray
        PyTorch names and layouts (checked by :func:`check_state_dict`).
    """

    def __init__(self, state_dict: dict) -> None:
        check_state_dict(state_dict)
        self.conv_w: list[np.ndarray] = []
        self.conv_b: list[np.ndarray] = []
        for conv, bn in zip(CONV_LAYERS, BN_LAYERS):
            w, b = _fold_batchnorm(state_dict, conv, bn)
            cin = w.shape[1]
            # (out, in, kh, kw) -> (kh, kw, in, out) -> (9 * in, out)
            self.conv_w.append(np.ascontiguousarray(
                w.transpose(2, 3, 1, 0).reshape(9 * cin, w.shape[0]), dtype=np.float32))
            self.conv_b.append(b.astype(np.float32))
        self.fc_w = [np.ascontiguousarray(state_dict[f"{fc}.weight"].T, dtype=np.float32)
                     for fc in FC_LAYERS]                       # (in, out)
        self.fc_b = [state_dict[f"{fc}.bias"].astype(np.float32) for fc in FC_LAYERS]

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike | None = None) -> "Encoder":
        """Encoder of a checkpoint file (default: :func:`fetch_checkpoint`)."""
        return cls(read_state_dict(path if path is not None else fetch_checkpoint()))

    # ---- the network on a batch (B, 64, T, 1), channels last ----
    def _forward(self, x: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """x (B, 64, T, 1) float32, zero after each clip's length -> (B, T // 8, 512)."""
        for w, b in zip(self.conv_w, self.conv_b):
            bsz, h, t, c = x.shape
            xp = np.zeros((bsz, h + 2, t + 2, c), dtype=np.float32)
            xp[:, 1:-1, 1:-1] = x
            patches = np.concatenate([xp[:, i:i + h, j:j + t] for i in range(3)
                                      for j in range(3)], axis=-1)     # (B, h, t, 9c)
            y = patches.reshape(-1, 9 * c) @ w
            y += b
            np.maximum(y, 0, out=y)
            x = _max_pool(y.reshape(bsz, h, t, -1))
            lengths = lengths // 2
            if np.any(lengths < x.shape[2]):
                # zero what lies past each clip, so that the next convolution sees there the
                # zeros of its own padding, as for the clip alone
                inside = np.arange(x.shape[2])[None, :] < lengths[:, None]      # (B, t / 2)
                x *= inside[:, None, :, None]
        bsz, h, t, c = x.shape                                          # (B, 8, T/8, 64)
        z = x.transpose(0, 2, 1, 3).reshape(bsz * t, h * c)             # index mel * 64 + ch
        for w, b in zip(self.fc_w, self.fc_b):
            z = z @ w
            z += b
            np.maximum(z, 0, out=z)
        return z.reshape(bsz, t, -1)

    def frames(self, logmel_normalised: np.ndarray) -> np.ndarray:
        """Frame embeddings of one clip.

        Parameters
        ----------
        logmel_normalised : np.ndarray, shape (64, T)
            :func:`normalise` (:func:`log_mel`), T >= 8.

        Returns
        -------
        frames : np.ndarray, shape (T // 8, 512), float32
        """
        x = _check_logmel(logmel_normalised, where="Encoder.frames", what="logmel_normalised")
        out = self._forward(x[None, :, :, None], np.array([x.shape[1]]))
        return out[0]

    def frames_batch(self, logmels: Iterable[np.ndarray], *,
                     max_frames: int = 512) -> list[np.ndarray]:
        """Frame embeddings of several clips of any lengths, the same as :meth:`frames` each.

        Clips are sorted by length and run in groups of at most ``max_frames`` log-mel frames
        (padded to the group's longest; the padding is zeroed before every convolution so that
        it acts as the convolution's own zero padding: results equal the one-clip ones).

        Grouping does not pay on CPU: one 3 s clip already makes matrix products of ~5000 rows,
        and bigger groups were slower here (one core, RAVDESS / TESS clips: about 10 ms of CPU
        per 3 s of audio one clip at a time or with the default, 14-15 ms with
        ``max_frames=4096``), as the im2col matrix outgrows the cache. The default keeps groups
        to about one clip of up to 5 s, or a few short ones.

        Parameters
        ----------
        logmels : iterable of np.ndarray, each shape (64, T_i)
            Normalised log-mels, T_i >= 8.
        max_frames : int, keyword-only
            Upper bound on (clips in a group) x (longest T in it); a single longer clip runs
            alone.

        Returns
        -------
        frames : list of np.ndarray, shapes (T_i // 8, 512), float32, in the input order
        """
        if not isinstance(max_frames, int) or max_frames < 1:
            raise ValueError(f"{__name__}.Encoder.frames_batch: max_frames must be an int >= 1; "
                             f"got {max_frames!r}")
        xs = [_check_logmel(x, where="Encoder.frames_batch", what=f"logmels[{i}]")
              for i, x in enumerate(logmels)]
        order = sorted(range(len(xs)), key=lambda i: xs[i].shape[1])
        out: list[np.ndarray | None] = [None] * len(xs)
        pos = 0
        while pos < len(order):
            group = [order[pos]]
            while (pos + len(group) < len(order)
                   and (len(group) + 1) * xs[order[pos + len(group)]].shape[1] <= max_frames):
                group.append(order[pos + len(group)])
            pos += len(group)
            lengths = np.array([xs[i].shape[1] for i in group])
            batch = np.zeros((len(group), N_MELS, lengths.max(), 1), dtype=np.float32)
            for k, i in enumerate(group):
                batch[k, :, :lengths[k], 0] = xs[i]
            res = self._forward(batch, lengths)
            for k, i in enumerate(group):
                out[i] = res[k, :lengths[k] // 8].copy()
        return out  # type: ignore[return-value]


def _max_pool(y: np.ndarray) -> np.ndarray:
    """2x2 max-pool, stride 2, floor: (B, h, t, c) -> (B, h // 2, t // 2, c)."""
    h, t = y.shape[1] // 2 * 2, y.shape[2] // 2 * 2
    rows = np.maximum(y[:, 0:h:2, :t], y[:, 1:h:2, :t])        # 4x faster than reshape + max
    return np.maximum(rows[:, :, 0::2], rows[:, :, 1::2])


def _check_logmel(x, *, where: str, what: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[0] != N_MELS:
        raise ValueError(f"{__name__}.{where}: {what} must have shape ({N_MELS}, T); got {x.shape}")
    if x.shape[1] < MIN_FRAMES:
        raise ValueError(f"{__name__}.{where}: {what} must have at least {MIN_FRAMES} frames (the "
                         f"encoder halves time three times); got {x.shape[1]}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{__name__}.{where}: {what} contains NaN or infinite values")
    return x


# --------------------------------------------------------------------------------------------
# Utterance vectors
# --------------------------------------------------------------------------------------------
def pool(frames: np.ndarray, *, method: str = "maxmean_std") -> np.ndarray:
    """Pool frame embeddings over time into one vector.

    Parameters
    ----------
    frames : np.ndarray, shape (n_frames, 512)
        :meth:`Encoder.frames`, n_frames >= 1.
    method : str, keyword-only
        ``"maxmean"``: max + mean over time (BYOL-A's own, 512 values); ``"maxmean_std"``: that,
        then the standard deviation over time (population, ddof 0), 1024 values, the
        reference's; ``"mean_std"``: mean then standard deviation, 1024. Which pooling serves
        emotion best is a question for measurement; only ``maxmean_std`` is measured so far.

    Returns
    -------
    vector : np.ndarray, shape (POOLINGS[method],), float32
    """
    if method not in POOLINGS:
        raise ValueError(f"{__name__}.pool: method must be one of {sorted(POOLINGS)}; got "
                         f"{method!r}")
    frames = np.asarray(frames)
    if frames.ndim != 2 or frames.shape[1] != EMBED_DIM or frames.shape[0] < 1:
        raise ValueError(f"{__name__}.pool: frames must have shape (n_frames >= 1, "
                         f"{EMBED_DIM}); got {frames.shape}")
    f = frames.astype(np.float32, copy=False)
    mean = f.mean(axis=0)
    if method == "maxmean":
        return (f.max(axis=0) + mean).astype(np.float32)
    std = f.std(axis=0)
    first = f.max(axis=0) + mean if method == "maxmean_std" else mean
    return np.concatenate([first, std]).astype(np.float32)


@functools.lru_cache(maxsize=1)
def default_encoder() -> Encoder:
    """The :class:`Encoder` of :func:`fetch_checkpoint`'s file, built once per process."""
    return Encoder.from_checkpoint()


def clip_frames(y: np.ndarray, *, sr: int, encoder: Encoder | None = None) -> np.ndarray:
    """The encoder's frames of one clip: resample to 16 kHz, log-mel, normalise, frames.

    Parameters
    ----------
    y : np.ndarray, shape (n_samples,)
        Mono audio at ``sr``; at least :data:`MIN_SAMPLES` samples once at 16 kHz.
    sr : int, keyword-only
        Its sample rate (resampled with ``ser.audio.resample``, soxr_hq, if not 16000).
    encoder : Encoder, keyword-only
        Default :func:`default_encoder` (downloads the checkpoint once if needed).

    Returns
    -------
    frames : np.ndarray, shape (n_frames, EMBED_DIM), float32
    """
    if not isinstance(sr, (int, np.integer)) or isinstance(sr, bool) or sr <= 0:
        raise ValueError(f"{__name__}.clip_frames: sr must be a positive int; got {sr!r}")
    y = _check_signal(y, where="clip_frames")
    if sr != SAMPLE_RATE:
        y = resample(y, int(sr), sr=SAMPLE_RATE)
    enc = encoder if encoder is not None else default_encoder()
    return enc.frames(normalise(log_mel(y, sr=SAMPLE_RATE)))


def embed(y: np.ndarray, *, sr: int, method: str = "maxmean_std",
          encoder: Encoder | None = None) -> np.ndarray:
    """One utterance vector: resample to 16 kHz, log-mel, normalise, frames, pool.

    Parameters
    ----------
    y : np.ndarray, shape (n_samples,)
        Mono audio at ``sr``; at least :data:`MIN_SAMPLES` samples once at 16 kHz.
    sr : int, keyword-only
        Its sample rate (resampled with ``ser.audio.resample``, soxr_hq, if not 16000).
    method : str, keyword-only
        See :func:`pool`.
    encoder : Encoder, keyword-only
        Default :func:`default_encoder` (downloads the checkpoint once if needed).

    Returns
    -------
    vector : np.ndarray, shape (POOLINGS[method],), float32
    """
    if method not in POOLINGS:
        raise ValueError(f"{__name__}.embed: method must be one of {sorted(POOLINGS)}; got "
                         f"{method!r}")
    return pool(clip_frames(y, sr=sr, encoder=encoder), method=method)


# --------------------------------------------------------------------------------------------
# Keras
# --------------------------------------------------------------------------------------------
def keras_encoder(state_dict: dict, *, n_frames: int | None = None, name: str = "byols"):
    """The same network as a Keras model, weights from the PyTorch state dict (fine-tuning).

    Channels last: input (batch, 64 mel, T, 1) normalised log-mel, output (batch, T // 8, 512).
    Conv2D kernels are PyTorch's (out, in, kh, kw) transposed to (kh, kw, in, out), Dense
    kernels (out, in) to (in, out); BatchNormalization layers (epsilon 1e-5, momentum 0.9 =
    PyTorch's 0.1) keep the running statistics; the dropout of ``fc.2`` (p = 0.3, BYOL-A's) is
    there for training and does nothing at inference. After the three blocks, (batch, mel 8,
    time, ch 64) is permuted to (batch, time, mel, ch) and reshaped to (batch, time, 512):
    index mel * 64 + channel, as the PyTorch model.

    Parameters
    ----------
    state_dict : dict of str to np.ndarray
        :func:`read_state_dict`.
    n_frames : int, keyword-only
        Fixed input length T (>= 8), or None for any length.
    name : str, keyword-only
        Model name.

    Returns
    -------
    model : keras.Model
    """
    check_state_dict(state_dict)
    if n_frames is not None and (not isinstance(n_frames, int) or n_frames < MIN_FRAMES):
        raise ValueError(f"{__name__}.keras_encoder: n_frames must be None or an int >= "
                         f"{MIN_FRAMES}; got {n_frames!r}")
    keras = import_keras()
    layers = keras.layers
    inp = keras.Input(shape=(N_MELS, n_frames, 1), name="logmel")
    x = inp
    for k, (conv, bn) in enumerate(zip(CONV_LAYERS, BN_LAYERS)):
        c = layers.Conv2D(64, 3, padding="same", name=conv.replace(".", "_"))
        x = c(x)
        c.set_weights([state_dict[f"{conv}.weight"].transpose(2, 3, 1, 0),
                       state_dict[f"{conv}.bias"]])
        b = layers.BatchNormalization(epsilon=BN_EPS, momentum=0.9, name=bn.replace(".", "_"))
        x = b(x)
        b.set_weights([state_dict[f"{bn}.weight"], state_dict[f"{bn}.bias"],
                       state_dict[f"{bn}.running_mean"], state_dict[f"{bn}.running_var"]])
        x = layers.ReLU(name=f"relu_{k}")(x)
        x = layers.MaxPooling2D(2, name=f"pool_{k}")(x)
    x = layers.Permute((2, 1, 3), name="time_mel_channel")(x)      # (B, T/8, 8, 64)
    x = layers.Reshape((-1, 8 * 64), name="mel_times_64_plus_channel")(x)
    for k, fc in enumerate(FC_LAYERS):
        d = layers.Dense(EMBED_DIM, activation="relu", name=fc.replace(".", "_"))
        x = d(x)
        d.set_weights([state_dict[f"{fc}.weight"].T, state_dict[f"{fc}.bias"]])
        if k == 0:
            x = layers.Dropout(0.3, name="fc_2")(x)
    return keras.Model(inp, x, name=name)
