"""Prediction: a loaded model turns audio into a Prediction (the Predictor and its back ends)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from ser.errors import SerError
from ser.adaptation import ADAPTATIONS
from ser.audio import (
    DEFAULT_MAX_SECONDS,
    MIN_SAMPLES,
    SAMPLE_RATE,
    AudioError,
    AudioTooLong,
    check_signal,
    load_audio,
    resample,
)
from ser.checkpoint import (
    check_model_file,
    load_model,
    model_input,
    read_sidecar,
    sidecar_path,
)
from ser.console import import_keras, info, stderr_silenced
from ser.corpora import EMOTIONS, N_CLASSES
from ser.calibration import apply_temperature
from ser.export import ExportMissing, UnverifiedExport, load_exported, sidecar_entry
from ser.features import extract_features, make_ready
from ser.paths import DEFAULT_MODEL
from ser.timeline import DIGITS, top_emotions

MIN_SPEECH_SECONDS = 0.25      # shorter clips are "no speech detected", not a guess
TIMELINE_HINT = ("for a long recording use --timeline, which judges it segment by segment in "
                 "bounded memory")


class ModelError(SerError):
    """The model cannot be used (missing, unreadable, or not matching this version)."""


UNCERTAIN = "uncertain"   # the answer below --min-confidence


@dataclass(frozen=True)
class Prediction:
    """One judgement: the most likely emotion, its probability and all eight.

    ``emotion`` is :data:`UNCERTAIN` when the most likely emotion's probability is below the
    predictor's ``min_confidence`` (``confidence`` and ``probabilities`` stay as they are).
    """
    emotion: str
    confidence: float
    probabilities: dict[str, float]

    @classmethod
    def from_probs(cls, probs: np.ndarray, labels: Iterable[str] = EMOTIONS, *,
                   min_confidence: float = 0.0) -> "Prediction":
        labels = list(labels)
        p = np.asarray(probs, dtype=np.float64).reshape(-1)
        i = int(np.argmax(p))
        label = labels[i] if p[i] >= min_confidence else UNCERTAIN
        return cls(label, float(p[i]), {name: float(v) for name, v in zip(labels, p)})

    def top(self, k: int = 3) -> list[tuple[str, float]]:
        """The ``k`` most likely emotions with their probabilities, best first."""
        return sorted(self.probabilities.items(), key=lambda kv: -kv[1])[:k]

    @property
    def most_likely(self) -> str:
        """The most likely emotion, also when the answer is :data:`UNCERTAIN` (``confidence``
        is its probability)."""
        return self.top(1)[0][0] if self.probabilities else self.emotion

    @property
    def headline(self) -> str:
        """The answer as the text outputs name it: ``angry``, or below the predictor's
        ``min_confidence`` ``uncertain: angry`` (the emotion whose probability
        ``confidence`` is)."""
        if self.emotion == UNCERTAIN and self.probabilities:
            return f"{UNCERTAIN}: {self.most_likely}"
        return self.emotion

    def text(self, top: int = 3) -> str:
        """One line: ``angry 0.71  (happy 0.19, sad 0.05)``, the ``top`` most likely emotions;
        below ``min_confidence`` ``uncertain: angry 0.25  (happy 0.19, sad 0.17)``."""
        others = top_emotions(self.probabilities, top, skip=1)
        return f"{self.headline} {self.confidence:.2f}" + (f"  ({others})" if others else "")

    def as_dict(self, digits: int = DIGITS) -> dict:
        """``{emotion, confidence, probabilities}`` as the JSON and CSV outputs hold them
        (numbers rounded to ``digits``, :data:`ser.timeline.DIGITS` for every result)."""
        return {"emotion": self.emotion, "confidence": round(self.confidence, digits),
                "probabilities": {k: round(v, digits) for k, v in self.probabilities.items()}}


BACKENDS = ("auto", "litert", "tf")
"""Inference paths: ``litert`` (TFLite through the ai-edge-litert package: the model's export
named in its sidecar, run without importing TensorFlow; a model without one is converted at
load), ``tf`` (a traced tf.function of the Keras model), ``auto`` (litert when it is installed
and the model has an export or converts, else tf)."""


def has_export(model_path: str | os.PathLike) -> bool:
    """Whether ``model_path``'s sidecar names a LiteRT export (:mod:`ser.export`) and LiteRT
    is installed: ``Predictor(model_path)`` then starts without importing TensorFlow (unless
    the export is missing, when it is served from the H5). Never raises: a sidecar that
    cannot be read is the Predictor's to report."""
    try:
        meta = read_sidecar(model_path)
    except Exception:           # noqa: BLE001 - reported by the Predictor
        return False
    return sidecar_entry(meta) is not None and _litert_installed()


def _litert_installed() -> bool:
    try:
        import ai_edge_litert.interpreter  # noqa: F401
    except ImportError:
        return False
    return True


def _tf_infer(model, input_shape: tuple[int, ...]) -> Callable[[np.ndarray], np.ndarray]:
    """The model as a traced concrete function with a fixed input signature.

    ``model.predict`` spends ~40-60 ms per call setting up a data pipeline; this costs
    ~0.3-0.6 ms for these models.
    """
    import tensorflow as tf
    spec = tf.TensorSpec([None, *input_shape], tf.float32)
    fn = tf.function(lambda x: model(x, training=False), input_signature=[spec],
                     autograph=False).get_concrete_function()

    def infer(X: np.ndarray) -> np.ndarray:
        return fn(tf.constant(X)).numpy()
    return infer


def _litert_infer(model, input_shape: tuple[int, ...]) -> Callable[[np.ndarray], np.ndarray]:
    """The model converted to TFLite and run by LiteRT (~0.01 ms a call for these models).

    Raises ImportError without ai-edge-litert, or whatever the converter raises for a model
    it cannot convert; the caller then falls back to :func:`_tf_infer`.
    """
    import contextlib
    import io

    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter
    # The converter exports a SavedModel first and print()s about it; keep stdout clean.
    with stderr_silenced(), contextlib.redirect_stdout(io.StringIO()):
        blob = tf.lite.TFLiteConverter.from_keras_model(model).convert()
        it = Interpreter(model_content=blob, num_threads=1)
        inp = it.get_input_details()[0]
        if tuple(inp["shape"]) != (1, *input_shape):
            it.resize_tensor_input(inp["index"], [1, *input_shape])
        it.allocate_tensors()
    i, o = inp["index"], it.get_output_details()[0]["index"]

    def infer(X: np.ndarray) -> np.ndarray:
        rows = []
        for x in X:
            it.set_tensor(i, x[None])
            it.invoke()
            rows.append(it.get_tensor(o)[0].copy())
        return np.stack(rows)
    return infer


def _make_infer(model, input_shape: tuple[int, ...], backend: str = "auto"
                ) -> tuple[Callable[[np.ndarray], np.ndarray], str]:
    """The fastest working inference function for ``backend``, and its name.

    LiteRT is used only when its outputs agree with the Keras model's on random inputs
    (max difference 1e-4); ``tf`` falls back to ``predict_on_batch`` if tracing fails.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r} (choose from {', '.join(BACKENDS)})")
    if backend != "tf":
        try:
            lite = _litert_infer(model, input_shape)
            X = np.random.default_rng(0).standard_normal((4, *input_shape)).astype(np.float32)
            diff = float(np.max(np.abs(lite(X) - np.asarray(model(X, training=False)))))
            if not diff <= 1e-4:
                raise ValueError(f"LiteRT output differs from TensorFlow's by {diff:.1e}")
            return lite, "litert"
        except Exception as e:
            if backend == "litert":
                reason = ("the ai-edge-litert package is not installed (pip install "
                          "ai-edge-litert)" if isinstance(e, ImportError) else
                          f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
                raise ModelError(f"LiteRT backend unavailable: {reason}") from None
    try:
        return _tf_infer(model, input_shape), "tf.function"
    except Exception:  # pragma: no cover - depends on the model's layers
        def infer_batch(X: np.ndarray) -> np.ndarray:
            return np.asarray(model.predict_on_batch(X))
        return infer_batch, "predict_on_batch"


class Predictor:
    """A loaded model with its sidecar; turns audio into a :class:`Prediction`.

    Parameters
    ----------
    model_path : path-like
        The H5 model; its sidecar (same stem, ``.json``) must be beside it.
    min_seconds : float
        Clips shorter than this are refused ("no speech detected").
    backend : {"auto", "litert", "tf"}
        Inference path (see :data:`BACKENDS`); :attr:`backend` tells which one is used.
    max_seconds : float or None
        Files (and enrolment recordings) longer than this are refused, judged from the header
        before decoding (see :func:`load_audio`); a file is judged whole, in memory. ``None``:
        no limit. Measured peak memory of the whole process (``live_predictions.py``, RSS)
        with the CNN (``models/Emotion_Voice_Detection_Model.h5``): 0.06 GB for 3 s, 0.52 GB
        for 5 minutes, 0.99 GB for 10 minutes (~5.6 GB an hour); with the recommended model
        0.40 GB for 3 s (the encoder included), 0.51 GB for 30 s, 2.1 GB for 10 minutes. A long recording is judged
        segment by segment, in bounded memory, by :func:`ser.timeline.timeline`
        (``--timeline``).

    Raises
    ------
    ModelError
        The model or its sidecar is missing, unreadable, or does not fit this version
        (feature set, input size, number of classes, normalisation, adaptation).
    """

    def __init__(self, model_path: str | os.PathLike = DEFAULT_MODEL, *,
                 min_seconds: float = MIN_SPEECH_SECONDS, backend: str = "auto",
                 max_seconds: float | None = DEFAULT_MAX_SECONDS, calibrated: bool = True,
                 min_confidence: float = 0.0):
        if not 0.0 <= min_confidence <= 1.0:
            raise ValueError(f"min_confidence must lie in [0, 1]; got {min_confidence!r}")
        self.min_confidence = float(min_confidence)
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r} (choose from {', '.join(BACKENDS)})")
        self.model_path = Path(model_path)
        self.min_seconds = float(min_seconds)
        self.max_seconds = None if max_seconds is None else float(max_seconds)
        self._model = None
        runner = None
        try:
            # Cheap checks first, so that a wrong --model fails before TensorFlow is imported.
            check_model_file(self.model_path)     # a FIFO would block h5py for ever
            meta = read_sidecar(self.model_path)
            if backend != "tf" and sidecar_entry(meta) is not None:
                runner = self._exported(meta, backend)
            if runner is None:
                model, meta = self._load_keras(meta)
                out = model.output_shape
        except (FileNotFoundError, ValueError, OSError, TypeError, KeyError) as e:
            # TypeError/KeyError: a sidecar that is JSON but not the expected object
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            if isinstance(e, (TypeError, KeyError)):
                msg = f"{sidecar_path(self.model_path)}: malformed sidecar ({msg})"
            raise ModelError(msg) from None
        self.meta = meta
        if runner is not None:
            out = (None, *runner.output_shape)
        if isinstance(out, list) or out[-1] != N_CLASSES:
            raise ModelError(f"{self.model_path}: model output {out} is not "
                             f"{N_CLASSES} classes")
        self.feature: str = meta["feature"]
        try:          # an encoder's weights: one line now, not an error for every file
            make_ready((self.feature,))
        except (OSError, ValueError, RuntimeError) as e:   # EncoderError, WeightsError, ...
            raise ModelError(str(e).splitlines()[0] if str(e) else type(e).__name__) from None
        self.labels: list[str] = list(meta["labels"])
        self.input_shape: tuple[int, ...] = tuple(int(d) for d in meta["input_shape"])
        try:
            self.adaptation = ADAPTATIONS[meta["adaptation"]](meta)
        except (TypeError, ValueError, KeyError) as e:   # read_sidecar checks the types
            raise ModelError(f"{sidecar_path(self.model_path)}: malformed sidecar "
                             f"({type(e).__name__}: {e})") from None
        if runner is not None:
            self._infer, self.backend = runner, "litert"
        else:
            self._model = model
            self._infer, self.backend = _make_infer(model, self.input_shape, backend)
        self._softmax = not self._looks_like_probabilities()
        # the sidecar's temperature (ser/calibration.py): probabilities that mean what they say
        self.temperature = (float(meta.get("calibration", {}).get("temperature", 1.0))
                            if calibrated else 1.0)

    def _exported(self, meta: dict, backend: str):
        """The LiteRT runner of the model's export (its sidecar has one), or None: LiteRT not
        installed (``auto``), or the flatbuffer is not beside the H5 (only the H5 and its
        sidecar were copied): then the Keras path serves it. A flatbuffer that is there but
        does not match (checksum, an H5 replaced since the export, its input) raises
        ValueError naming the file: those files do not belong together."""
        if not _litert_installed():
            if backend == "litert":
                raise ModelError("LiteRT backend unavailable: the ai-edge-litert package is "
                                 "not installed (pip install ai-edge-litert)")
            return None
        entry = sidecar_entry(meta)
        have, want = list(entry["input_shape"]), list(meta["input_shape"])
        if have != want:
            raise ValueError(f"{self.model_path}: model input {tuple(have)} does not match "
                             f"its sidecar's {tuple(want)} (feature set {meta['feature']})")
        try:
            return load_exported(self.model_path, meta)
        except ExportMissing:
            return None
        except UnverifiedExport as e:     # what runs must be what the H5 says
            if backend == "litert":
                raise
            info(f"note: {e}; serving its H5 instead (python -m ser.cli.export "
                 f"{self.model_path} makes this installation's own export)")
            return None

    def _load_keras(self, meta: dict):
        try:
            import_keras()
        except ImportError as e:
            raise ModelError(f"cannot import Keras/TensorFlow ({e}); install the "
                             f"requirements: pip install -r requirements.txt") from None
        with stderr_silenced():
            return load_model(self.model_path, meta=meta)

    @property
    def model(self):
        """The Keras model (loaded from the H5 on first use when the predictor runs the
        model's LiteRT export: that path never imports TensorFlow by itself)."""
        if self._model is None:
            try:
                self._model, _ = self._load_keras(self.meta)
            except (FileNotFoundError, ValueError, OSError) as e:
                raise ModelError(str(e).splitlines()[0] if str(e) else type(e).__name__
                                 ) from None
        return self._model

    def _looks_like_probabilities(self) -> bool:
        p = self._infer(np.zeros((1, *self.input_shape), np.float32))
        return bool(np.all(p >= -1e-6) and np.allclose(p.sum(axis=-1), 1.0, atol=1e-3))

    # -- prediction --------------------------------------------------------------------------
    def check_speech(self, y: np.ndarray, *, name: str = "signal") -> None:
        """Refuse what cannot be judged: too short, non-finite or silent (AudioError)."""
        if y.ndim == 1 and y.shape[0] < max(MIN_SAMPLES, self.min_seconds * SAMPLE_RATE):
            raise AudioError(f"{name}: too short ({y.shape[0] / SAMPLE_RATE:.2f} s < "
                             f"{self.min_seconds:.2f} s), no speech detected")
        check_signal(y, name=name)

    def features(self, y: np.ndarray, *, name: str = "signal") -> np.ndarray:
        """The model's feature vector of mono audio at SAMPLE_RATE (only its feature set)."""
        self.check_speech(y, name=name)
        try:
            return extract_features(y, sr=SAMPLE_RATE, sets=(self.feature,))[self.feature]
        except AudioError as e:
            raise AudioError(f"{name}: {e}") from None

    def predict_vectors(self, vectors: np.ndarray) -> list[Prediction]:
        """Judge feature vectors of shape (n, dim) in one call."""
        meta = self.meta
        norm = self.adaptation.normalization()
        if norm is not meta.get("normalization"):
            meta = {**meta, "normalization": norm}
        X = np.ascontiguousarray(model_input(vectors, meta), dtype=np.float32)
        P = self._infer(X)
        if self._softmax:
            P = np.exp(P - P.max(axis=-1, keepdims=True))
            P /= P.sum(axis=-1, keepdims=True)
        if not np.all(np.isfinite(P)):    # never a "nan" answer, nor NaN in --json
            raise ModelError(f"{self.model_path}: the model's output is not finite (NaN or "
                             f"infinite) for this input; its weights or sidecar are damaged")
        if self.temperature != 1.0:
            P = apply_temperature(P, self.temperature)
        return [Prediction.from_probs(p, self.labels, min_confidence=self.min_confidence)
                for p in P]

    def predict_vector(self, vector: np.ndarray) -> Prediction:
        return self.predict_vectors(np.asarray(vector)[None, :])[0]

    def predict_signal(self, y: np.ndarray, sr: int = SAMPLE_RATE, *, name: str = "signal",
                       adapt: bool = False) -> Prediction:
        """Judge mono audio at any rate (resampled like the loader does).

        ``adapt=True`` (streaming) first passes the feature vector to the adaptation hook.
        """
        y = resample(y, sr)
        v = self.features(y, name=name)
        if adapt:
            self.adaptation.observe(v)
        return self.predict_vector(v)

    def enrol(self, paths: Iterable[str | os.PathLike]) -> tuple[int, list[str]]:
        """Feed the speaker's own recordings to the adaptation; returns (used, errors)."""
        if self.adaptation.name == "none":
            raise ModelError(f"{self.model_path}: this model was not trained for speaker "
                             f"adaptation (its sidecar says adaptation 'none'); use a model "
                             f"trained with --norm speaker, e.g. "
                             f"models/emotion_mlp_stats_whisper_speaker.h5")
        used, errors = 0, []
        for path in paths:
            try:
                self.adaptation.observe(self.features(self.load(path, hint=False),
                                                      name=str(path)))
                used += 1
            except (AudioError, OSError) as e:
                errors.append(str(e))
        return used, errors

    def load(self, path: str | os.PathLike, *, hint: bool = True) -> np.ndarray:
        """:func:`load_audio` with this predictor's length limit (:attr:`max_seconds`, from
        the header before decoding). A longer file is one line (AudioError) that, with
        ``hint``, names ``--timeline``, the tool for long files."""
        try:
            return load_audio(path, max_seconds=self.max_seconds)
        except AudioTooLong as e:
            how = (f"{TIMELINE_HINT}, or raise the limit with --max-seconds S" if hint
                   else "raise the limit with --max-seconds S")
            raise AudioError(f"{e} (a file is judged whole, in memory; {how})") from None

    def predict_file(self, path: str | os.PathLike) -> Prediction:
        """Judge an audio file (any libsndfile format, rate and channel count)."""
        return self.predict_signal(self.load(path), SAMPLE_RATE, name=str(path))

    def predict_files(self, paths: Iterable[str | os.PathLike]
                      ) -> Iterator[tuple[str, Prediction | Exception]]:
        """``(path, Prediction)`` or ``(path, error)`` for each file, one at a time."""
        for path in paths:
            try:
                yield str(path), self.predict_file(path)
            except AudioError as e:
                yield str(path), e
            except Exception as e:  # keep a batch going; report the file
                msg = str(e).splitlines()[0] if str(e) else ""
                yield str(path), RuntimeError(f"{path}: {type(e).__name__}: {msg}".rstrip(": "))
