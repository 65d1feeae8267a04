"""A saved model: H5 plus its JSON sidecar (the checkpoint carries its config)."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from ser import encoder as byols_encoder  # the BYOL-S encoder's weights and feature set
from ser.adaptation import ADAPTATIONS
from ser.calibration import T_MAX, T_MIN
from ser.console import info, quiet_tensorflow
from ser.corpora import EMOTIONS
from ser.features import FEATURE_DIMS, FEATURE_SETS, feature_params
from ser.export import SIDECAR_KEY, ExportError, export_from_h5, record_verified, tflite_path
from ser.files import (
    atomic_path,
    check_regular_file,
    keep_previous,
    read_regular,
    sha256_file,
    write_json,
)
from ser.normalization import SPEAKER_PRIOR, normalization_problem, normalize
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


def save_model(model, path: str | os.PathLike, sidecar: dict, *, export: bool = True
               ) -> Path | None:
    """Save a Keras model as H5 plus its JSON sidecar, both written atomically, and its
    LiteRT export (``<stem>.tflite``, see :mod:`ser.export`) beside them.

    ``sidecar`` must hold at least :data:`SIDECAR_KEYS` (``format`` is filled in). The export
    is made from the H5 just written (a model in memory has names that depend on the process's
    history; the saved one gives the same bytes on every run) and recorded under the sidecar's
    optional key ``"litert"`` (:func:`export_entry`); a model LiteRT cannot convert (GRU/LSTM
    here) is saved without it, with a one-line note on stderr, and is served by TensorFlow.
    ``export=False``: no export (an export of an older save is then removed, kept under
    ``previous/``).

    A model already at ``path`` is kept (with its sidecar and export) under ``previous/``
    beside it; returns that copy's path, or ``None`` if nothing was replaced.
    """
    import warnings

    sidecar = {"format": SIDECAR_FORMAT, **sidecar}
    sidecar.pop(SIDECAR_KEY, None)      # an entry of another save (e.g. a copied sidecar)
    missing = [k for k in SIDECAR_KEYS if k not in sidecar]
    if missing:
        raise ValueError(f"sidecar for {path} lacks {missing}")
    path = Path(path)
    lite = tflite_path(path)
    with atomic_path(path) as tmp:
        tmp.unlink()   # h5py wants to create it
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Keras 3 calls H5 "legacy"
            model.save(str(tmp))
        tmp_lite = tmp.with_name(tmp.name + lite.suffix)   # clean_stale_tmp knows the name
        try:
            entry = None
            if export:
                entry, why = _try_export(tmp, tmp_lite, path)
                if entry is None:
                    info(f"note: {path}: saved without a LiteRT export ({why}); predicting "
                         f"with it imports TensorFlow")
            # only once the new model (and its export) is written
            kept = keep_previous(path, companions=(".json", lite.suffix))
            if entry is not None:
                os.replace(tmp_lite, lite)
            else:
                lite.unlink(missing_ok=True)    # an older save's (kept under previous/)
        finally:
            tmp_lite.unlink(missing_ok=True)
    if entry is not None:
        sidecar[SIDECAR_KEY] = entry
    write_json(sidecar_path(path), sidecar)
    return kept


def _try_export(h5: Path, dest: Path, model_path: Path) -> tuple[dict | None, str]:
    """(entry, "") or (None, why): the export of the saved ``h5`` written to ``dest``, its
    entry naming the file beside ``model_path``."""
    try:
        return export_entry(h5, model_path, dest=dest), ""
    except ExportError as e:
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
    except Exception as e:                  # noqa: BLE001 - any converter failure: no export
        why = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".rstrip(": ")
    why = why.replace(f"{dest}: ", "")
    return None, why if len(why) <= 160 else why[:157] + "..."


def export_entry(h5: str | os.PathLike, model_path: str | os.PathLike | None = None, *,
                 dest: str | os.PathLike | None = None) -> dict:
    """Export the H5 file ``h5`` to TFLite and return its sidecar entry (``"litert"``).

    The flatbuffer goes to ``dest`` (default: ``<stem>.tflite`` beside ``model_path``, which
    defaults to ``h5``); the entry names ``<stem>.tflite`` of ``model_path`` and adds
    ``h5_sha256``, the sha256 of the H5 it was made from, so that a model replaced without a
    new export is refused rather than served with the old weights.
    """
    model_path = Path(h5 if model_path is None else model_path)
    final = tflite_path(model_path)
    entry = export_from_h5(h5, final if dest is None else dest)
    entry["file"] = final.name
    entry["h5_sha256"] = sha256_file(h5)
    record_verified(entry["h5_sha256"], entry["sha256"])    # made here: nothing to re-check
    return entry


def add_export(model_path: str | os.PathLike) -> dict:
    """Give a saved model (H5 + sidecar) its LiteRT export: ``<stem>.tflite`` beside it and
    the sidecar's ``"litert"`` entry (the sidecar is rewritten atomically, its other keys
    unchanged; the H5 is only read). Re-running it rewrites the same bytes.

    Raises
    ------
    FileNotFoundError, ValueError
        No model or sidecar, or the sidecar does not pass :func:`read_sidecar`.
    ser.export.ExportError
        The model cannot be converted (one line naming the file).
    """
    model_path = check_model_file(model_path)
    read_sidecar(model_path)                    # the checks (types, labels, servable)
    sp = sidecar_path(model_path)
    meta = json.loads(read_regular(sp, max_bytes=SIDECAR_MAX_BYTES))   # key order kept
    entry = export_entry(model_path)
    want = list(meta["input_shape"])
    if entry["input_shape"] != want:
        raise ValueError(f"{model_path}: model input {entry['input_shape']} does not match "
                         f"its sidecar's {want}")
    meta[SIDECAR_KEY] = entry
    write_json(sp, meta)
    return entry


SIDECAR_MAX_BYTES = 64 * 2 ** 20   # the shipped sidecars are < 100 kB


def _json_kind(v) -> str:
    if v is None:
        return "null"
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
        "litert": ("null or an object", lambda v: v is None or isinstance(v, dict)),
        # what fit_temperature can have written: its search range, nothing outside it
        "calibration": (f'{{"temperature": a number in [{T_MIN:g}, {T_MAX:g}], ...}}',
                        lambda v: isinstance(v, dict) and _is_number(v.get("temperature"))
                        and T_MIN * (1 - 1e-6) <= v["temperature"] <= T_MAX * (1 + 1e-6)),
    }
    for key, (want, ok) in expect.items():
        if key in meta and not ok(meta[key]):
            return f"{key} is {_json_kind(meta[key])}, expected {want}"
    if isinstance(meta.get("litert"), dict):
        return _litert_type_problem(meta["litert"])
    return None


def _is_sha256(v) -> bool:
    return isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v)


def _is_shape(v) -> bool:
    return isinstance(v, list) and bool(v) and all(
        isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in v)


LITERT_KEYS = {
    "file": ("a file name beside the model",
             lambda v: isinstance(v, str) and v not in ("", ".", "..") and "/" not in v
             and "\\" not in v and "\0" not in v and Path(v).name == v),
    "sha256": ("64 lowercase hex digits", _is_sha256),
    "h5_sha256": ("64 lowercase hex digits", _is_sha256),
    "input_shape": ("a list of positive whole numbers", _is_shape),
    "output_shape": ("a list of positive whole numbers", _is_shape),
}
"""The keys a sidecar's ``"litert"`` entry must have (ser.export writes more: format, bytes,
converter versions), with what each must be."""


def _litert_type_problem(entry: dict) -> str | None:
    """What is missing or of the wrong type in a sidecar's ``"litert"`` entry."""
    missing = [k for k in LITERT_KEYS if k not in entry]
    if missing:
        return f"litert lacks {', '.join(missing)}"
    for key, (want, ok) in LITERT_KEYS.items():
        if not ok(entry[key]):
            return f"litert.{key} is {_json_kind(entry[key])}, expected {want}"
    if entry.get("format", "tflite") != "tflite":
        return f"litert.format is {_json_kind(entry['format'])}, expected \"tflite\""
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
    try:      # a regular file, read with a bound: never a FIFO or a device read without end
        raw = read_regular(sp, max_bytes=SIDECAR_MAX_BYTES, kind="sidecar")
    except FileNotFoundError:
        raise FileNotFoundError(f"{sp}: model sidecar not found (needed beside "
                                f"{model_path})") from None
    except ValueError as e:
        raise ValueError(f"{e} (a sidecar is a few kB of JSON)" if "larger than" in str(e)
                         else str(e)) from None
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
        problem = normalization_problem(norm, dim)
        if problem:
            raise ValueError(f"{where}: normalization {problem}")
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
    check_model_file(model_path)
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


def check_model_file(model_path: str | os.PathLike) -> Path:
    """``model_path`` if it is a non-empty regular file (h5py would block on a FIFO); else
    FileNotFoundError or ValueError, one line naming the file."""
    try:
        return check_regular_file(model_path, kind="model")
    except FileNotFoundError:
        where = Path(model_path)
        hint = "" if where.is_absolute() else f", looked for in {Path.cwd()}"
        raise FileNotFoundError(f"{model_path}: model file not found{hint}") from None


def check_model_encoder(model_path: str | os.PathLike, meta: dict | None = None) -> None:
    """Refuse (one line naming the file) a model trained on encoder features whose encoder
    weights are missing here or are not the ones its sidecar names (ser/encoder.py)."""
    byols_encoder.check_model_encoder(model_path, meta)


def model_input(vectors: np.ndarray, meta: dict) -> np.ndarray:
    """Feature vectors (n, d) -> the model's input (n, *input_shape): normalised with the
    sidecar's ``normalization`` (:func:`ser.normalization.normalize`), in float32."""
    X = normalize(np.atleast_2d(vectors), meta.get("normalization"))
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
