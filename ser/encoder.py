"""The BYOL-S encoder as the pipeline uses it: weights converted once, offline, checked.

:mod:`ser.byols` reads the authors' PyTorch checkpoint (fetched with pooch from its pinned URL,
or a local copy named by ``SER_BYOLS_PATH``) and runs the network in numpy. This module

- converts that checkpoint **once** into ``models/byols_default512.npz`` (numpy arrays only,
  read back with ``allow_pickle=False``; written byte for byte the same on every conversion, so
  its sha256 is a constant of this version, :data:`NPZ_SHA256`) beside its licence notice
  ``models/BYOLS_LICENSE.txt``: ``python -m ser.cli.encoder`` (``ser encoder``);
- loads the encoder from that file at extraction and prediction time, without the network and
  without unpickling, refusing a file whose sha256 is not :data:`NPZ_SHA256`;
- defines the ``byols`` feature set's parameters (:func:`feature_params`, recorded in the
  feature caches and the model sidecars) and vector (:func:`vector`);
- checks a model's sidecar against the encoder file (:func:`check_model_encoder`): a model
  trained on encoder features is refused, with one line naming the file, when the file is
  missing or is not the encoder the model was trained with.

``SER_BYOLS_WEIGHTS`` names another location of the ``.npz`` (tests, read-only installs).
"""
from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np

from ser import byols
from ser.errors import SerError
from ser.files import atomic_path, require_sha256
from ser.paths import MODELS_DIR
from ser.encoders import WeightsError, whisper

NAME = "byols_default512"
"""The encoder's name in feature parameters and sidecars."""
NPZ_NAME = f"{NAME}.npz"
LICENSE_NAME = "BYOLS_LICENSE.txt"
NPZ_SHA256 = "097469c2577870e1e644745d65bdcbaf2214f58c8b5c382ce341d766990f4def"
"""sha256 of the ``.npz`` that :func:`convert` writes from the checkpoint of :data:`byols.SHA256`
(deterministic: sorted members, fixed dates, no compression, ``.npy`` format 1.0)."""
ENV_WEIGHTS = "SER_BYOLS_WEIGHTS"
"""Environment variable: the ``.npz`` to use instead of ``models/byols_default512.npz``."""

POOLING = "maxmean_std"
"""How the encoder's frames are pooled per utterance (chosen on validation actors, see the
README): max + mean over time, then the standard deviation, 1024 values."""
DIM = byols.POOLINGS[POOLING]
VERSION = 1
"""Bump when :func:`vector` changes what it computes."""

PAPER = ("Scheidwasser-Clow, N., Kegler, M., Beckmann, P., Cernak, M. (2022). SERAB: A "
         "multi-lingual benchmark for speech emotion recognition. Proc. ICASSP 2022. "
         "arXiv:2110.03414")
SOURCE_REPO = "https://github.com/Neclow/SERAB"
SOURCE_COMMIT = "cc0ebd74014c19ce4fad752afe5dfd374fc7fdb2"
MIT_TEXT = """\
MIT License

Copyright 2021 Neil Scheidwasser-Clow, Mikolaj Kegler, Pierre Beckmann and Milos Cernak

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""


class EncoderError(WeightsError):
    """The encoder's weights are missing or not the expected ones (one line naming the file):
    the :class:`ser.encoders.WeightsError` of BYOL-S."""


# --------------------------------------------------------------------------------------------
# Where the weights are, and what they are
# --------------------------------------------------------------------------------------------
def weights_path() -> Path:
    """``$SER_BYOLS_WEIGHTS`` if set, else ``models/byols_default512.npz``."""
    return Path(os.environ.get(ENV_WEIGHTS) or MODELS_DIR / NPZ_NAME)


def sha256_of(path: str | os.PathLike) -> str:
    return byols.sha256_of(path)


def feature_params() -> dict:
    """Parameters of the ``byols`` set (beside ``feature``, ``dim`` and ``version``): the
    encoder (name, file, its sha256, the checkpoint's), the pooling and the front end."""
    return {"encoder": NAME, "encoder_file": NPZ_NAME, "encoder_sha256": NPZ_SHA256,
            "checkpoint_sha256": byols.SHA256, "pooling": POOLING,
            "sample_rate": byols.SAMPLE_RATE, "resampler": "soxr_hq", "n_mels": byols.N_MELS,
            "fmin": byols.FMIN, "fmax": byols.FMAX, "n_fft": byols.N_FFT,
            "win_length": byols.WIN, "hop_length": byols.HOP, "log": "natural",
            "norm_mean": byols.NORM_MEAN, "norm_std": byols.NORM_STD}


# --------------------------------------------------------------------------------------------
# Conversion (once, from the checkpoint)
# --------------------------------------------------------------------------------------------
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def npz_bytes(state: dict) -> bytes:
    """The network's float32 tensors (PyTorch names and layouts) as ``.npz`` bytes that depend
    on the values only: members sorted by name, stored, dated 1980-01-01, ``.npy`` format 1.0.
    BatchNorm's step counters are left out (not used for inference)."""
    byols.check_state_dict(state)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as z:
        for key in sorted(byols.EXPECTED_SHAPES):
            arr = np.ascontiguousarray(state[key], dtype="<f4")
            member = io.BytesIO()
            np.lib.format.write_array(member, arr, version=(1, 0), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_STORED
            info.external_attr = 0o644 << 16
            info.create_system = 3
            z.writestr(info, member.getvalue())
    return buf.getvalue()


def license_text(checkpoint_sha256: str = byols.SHA256) -> str:
    """``BYOLS_LICENSE.txt``: where the weights come from, the MIT notice, what to cite."""
    return (
        f"{NPZ_NAME}: the BYOL-S encoder (512-d, AudioNTT2020 network of BYOL-A) of the SERAB\n"
        f"benchmark, converted from its PyTorch checkpoint to numpy arrays by ser/encoder.py\n"
        f"(`python -m ser.cli.encoder`): the same float32 values, PyTorch names and layouts.\n\n"
        f"Source:      {SOURCE_REPO} (commit {SOURCE_COMMIT})\n"
        f"Checkpoint:  {byols.URL}\n"
        f"  sha256     {checkpoint_sha256}\n"
        f"  size       {byols.SIZE} bytes\n"
        f"This file:   {NPZ_NAME}, sha256 {NPZ_SHA256}\n\n"
        f"Cite: {PAPER}\n\n"
        f"The weights are distributed under the SERAB repository's licence (its LICENSE file,\n"
        f"reproduced here):\n\n{MIT_TEXT}")


def convert(out_dir: str | os.PathLike = MODELS_DIR, *,
            checkpoint: str | os.PathLike | None = None) -> Path:
    """Write ``byols_default512.npz`` and ``BYOLS_LICENSE.txt`` into ``out_dir``.

    The checkpoint is ``checkpoint`` if given, else :func:`ser.byols.fetch_checkpoint`
    (``SER_BYOLS_PATH``, or the pinned URL with pooch, once, into a cache); it is read without
    unpickling anything but a state dict. Both files are written atomically.

    Raises
    ------
    EncoderError
        The conversion does not give :data:`NPZ_SHA256` (another checkpoint or numpy layout).
    ser.byols.CheckpointError, ser.byols.FetchError
        From reading or fetching the checkpoint.
    """
    ckpt = Path(checkpoint) if checkpoint is not None else byols.fetch_checkpoint()
    ckpt_sha = sha256_of(ckpt)
    if ckpt_sha != byols.SHA256:
        raise EncoderError(f"{ckpt}: sha256 {ckpt_sha} is not the BYOL-S checkpoint's "
                           f"{byols.SHA256}")
    data = npz_bytes(byols.read_state_dict(ckpt))
    got = hashlib.sha256(data).hexdigest()
    if got != NPZ_SHA256:
        raise EncoderError(f"{ckpt}: converted weights have sha256 {got}, this version expects "
                           f"{NPZ_SHA256} (numpy's .npy layout changed?)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dest = out_dir / NPZ_NAME
    _atomic_write(dest, data)
    _atomic_write(out_dir / LICENSE_NAME, license_text(ckpt_sha).encode())
    return dest


def _atomic_write(dest: Path, data: bytes) -> None:
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)


# --------------------------------------------------------------------------------------------
# Loading (extraction and prediction time)
# --------------------------------------------------------------------------------------------
def _missing(path: Path) -> EncoderError:
    return EncoderError(f"{path}: BYOL-S encoder weights not found (make them once with: "
                        f"python -m ser.cli.encoder, or: ser encoder)")


def read_weights(path: str | os.PathLike | None = None) -> dict[str, np.ndarray]:
    """The state dict in ``path`` (default :func:`weights_path`), checked: its sha256 is
    :data:`NPZ_SHA256` and it holds exactly the network's tensors. Read with
    ``allow_pickle=False``."""
    path = Path(path) if path is not None else weights_path()
    if not path.is_file():
        raise _missing(path)
    require_sha256(path, NPZ_SHA256, EncoderError, missing="",
                   mismatch=f"is not the BYOL-S weights' {NPZ_SHA256} (convert them again: "
                            f"python -m ser.cli.encoder)")
    try:
        with np.load(path, allow_pickle=False) as z:
            state = {k: z[k] for k in z.files}
    except (ValueError, OSError, zipfile.BadZipFile) as e:
        raise EncoderError(f"{path}: not readable weights ({e})") from None
    byols.check_state_dict(state, source=path)
    return state


@functools.lru_cache(maxsize=2)
def _encoder_at(path: str, size: int, mtime_ns: int) -> byols.Encoder:
    return byols.Encoder(read_weights(path))


def load_encoder(path: str | os.PathLike | None = None) -> byols.Encoder:
    """The numpy :class:`ser.byols.Encoder` of the weights file, built once per process."""
    path = Path(path) if path is not None else weights_path()
    try:
        st = path.stat()
    except OSError:
        raise _missing(path) from None
    return _encoder_at(str(path.resolve()), st.st_size, st.st_mtime_ns)


def vector(y: np.ndarray, sr: int) -> np.ndarray:
    """The ``byols`` vector of one utterance: resampled to 16 kHz (soxr_hq), BYOL-S's log-mel,
    normalised, the encoder's frames, pooled (:data:`POOLING`). Shape (:data:`DIM`,), float32."""
    return byols.embed(y, sr=sr, method=POOLING, encoder=load_encoder())


# --------------------------------------------------------------------------------------------
# Sidecars of models trained on encoder features
# --------------------------------------------------------------------------------------------
def encoders_named(params) -> list[dict]:
    """Every encoder entry (dicts with ``encoder_sha256``) in feature parameters, nested parts
    of a composite set included."""
    found = []
    if isinstance(params, dict):
        if "encoder_sha256" in params:
            found.append(params)
        for v in params.values():
            if isinstance(v, dict):
                found += encoders_named(v)
    return found


def check_model_encoder(model_path: str | os.PathLike, meta: dict | None = None) -> None:
    """Refuse a model whose sidecar names an encoder this installation cannot serve.

    ``meta`` is the sidecar (read from beside ``model_path`` if not given; an unreadable one
    is left to :func:`ser.checkpoint.read_sidecar` to report). For each encoder the sidecar's
    feature parameters name: the sidecar's sha256 must be this version's (:data:`NPZ_SHA256`),
    and the weights file (:func:`weights_path`) must exist with that sha256.

    Raises
    ------
    EncoderError
        One line naming the file (the sidecar or the weights) and the problem.
    """
    model_path = Path(model_path)
    side = model_path.with_suffix(".json")
    if meta is None:
        try:
            meta = json.loads(side.read_text())
        except (OSError, ValueError):
            return
    if not isinstance(meta, dict):
        return
    for enc in encoders_named(meta.get("feature_params")):
        want = enc.get("encoder_sha256")
        name = enc.get("encoder_file", NPZ_NAME)
        if enc.get("encoder") != NAME and want is not None:
            _check_other_encoder(side, enc)
            continue
        if enc.get("encoder") != NAME or want != NPZ_SHA256:
            raise EncoderError(f"{side}: the model was trained with encoder {name} of sha256 "
                               f"{want}, this version has {NPZ_NAME} of sha256 {NPZ_SHA256}; "
                               f"retrain the model")
        require_sha256(weights_path(), want, EncoderError,
                       missing=f"encoder weights not found ({model_path} needs {NAME}; make "
                               f"them once with: python -m ser.cli.encoder)",
                       mismatch=f"is not that of the encoder {model_path} was trained with "
                                f"({want}); convert it again: python -m ser.cli.encoder")


def _check_other_encoder(side: Path, enc: dict) -> None:
    """A sidecar's entry of an encoder of :mod:`ser.encoders` (Whisper): its weights must be
    the ones this version pins (they are fetched and checked by sha256 at first use)."""
    if enc.get("encoder") != whisper.NAME:
        raise EncoderError(f"{side}: the model was trained with encoder {enc.get('encoder')!r}, "
                           f"which this version does not have; retrain the model")
    want, have = enc.get("encoder_sha256"), whisper.FILES["model.bin"][0]
    if want != have:
        raise EncoderError(f"{side}: the model was trained with {enc.get('encoder_file')} of "
                           f"sha256 {want}, this version pins {have}; retrain the model")
