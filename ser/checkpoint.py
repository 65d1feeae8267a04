"""A saved model: H5 plus its JSON sidecar (the checkpoint carries its config)."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from ser import encoder as byols_encoder  # the BYOL-S encoder's weights and feature set
from ser.adaptation import ADAPTATIONS, SPEAKER_PRIOR
from ser.console import quiet_tensorflow
from ser.corpora import EMOTIONS
from ser.features import FEATURE_DIMS, FEATURE_SETS, feature_params
from ser.files import atomic_path, os_reason, write_json
from ser.paths import DEFAULT_MODEL

SIDECAR_FORMAT = 1

SIDECAR_KEYS = ("format", "model", "labels", "feature", "feature_params", "input_shape",
                "normalization", "adaptation")


def make_sidecar(*, model: str, feature: str, input_shape: list[int],
                 normalization: dict | None, adaptation: str, trained_on: dict,
                 training: dict, protocol: str, metrics: dict) -> dict:
    """The one sidecar builder: what a saved model carries so that prediction cannot drift
    from training (labels, feature set and its parameters, input shape, normalisation,
    adaptation), and how it was made (data, recipe, protocol, figures, library versions)."""
    speaker = {"speaker_prior_weight": SPEAKER_PRIOR} if adaptation == "speaker" else {}
    return {"model": model, "labels": list(EMOTIONS), "feature": feature,
            "feature_params": feature_params(feature), "input_shape": list(input_shape),
            "normalization": normalization, "adaptation": adaptation, **speaker,
            "trained_on": trained_on, "training": training, "protocol": protocol,
            "metrics": metrics, "versions": library_versions()}


def sidecar_path(model_path: str | os.PathLike) -> Path:
    """``models/X.h5`` -> ``models/X.json``."""
    return Path(model_path).with_suffix(".json")


def save_model(model, path: str | os.PathLike, sidecar: dict) -> Path | None:
    """Save a Keras model as H5 plus its JSON sidecar, both written atomically.

    ``sidecar`` must hold at least :data:`SIDECAR_KEYS` (``format`` is filled in). A model
    already at ``path`` is kept (with its sidecar) under ``previous/`` beside it; returns that
    copy's path, or ``None`` if nothing was replaced.
    """
    import warnings

    from ser.files import keep_previous
    sidecar = {"format": SIDECAR_FORMAT, **sidecar}
    missing = [k for k in SIDECAR_KEYS if k not in sidecar]
    if missing:
        raise ValueError(f"sidecar for {path} lacks {missing}")
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.unlink()   # h5py wants to create it
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Keras 3 calls H5 "legacy"
            model.save(str(tmp))
        kept = keep_previous(path)     # only once the new model is written
    write_json(sidecar_path(path), sidecar)
    return kept


SIDECAR_MAX_BYTES = 64 * 2 ** 20   # the shipped sidecars are < 100 kB


def _json_kind(v) -> str:
    text = json.dumps(v) if not isinstance(v, (dict, list)) else ""
    kind = {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(v), "a number")
    return f"{kind} {text}" if text and len(text) <= 40 else kind


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _sidecar_type_problem(meta: dict) -> str | None:
    """What is of the wrong type in a parsed sidecar (None: nothing)."""
    def numbers(v) -> bool:
        return isinstance(v, list) and all(_is_number(x) for x in v)
    expect = {
        "format": ("a whole number", lambda v: isinstance(v, int) and not isinstance(v, bool)),
        "model": ("a string", lambda v: isinstance(v, str)),
        "labels": ("a list of strings",
                   lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v)),
        "feature": ("a string", lambda v: isinstance(v, str)),
        "feature_params": ("an object", lambda v: isinstance(v, dict)),
        "input_shape": ("a list of positive whole numbers",
                        lambda v: isinstance(v, list) and bool(v) and all(
                            isinstance(x, int) and not isinstance(x, bool) and x > 0
                            for x in v)),
        "normalization": ('null or {"mean": [numbers], "std": [numbers]}',
                          lambda v: v is None or (isinstance(v, dict) and numbers(v.get("mean"))
                                                  and numbers(v.get("std")))),
        "adaptation": ("a string", lambda v: isinstance(v, str)),
        "speaker_prior_weight": ("a number >= 0",
                                 lambda v: _is_number(v) and math.isfinite(v) and v >= 0),
    }
    for key, (want, ok) in expect.items():
        if key in meta and not ok(meta[key]):
            return f"{key} is {_json_kind(meta[key])}, expected {want}"
    return None


def read_sidecar(model_path: str | os.PathLike) -> dict:
    """Read and check the sidecar of ``model_path``; errors name the file and the problem.

    Raises
    ------
    FileNotFoundError
        No sidecar beside the model.
    ValueError
        One line naming the sidecar: it cannot be read, is not UTF-8, not JSON, nested too
        deeply to parse, larger than :data:`SIDECAR_MAX_BYTES`, not an object, lacks a key of
        :data:`SIDECAR_KEYS`, has a key of the wrong type, is of a newer format, or its labels
        or feature parameters are not this version's.
    """
    sp = sidecar_path(model_path)
    try:
        size = sp.stat().st_size
    except (FileNotFoundError, NotADirectoryError):
        raise FileNotFoundError(f"{sp}: model sidecar not found (needed beside "
                                f"{model_path})") from None
    except OSError as e:
        raise ValueError(f"{sp}: cannot read the sidecar ({os_reason(e)})") from None
    if size > SIDECAR_MAX_BYTES:
        raise ValueError(f"{sp}: malformed sidecar: {size} bytes, more than "
                         f"{SIDECAR_MAX_BYTES} (a sidecar is a few kB)")
    try:
        raw = sp.read_bytes()
    except OSError as e:
        raise ValueError(f"{sp}: cannot read the sidecar ({os_reason(e)})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{sp}: malformed sidecar: not UTF-8 text (byte {e.start} is "
                         f"0x{raw[e.start]:02x})") from None
    try:
        meta = json.loads(text)
    except RecursionError:
        raise ValueError(f"{sp}: malformed sidecar: nested too deeply to read") from None
    except ValueError as e:          # JSONDecodeError, or an integer too long to convert
        raise ValueError(f"{sp}: not valid JSON ({str(e).splitlines()[0]})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{sp}: malformed sidecar: {_json_kind(meta)} at the top, expected "
                         f"an object")
    check_model_encoder(model_path, meta)   # first: its message names the weights file
    missing = [k for k in SIDECAR_KEYS if k not in meta]
    if missing:
        raise ValueError(f"{sp}: sidecar lacks {', '.join(missing)}")
    problem = _sidecar_type_problem(meta)
    if problem:
        raise ValueError(f"{sp}: malformed sidecar: {problem}")
    if not 1 <= meta["format"] <= SIDECAR_FORMAT:
        raise ValueError(f"{sp}: sidecar format {meta['format']} is "
                         f"{'newer than' if meta['format'] > SIDECAR_FORMAT else 'not'} the "
                         f"one this version reads ({SIDECAR_FORMAT}); update the code or "
                         f"retrain the model")
    if list(meta["labels"]) != list(EMOTIONS):
        raise ValueError(f"{sp}: label map {meta['labels']} differs from this version's "
                         f"{list(EMOTIONS)}")
    fp = meta["feature_params"]
    if meta["feature"] in FEATURE_SETS and fp != feature_params(meta["feature"]):
        raise ValueError(f"{sp}: model was trained with feature parameters {fp}, this version "
                         f"computes {feature_params(meta['feature'])}; retrain it")
    _check_servable(meta, sp)
    return meta


def _check_servable(meta: dict, where: Path) -> None:
    """Refuse (ValueError naming the sidecar) what this version cannot serve: an unknown
    feature set, an input or a normalisation of another size, an unknown adaptation."""
    feature = meta["feature"]
    if feature not in FEATURE_SETS:
        raise ValueError(f"{where}: feature set {feature!r} is not one this version computes "
                         f"({', '.join(FEATURE_SETS)}); retrain the model")
    dim = FEATURE_DIMS[feature]
    shape = tuple(meta["input_shape"])
    if int(np.prod(shape)) != dim:
        raise ValueError(f"{where}: input shape {list(shape)} holds {int(np.prod(shape))} "
                         f"values, but feature set {feature!r} has {dim}")
    norm = meta.get("normalization")
    if norm:
        mean = np.asarray(norm["mean"], np.float64)
        std = np.asarray(norm["std"], np.float64)
        if mean.shape != (dim,) or std.shape != (dim,):
            raise ValueError(f"{where}: normalization has {mean.size} means and {std.size} "
                             f"stds, but the feature set has {dim} values")
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std)) and np.all(std > 0)):
            raise ValueError(f"{where}: normalization has non-finite or non-positive values")
    if meta["adaptation"] not in ADAPTATIONS:
        raise ValueError(f"{where}: adaptation {meta['adaptation']!r} is not implemented in "
                         f"this version (known: {', '.join(ADAPTATIONS)})")


def load_model(model_path: str | os.PathLike = DEFAULT_MODEL, *, meta: dict | None = None):
    """Load a saved model and its sidecar; refuse a model whose input does not match.

    ``meta``: its sidecar as :func:`read_sidecar` returned it (read here if not given).

    Returns
    -------
    model : keras.Model
        Uncompiled (Keras 3 cannot continue training an H5 model compiled on load; compile it
        again to train).
    meta : dict
        The sidecar.
    """
    model_path = Path(model_path)
    if not model_path.exists():
        raise FileNotFoundError(f"{model_path}: model file not found (train one with "
                                f"neural_network.py, or pass --model)")
    meta = read_sidecar(model_path) if meta is None else meta
    quiet_tensorflow()
    import keras
    try:
        model = keras.models.load_model(str(model_path), compile=False)
    except Exception as e:
        raise ValueError(f"{model_path}: cannot load model ({str(e).splitlines()[0]})") from None
    want = tuple(meta["input_shape"])
    have = tuple(model.input_shape[1:])
    if have != want:
        raise ValueError(f"{model_path}: model input {have} does not match its sidecar's "
                         f"{want} (feature set {meta['feature']})")
    return model, meta


def check_model_encoder(model_path: str | os.PathLike, meta: dict | None = None) -> None:
    """Refuse (one line naming the file) a model trained on encoder features whose encoder
    weights are missing here or are not the ones its sidecar names (ser/encoder.py)."""
    byols_encoder.check_model_encoder(model_path, meta)


def normalize(X: np.ndarray, meta: dict) -> np.ndarray:
    """Apply the sidecar's normalisation (``None`` or ``{"mean": [...], "std": [...]}``)."""
    norm = meta.get("normalization")
    X = np.asarray(X, dtype=np.float32)
    if not norm:
        return X
    return (X - np.asarray(norm["mean"], np.float32)) / np.asarray(norm["std"], np.float32)


def model_input(vectors: np.ndarray, meta: dict) -> np.ndarray:
    """Feature vectors (n, d) -> the model's input (n, *input_shape), normalised."""
    X = normalize(np.atleast_2d(vectors), meta)
    return X.reshape((X.shape[0], *meta["input_shape"]))


def library_versions() -> dict:
    import importlib.metadata as md
    out = {}
    for pkg in ("tensorflow-cpu", "tensorflow", "keras", "librosa", "numpy", "scikit-learn",
                "soxr"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out
