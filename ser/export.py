"""A model's inference graph as a TFLite flatbuffer, and a runner that needs only LiteRT.

Two halves that never meet in one process on the prediction path:

- :func:`export_tflite` (training time; imports TensorFlow) converts a loaded Keras 3 model
  (the shipped ``models/*.h5``, loaded with ``ser.checkpoint.load_model``) into a ``.tflite``
  flatbuffer written atomically beside it, and returns the entry for the model's sidecar
  (file name, sha256, input/output shapes, converter versions). The H5 and its sidecar stay
  the source: the flatbuffer is derived from them and can be written again at any time.
- :class:`LiteRTModel` (prediction time) loads that flatbuffer with ``ai_edge_litert`` alone,
  never TensorFlow or Keras: importing this module and using the runner costs ~0.1 s instead
  of the ~3-5 s of ``import tensorflow``. The file's sha256 is checked against the sidecar's
  before anything is loaded.

The conversion is deterministic here (TF 2.21, Keras 3.15): the same model converted twice,
in one process or after re-loading the H5 in another, gives the same bytes, so the sidecar's
sha256 is a property of the weights and the converter version (see :func:`export_tflite`).

Where it is used: :func:`ser.checkpoint.save_model` exports every model it saves (from the H5
it has just written) and records the entry under the sidecar's ``"litert"`` key, with
``h5_sha256``, the H5's checksum (:func:`check_source`: an H5 replaced without a new export is
refused); ``python -m ser.cli.export MODEL.h5 ...`` (:func:`ser.checkpoint.add_export`) gives an
already saved model its export; :class:`ser.predict.Predictor` runs the export through
:func:`load_exported` and imports TensorFlow only for a model without one.

Errors are one line naming the file (:class:`ExportError`; :class:`ExportMissing` when the
flatbuffer a sidecar names is not there).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from ser import files
from ser.console import silenced
from ser.errors import SerError
from ser.files import atomic_path, check_regular_file, read_regular

SUFFIX = ".tflite"
FORMAT = "tflite"
SIDECAR_KEY = "litert"
"""Key of the export's entry in a model's sidecar (see :func:`sidecar_entry`)."""
CHECK_ATOL = 1e-5
"""Largest difference allowed between the flatbuffer's and Keras' outputs at export."""


EXPORT_MAX_BYTES = 2 ** 30      # the shipped exports are < 12 MB

class ExportError(SerError, ValueError):
    """A flatbuffer that cannot be written, read or trusted; the message names the file."""


class UnverifiedExport(ExportError):
    """An export that could not be shown to be this installation's conversion of its H5."""


class ExportMissing(ExportError):
    """The flatbuffer a sidecar names is not there (e.g. only the H5 and its sidecar were
    copied): the model can still be served from its H5."""


def sha256_bytes(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def tflite_path(model_path: str | os.PathLike) -> Path:
    """``models/X.h5`` -> ``models/X.tflite``."""
    return Path(model_path).with_suffix(SUFFIX)


# --------------------------------------------------------------------------------------------
# Export (imports TensorFlow: training time only)
# --------------------------------------------------------------------------------------------
def convert(keras_model) -> bytes:
    """The Keras model's inference graph as TFLite flatbuffer bytes (float32, no
    optimisation: outputs equal Keras' to ~1e-6), with a dynamic batch dimension."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with silenced(1, 2):
        import tensorflow as tf
        tf.get_logger().setLevel("ERROR")
        # from_keras_model (a SavedModel export underneath) freezes the weights into the
        # flatbuffer; from_concrete_functions of a tf.function over a Keras 3 model does not
        # (an 8 kB file that outputs NaN), so it is not used.
        converter = tf.lite.TFLiteConverter.from_keras_model(keras_model)
        return bytes(converter.convert())


def converter_versions() -> dict:
    import importlib.metadata as md
    out = {}
    for pkg in ("tensorflow-cpu", "tensorflow", "keras", "ai-edge-litert"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def _write_atomic(dest: Path, blob: bytes) -> None:
    """Write ``blob`` to a temporary file beside ``dest``, then rename it onto ``dest``."""
    with atomic_path(dest) as tmp:
        tmp.write_bytes(blob)


def export_tflite(keras_model, dest_path: str | os.PathLike, *,
                  check_atol: float | None = CHECK_ATOL) -> dict:
    """Convert ``keras_model`` to a TFLite flatbuffer at ``dest_path`` (written atomically).

    Parameters
    ----------
    keras_model : keras.Model
        A built model with one input ``(None, *input_shape)`` and one output.
    dest_path : path-like
        Where the flatbuffer goes, usually :func:`tflite_path` of the H5.
    check_atol : float or None
        Before anything is written, the flatbuffer is run by :class:`LiteRTModel` on a few
        random inputs and must agree with ``keras_model`` to this absolute tolerance
        (``None``: no check).

    Returns
    -------
    dict
        The sidecar entry (:data:`SIDECAR_KEY`): ``file`` (name, beside the H5), ``format``,
        ``sha256``, ``bytes``, ``input_shape`` / ``output_shape`` (without the batch
        dimension), ``converter`` (package versions).

    Raises
    ------
    ExportError
        The conversion failed, or its outputs differ from Keras' by more than ``check_atol``.
    """
    dest = Path(dest_path)
    try:
        blob = convert(keras_model)
    except Exception as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ExportError(f"{dest}: cannot convert the model to TFLite ({msg})") from None
    digest = sha256_bytes(blob)
    runner = LiteRTModel.from_bytes(blob, name=str(dest))
    input_shape = [int(d) for d in keras_model.input_shape[1:]]
    if list(runner.input_shape) != input_shape:
        raise ExportError(f"{dest}: the flatbuffer's input {list(runner.input_shape)} is not "
                          f"the model's {input_shape}")
    if check_atol is not None:
        X = np.random.default_rng(0).standard_normal((4, *input_shape)).astype(np.float32)
        want = np.asarray(keras_model(X, training=False))
        diff = float(np.max(np.abs(runner(X) - want)))
        if not diff <= check_atol:
            raise ExportError(f"{dest}: the flatbuffer's outputs differ from Keras' by "
                              f"{diff:.1e} (more than {check_atol:g})")
    _write_atomic(dest, blob)
    return {"file": dest.name, "format": FORMAT, "sha256": digest, "bytes": len(blob),
            "input_shape": input_shape, "output_shape": list(runner.output_shape),
            "converter": converter_versions()}


def load_h5(h5_path: str | os.PathLike):
    """The Keras model of an H5 file (uncompiled), loaded by Keras alone (no sidecar checks:
    the caller has them, e.g. ``ser.checkpoint.load_model``)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import warnings
    with silenced(1, 2):
        import keras
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                return keras.models.load_model(str(h5_path), compile=False)
            except Exception as e:
                msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise ExportError(f"{h5_path}: cannot load the model ({msg})") from None


def export_from_h5(h5_path: str | os.PathLike, dest_path: str | os.PathLike | None = None,
                   **kwargs) -> dict:
    """The canonical export: the flatbuffer of the model *as saved* in ``h5_path``.

    The flatbuffer holds the model's tensor and op names (``serving_default_input_layer:0``,
    ``sequential_1/dense_1/MatMul``). A model still in memory after training has the names
    of its process's history (``keras_tensor_4``, ``dense_2``); the same model re-loaded from
    its H5 has the saved names, whatever the process did before. Exporting from the H5
    therefore gives the same bytes on every run (checked: twice in one process, in another
    process, after other models were built or loaded), so the sidecar's sha256 depends only
    on the H5 and the converter version. ``dest_path`` defaults to :func:`tflite_path`.
    """
    dest = tflite_path(h5_path) if dest_path is None else dest_path
    return export_tflite(load_h5(h5_path), dest, **kwargs)


# --------------------------------------------------------------------------------------------
# The runner (ai_edge_litert only)
# --------------------------------------------------------------------------------------------
def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise ExportError("the ai-edge-litert package is not installed "
                          "(pip install ai-edge-litert)") from None
    return Interpreter


class LiteRTModel:
    """A TFLite flatbuffer run by LiteRT: ``model(X)`` for X of shape ``(n, *input_shape)``.

    Parameters
    ----------
    path : path-like
        The ``.tflite`` file.
    sha256 : str, keyword-only
        Its expected sha256 (hex, from the sidecar); checked on the bytes read, before the
        interpreter sees them. A mismatch is an :class:`ExportError` naming the file.
    num_threads : int, keyword-only
        LiteRT's threads (1: these models take ~0.03 ms a call).

    Attributes
    ----------
    input_shape, output_shape : tuple of int
        Without the batch dimension, e.g. ``(40, 1)`` and ``(8,)``.
    """

    def __init__(self, path: str | os.PathLike, *, sha256: str, num_threads: int = 1):
        path = Path(path)
        try:
            blob = read_regular(path, max_bytes=EXPORT_MAX_BYTES, error=ExportError,
                                kind="exported model")
        except FileNotFoundError:
            raise ExportMissing(f"{path}: exported model not found (export it again from the "
                                f"H5 with ser.export)") from None
        if not isinstance(sha256, str) or not sha256:
            raise ExportError(f"{path}: no sha256 given to check the exported model against")
        got = sha256_bytes(blob)
        if got != sha256.lower():
            raise ExportError(f"{path}: checksum mismatch (sha256 {got[:16]}..., the sidecar "
                              f"says {sha256[:16]}...); export the model again from its H5")
        self._init(blob, str(path), num_threads)

    @classmethod
    def from_bytes(cls, blob: bytes, *, name: str = "<flatbuffer>",
                   num_threads: int = 1) -> "LiteRTModel":
        """A runner of flatbuffer bytes already in memory (nothing to check them against)."""
        self = cls.__new__(cls)
        self._init(bytes(blob), name, num_threads)
        return self

    def _init(self, blob: bytes, name: str, num_threads: int) -> None:
        Interpreter = _interpreter_class()
        self.name = name
        self.sha256 = sha256_bytes(blob)
        self._blob = blob                   # the interpreter reads from this buffer
        try:
            with silenced(2):
                it = Interpreter(model_content=blob, num_threads=num_threads)
                it.allocate_tensors()
        except Exception as e:
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ExportError(f"{name}: not a usable TFLite model ({msg})") from None
        ins, outs = it.get_input_details(), it.get_output_details()
        if len(ins) != 1 or len(outs) != 1:
            raise ExportError(f"{name}: expected one input and one output, the model has "
                              f"{len(ins)} and {len(outs)}")
        inp, out = ins[0], outs[0]
        if inp["dtype"] != np.float32:
            raise ExportError(f"{name}: input is {np.dtype(inp['dtype']).name}, not float32")
        self._it = it
        self._in, self._out = inp["index"], out["index"]
        self.input_shape: tuple[int, ...] = tuple(int(d) for d in inp["shape"][1:])
        self.output_shape: tuple[int, ...] = tuple(int(d) for d in out["shape"][1:])
        sig = inp.get("shape_signature", inp["shape"])
        self.dynamic_batch = len(sig) > 0 and int(sig[0]) == -1
        self._batch = int(inp["shape"][0])

    def _resize(self, n: int) -> None:
        self._it.resize_tensor_input(self._in, [n, *self.input_shape], strict=True)
        self._it.allocate_tensors()
        self._batch = n

    def __call__(self, X: np.ndarray) -> np.ndarray:
        """Outputs for ``X`` of shape ``(n, *input_shape)`` (float32): ``(n, *output_shape)``.

        A batch runs in one call when the flatbuffer's batch dimension is dynamic (the
        interpreter is resized when ``n`` changes), else one row at a time."""
        X = np.ascontiguousarray(X, dtype=np.float32)
        if X.ndim != 1 + len(self.input_shape) or tuple(X.shape[1:]) != self.input_shape:
            raise ValueError(f"{self.name}: input of shape {tuple(X.shape)}, expected "
                             f"(n, {', '.join(map(str, self.input_shape))})")
        n = X.shape[0]
        if n == 0:
            return np.zeros((0, *self.output_shape), np.float32)
        if self.dynamic_batch:
            if n != self._batch:
                self._resize(n)
            self._it.set_tensor(self._in, X)
            self._it.invoke()
            return self._it.get_tensor(self._out).copy()
        rows = []
        for x in X:
            self._it.set_tensor(self._in, x[None])
            self._it.invoke()
            rows.append(self._it.get_tensor(self._out)[0].copy())
        return np.stack(rows)


def sidecar_entry(meta: dict) -> dict | None:
    """The export entry of a parsed sidecar, or None when the model has no export."""
    entry = meta.get(SIDECAR_KEY)
    return entry if isinstance(entry, dict) else None


def load_exported(model_path: str | os.PathLike, meta: dict, *,
                  num_threads: int = 1) -> LiteRTModel | None:
    """The runner of the model's export named in its sidecar, or None without an export.

    The file is ``entry["file"]`` beside the H5 (a bare name, never a path elsewhere); its
    sha256 and input shape must be the sidecar's, and when the entry records ``h5_sha256``
    (every export :func:`ser.checkpoint.save_model` makes does), the H5 beside it must still
    be the one it was made from: an H5 replaced without a new export is refused rather than
    served with the old weights. The sidecar is anyone's to edit, so the export must also be
    the conversion of the H5 beside it: a pair this installation exported or verified is
    recorded in its cache (:func:`is_verified`); any other is converted again from the H5 in
    a child process (TensorFlow stays out of this one; ~8 s, once per model) and must give
    the same bytes (:class:`UnverifiedExport` otherwise). Each problem is an
    :class:`ExportError` naming the file (:class:`ExportMissing` when the flatbuffer is not
    there)."""
    entry = sidecar_entry(meta)
    if entry is None:
        return None
    name = entry.get("file")
    model_path = Path(model_path)
    if not isinstance(name, str) or not name or Path(name).name != name:
        raise ExportError(f"{model_path.with_suffix('.json')}: {SIDECAR_KEY}.file must be a "
                          f"file name beside the model, got {name!r}")
    path = model_path.parent / name
    why = files.regular_file_problem(path, kind="exported model")
    if why == "file not found":
        raise ExportMissing(f"{path}: exported model not found (export it again from the "
                            f"H5: python -m ser.cli.export {model_path})")
    if why:                                    # a FIFO, a device, a folder: never read
        raise ExportError(f"{path}: {why}")
    h5_sha = check_source(model_path, path, entry.get("h5_sha256"))
    runner = LiteRTModel(path, sha256=entry.get("sha256"), num_threads=num_threads)
    if not is_verified(h5_sha, runner.sha256):
        verify_in_subprocess(model_path, path)
        record_verified(h5_sha, runner.sha256)
    want = tuple(int(d) for d in meta.get("input_shape", runner.input_shape))
    if runner.input_shape != want:
        raise ExportError(f"{runner.name}: input {list(runner.input_shape)} does not match "
                          f"the sidecar's {list(want)}")
    return runner


def check_source(model_path: str | os.PathLike, export_path: str | os.PathLike,
                 h5_sha256: str | None) -> str:
    """Refuse (:class:`ExportError`, one line naming the export) an export whose H5 has been
    replaced since: ``model_path``'s sha256 must be ``h5_sha256``, the sidecar's record of
    the H5 the export was made from (``None``: an older sidecar without it, not checked).
    Returns the H5's sha256."""
    try:
        check_regular_file(model_path, ExportError, kind="model")
        h = hashlib.sha256()
        with open(model_path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    except OSError as e:
        raise ExportError(f"{model_path}: cannot read the model "
                          f"({(e.strerror or type(e).__name__).lower()})") from None
    got = h.hexdigest()
    if h5_sha256 is None:
        return got
    if not isinstance(h5_sha256, str) or got != h5_sha256.lower():
        raise ExportError(f"{export_path}: stale export: made from an H5 with sha256 "
                          f"{str(h5_sha256)[:16]}..., but {model_path} has {got[:16]}...; "
                          f"export it again: python -m ser.cli.export {model_path}")
    return got


def _verified_record(h5_sha256: str, export_sha256: str) -> Path:
    return files.cache_dir() / "verified" / f"{h5_sha256}-{export_sha256}"


def is_verified(h5_sha256: str, export_sha256: str) -> bool:
    """Whether this installation made, or re-made and compared, this export of this H5."""
    return _verified_record(h5_sha256, export_sha256).is_file()


def record_verified(h5_sha256: str, export_sha256: str) -> None:
    """Remember that the export ``export_sha256`` is this installation's conversion of the
    H5 ``h5_sha256`` (an empty file named by both digests, in :func:`ser.files.cache_dir`)."""
    try:
        rec = _verified_record(h5_sha256, export_sha256)
        rec.parent.mkdir(parents=True, exist_ok=True)
        rec.touch()
    except OSError:
        pass          # a read-only home: verified again next time


VERIFY_EXIT_DIFFERS = 3


def reexport_matches(model_path: str | os.PathLike, export_path: str | os.PathLike) -> bool:
    """Convert the H5 again (:func:`convert`, in this process) and compare with the bytes of
    ``export_path``; the same bytes are recorded (:func:`record_verified`)."""
    blob = read_regular(export_path, max_bytes=EXPORT_MAX_BYTES, error=ExportError,
                        kind="exported model")
    h5_sha = check_source(model_path, export_path, None)
    same = convert(load_h5(model_path)) == blob
    if same:
        record_verified(h5_sha, sha256_bytes(blob))
    return same


def verify_in_subprocess(model_path: str | os.PathLike, export_path: str | os.PathLike
                         ) -> None:
    """Re-export ``model_path`` in a child process (``python -m ser.cli.export --verify``) and
    compare with ``export_path``; :class:`UnverifiedExport` (one line) when the bytes differ
    or the check cannot run."""
    import subprocess
    import sys
    root = str(Path(__file__).resolve().parents[1])   # ser importable from any folder
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [root, *filter(None, [os.environ.get("PYTHONPATH")])]))
    try:
        r = subprocess.run([sys.executable, "-m", "ser.cli.export", "--verify", "--export",
                            str(export_path), str(model_path)],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env,
                           timeout=900)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise UnverifiedExport(f"{export_path}: cannot check it against {model_path} "
                               f"({type(e).__name__})") from None
    if r.returncode == VERIFY_EXIT_DIFFERS:
        raise UnverifiedExport(f"{export_path}: not the conversion of {model_path} (converted "
                               f"again here, it differs: another network, or another "
                               f"converter version)")
    if r.returncode != 0:
        lines = (r.stderr or "").strip().splitlines()
        raise UnverifiedExport(f"{export_path}: cannot check it against {model_path} "
                               f"({lines[-1] if lines else f'exit {r.returncode}'})")
