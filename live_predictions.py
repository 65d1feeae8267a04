#!/usr/bin/env python3
"""Predict the emotion in speech: audio files, a microphone recording, or a live stream.

Examples::

    python live_predictions.py clip.wav other.flac          # one line per file
    python live_predictions.py --json features/Actor_01     # JSON lines; folders are expanded
    python live_predictions.py --mic --seconds 4            # record from the default input
    python live_predictions.py --stream --duration 30       # sliding window, one line per hop
    python live_predictions.py --list-devices

The model (H5 + JSON sidecar, see :func:`ser_common.load_model`) is loaded once per run; the
sidecar says which feature set to compute and how to normalise it, so prediction goes through
exactly the loader and feature code that training used (:mod:`ser_common`). Inference runs the
model converted to TFLite by LiteRT (package ``ai-edge-litert``) when that is installed, else a
traced ``tf.function``; both avoid ``model.predict``'s ~40-60 ms per call.

Streaming judges a sliding window (:class:`StreamProcessor`, independent of the device); every
window that passes the energy gate goes through the model's adaptation hook
(:class:`NoAdaptation` or :class:`SpeakerAdaptation`, chosen by the sidecar's ``adaptation``
key) before normalisation: that is where the speaker-adapted model updates its running estimate
of the speaker's statistics.

Folder arguments are searched recursively for audio files (by extension,
:data:`ser_common.AUDIO_EXTENSIONS`). Every file a folder leaves out (another extension, a hidden
name, a link to a folder) is named on stderr with the reason; a folder that cannot be read, an
empty folder and a folder without audio are errors, like a file that fails. A batch of more than
one input ends with a ``summary:`` line on stderr counting what was judged, failed and left out.
A file longer than ``--max-seconds`` (default 600 s, judged from its header before anything is
decoded) is refused: a file is judged whole, in memory.

Exit status: 0 when every input was judged, 1 when any input failed (unreadable, silent, too
short, too long, an empty or unreadable folder, ...; the others still run), 2 when nothing could
run (bad arguments, unusable model or sidecar, no audio device, no audio file in the inputs).

Library use::

    from live_predictions import Predictor
    p = Predictor("models/Emotion_Voice_Detection_Model.h5")
    p.predict_file("clip.wav").emotion
    p.predict_signal(y, sr=16000).probabilities
"""
from __future__ import annotations

import argparse
import json
import math
import os
import queue
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

import ser_common as sc
from ser_common import EMOTIONS, SAMPLE_RATE, AudioError

DEFAULT_SECONDS = 3.0          # --mic recording length
DEFAULT_WINDOW = 3.0           # --stream window
DEFAULT_HOP = 0.5              # --stream hop
DEFAULT_GATE_DB = -50.0        # --stream: a window whose speech level is below this is skipped
DEFAULT_TRIM_DB = -60.0        # --mic: leading/trailing frames quieter than this are cut
MIN_SPEECH_SECONDS = 0.25      # shorter clips are "no speech detected", not a guess
TRIM_MARGIN_SECONDS = 0.1      # kept on each side of the trimmed speech
LEVEL_FRAME = sc.HOP_LENGTH    # frame length (samples) for levels, trimming and the gate
LEVEL_PERCENTILE = 95          # speech level = this percentile of frame RMS in dBFS
DATA_TIMEOUT = 10.0            # seconds to wait for a capture stream to deliver audio
LITERT_MIN_FILES = 300         # CLI --backend auto: batches this big use LiteRT (see --help)
DEFAULT_MAX_SECONDS = 600.0    # longer files are refused (judged whole: ~3-7 GB an hour of audio)


class ModelError(Exception):
    """The model cannot be used (missing, unreadable, or not matching this version)."""


class DeviceError(Exception):
    """No usable audio input (PortAudio missing, no device, stream failed)."""


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Prediction:
    """One judgement: the most likely emotion, its probability and all eight."""
    emotion: str
    confidence: float
    probabilities: dict[str, float]

    @classmethod
    def from_probs(cls, probs: np.ndarray, labels: Iterable[str] = EMOTIONS) -> "Prediction":
        labels = list(labels)
        p = np.asarray(probs, dtype=np.float64).reshape(-1)
        i = int(np.argmax(p))
        return cls(labels[i], float(p[i]), {name: float(v) for name, v in zip(labels, p)})

    def top(self, k: int = 3) -> list[tuple[str, float]]:
        """The ``k`` most likely emotions with their probabilities, best first."""
        return sorted(self.probabilities.items(), key=lambda kv: -kv[1])[:k]

    def as_dict(self, digits: int = 6) -> dict:
        return {"emotion": self.emotion, "confidence": round(self.confidence, digits),
                "probabilities": {k: round(v, digits) for k, v in self.probabilities.items()}}


# --------------------------------------------------------------------------------------------
# Signal helpers (levels, silence trimming, the energy gate)
# --------------------------------------------------------------------------------------------
def frame_levels_db(y: np.ndarray, frame: int = LEVEL_FRAME) -> np.ndarray:
    """RMS level in dBFS of consecutive ``frame``-sample frames (the tail is its own frame)."""
    y = np.asarray(y, dtype=np.float32)
    if y.size == 0:
        return np.full(1, -200.0)
    n = math.ceil(y.size / frame)
    padded = np.zeros(n * frame, dtype=np.float32)
    padded[:y.size] = y
    f = padded.reshape(n, frame)
    counts = np.full(n, frame, dtype=np.float64)
    counts[-1] = y.size - (n - 1) * frame
    ms = np.einsum("ij,ij->i", f, f, dtype=np.float64) / counts
    return 10.0 * np.log10(np.maximum(ms, 1e-20))


def speech_level_db(y: np.ndarray, frame: int = LEVEL_FRAME,
                    percentile: float = LEVEL_PERCENTILE) -> float:
    """A robust loudness of the active part: the ``percentile`` of frame levels (dBFS)."""
    return float(np.percentile(frame_levels_db(y, frame), percentile))


def trim_silence(y: np.ndarray, *, threshold_db: float = DEFAULT_TRIM_DB, sr: int = SAMPLE_RATE,
                 margin: float = TRIM_MARGIN_SECONDS, frame: int = LEVEL_FRAME) -> np.ndarray:
    """Cut leading and trailing frames quieter than ``threshold_db`` dBFS, keeping a margin.

    The threshold is absolute (like :data:`ser_common.SILENCE_PEAK_DBFS`), so a recording's
    room noise stays (the training clips contain their own pauses) and only the true silence
    before and after a sound (muted input, a device still starting) is removed. Returns ``y``
    unchanged when nothing is louder than the threshold (the caller then reports silence).
    """
    lv = frame_levels_db(y, frame)
    loud = np.flatnonzero(lv >= threshold_db)
    if loud.size == 0:
        return y
    pad = int(round(margin * sr))
    start = max(0, loud[0] * frame - pad)
    stop = min(y.size, (loud[-1] + 1) * frame + pad)
    return y[start:stop]


# --------------------------------------------------------------------------------------------
# Adaptation hooks (normalisation from running audio): "none" and "speaker".
# --------------------------------------------------------------------------------------------
class NoAdaptation:
    """The normalisation hook; this one keeps the sidecar's normalisation unchanged.

    Adaptive modes subclass it: :meth:`observe` receives the feature vector of every
    window of running audio that passed the energy gate (streaming only, before it is judged);
    :meth:`normalization` returns what :func:`ser_common.model_input` should apply next
    (``None`` or ``{"mean": [...], "std": [...]}``). The sidecar's ``adaptation`` key names the
    class in :data:`ADAPTATIONS` that a model was trained for.
    """
    name = "none"

    def __init__(self, meta: dict):
        self.meta = meta

    def observe(self, vector: np.ndarray) -> None:
        """Update statistics from one feature vector of running audio (no-op here)."""

    def normalization(self) -> dict | None:
        return self.meta.get("normalization")


class SpeakerAdaptation(NoAdaptation):
    """Per-speaker normalisation, for models trained with ``--norm speaker``.

    The speaker's own unlabelled audio (``--enrol`` files, and in ``--stream`` every window
    that passed the gate) gives their feature mean and std, shrunk towards the population's
    (the sidecar's ``normalization``, weighted as ``speaker_prior_weight`` utterances) so that a
    few utterances cannot throw the estimate far off. Before any audio is seen it is the
    population's normalisation. The model itself never changes.
    """
    name = "speaker"

    def __init__(self, meta: dict):
        super().__init__(meta)
        self.n = 0
        self._sum = self._sumsq = 0.0      # running moments: O(1) per window
        self.prior_weight = float(meta.get("speaker_prior_weight", sc.SPEAKER_PRIOR))
        self._norm = meta.get("normalization")

    def observe(self, vector: np.ndarray) -> None:
        v = np.asarray(vector, dtype=np.float64)
        self.n += 1
        self._sum = self._sum + v
        self._sumsq = self._sumsq + v * v
        mean = self._sum / self.n
        self._norm = sc.shrunk_stats(self.n, mean, self._sumsq / self.n - mean * mean,
                                     self.meta["normalization"],
                                     prior_weight=self.prior_weight)

    def normalization(self) -> dict | None:
        return self._norm


ADAPTATIONS: dict[str, type[NoAdaptation]] = {"none": NoAdaptation,
                                              "speaker": SpeakerAdaptation}


# --------------------------------------------------------------------------------------------
# Keras, quietly
# --------------------------------------------------------------------------------------------
# shared with plot_model.py and the benchmarks: defined once in ser_common
_stderr_silenced = sc.stderr_silenced
import_keras = sc.import_keras


BACKENDS = ("auto", "litert", "tf")
"""Inference paths: ``litert`` (TFLite through the ai-edge-litert package), ``tf`` (a traced
tf.function), ``auto`` (litert when it is installed and converts the model, else tf)."""


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

    from ai_edge_litert.interpreter import Interpreter
    import tensorflow as tf
    # The converter exports a SavedModel first and print()s about it; keep stdout clean.
    with _stderr_silenced(), contextlib.redirect_stdout(io.StringIO()):
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


# --------------------------------------------------------------------------------------------
# The predictor
# --------------------------------------------------------------------------------------------
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
        before decoding (see :func:`ser_common.load_audio`); a file is judged whole, in memory
        (one hour took 2.9 GB with the CNN, 7 GB with the stats MLP). ``None``: no limit.

    Raises
    ------
    ModelError
        The model or its sidecar is missing, unreadable, or does not fit this version
        (feature set, input size, number of classes, normalisation, adaptation).
    """

    def __init__(self, model_path: str | os.PathLike = sc.DEFAULT_MODEL, *,
                 min_seconds: float = MIN_SPEECH_SECONDS, backend: str = "auto",
                 max_seconds: float | None = DEFAULT_MAX_SECONDS):
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r} (choose from {', '.join(BACKENDS)})")
        self.model_path = Path(model_path)
        self.min_seconds = float(min_seconds)
        self.max_seconds = None if max_seconds is None else float(max_seconds)
        try:
            # Cheap checks first, so that a wrong --model fails before TensorFlow is imported.
            if not self.model_path.exists():
                raise FileNotFoundError(f"{self.model_path}: model file not found (train one "
                                        f"with neural_network.py, or pass --model)")
            self._check_sidecar(sc.read_sidecar(self.model_path))
            try:
                import_keras()
            except ImportError as e:
                raise ModelError(f"cannot import Keras/TensorFlow ({e}); install the "
                                 f"requirements: pip install -r requirements.lock") from None
            with _stderr_silenced():
                model, meta = sc.load_model(self.model_path)
        except (FileNotFoundError, ValueError, OSError, TypeError, KeyError) as e:
            # TypeError/KeyError: a sidecar that is JSON but not the expected object
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            if isinstance(e, (TypeError, KeyError)):
                msg = f"{sc.sidecar_path(self.model_path)}: malformed sidecar ({msg})"
            raise ModelError(msg) from None
        self.model, self.meta = model, meta
        self._check_sidecar(meta)
        out = model.output_shape
        if isinstance(out, list) or out[-1] != sc.N_CLASSES:
            raise ModelError(f"{self.model_path}: model output {out} is not "
                             f"{sc.N_CLASSES} classes")
        self.feature: str = meta["feature"]
        self.labels: list[str] = list(meta["labels"])
        self.input_shape: tuple[int, ...] = tuple(int(d) for d in meta["input_shape"])
        try:
            self.adaptation = ADAPTATIONS[meta["adaptation"]](meta)
        except (TypeError, ValueError, KeyError) as e:   # read_sidecar checks the types
            raise ModelError(f"{sc.sidecar_path(self.model_path)}: malformed sidecar "
                             f"({type(e).__name__}: {e})") from None
        self._infer, self.backend = _make_infer(model, self.input_shape, backend)
        self._softmax = not self._looks_like_probabilities()

    # -- checks ------------------------------------------------------------------------------
    def _check_sidecar(self, meta: dict) -> None:
        """Refuse a sidecar this version cannot serve (beyond what load_model checks)."""
        where = sc.sidecar_path(self.model_path)
        feature = meta["feature"]
        if feature not in sc.FEATURE_SETS:
            raise ModelError(f"{where}: feature set {feature!r} is not one this version computes "
                             f"({', '.join(sc.FEATURE_SETS)}); retrain the model")
        dim = sc.FEATURE_DIMS[feature]
        try:
            shape = tuple(int(d) for d in meta["input_shape"])
        except (TypeError, ValueError):
            raise ModelError(f"{where}: input_shape {meta['input_shape']!r} is not a list of "
                             f"sizes") from None
        if not shape or int(np.prod(shape)) != dim:
            raise ModelError(f"{where}: input shape {list(shape)} holds {int(np.prod(shape))} "
                             f"values, but feature set {feature!r} has {dim}")
        norm = meta.get("normalization")
        if norm:
            try:
                mean = np.asarray(norm["mean"], np.float64)
                std = np.asarray(norm["std"], np.float64)
            except (KeyError, TypeError, ValueError):
                raise ModelError(f"{where}: normalization must be null or "
                                 f"{{\"mean\": [...], \"std\": [...]}}") from None
            if mean.shape != (dim,) or std.shape != (dim,):
                raise ModelError(f"{where}: normalization has {mean.size} means and {std.size} "
                                 f"stds, but the feature set has {dim} values")
            if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std)) and np.all(std > 0)):
                raise ModelError(f"{where}: normalization has non-finite or non-positive values")
        if meta["adaptation"] not in ADAPTATIONS:
            raise ModelError(f"{where}: adaptation {meta['adaptation']!r} is not implemented in "
                             f"this version (known: {', '.join(ADAPTATIONS)})")

    def _looks_like_probabilities(self) -> bool:
        p = self._infer(np.zeros((1, *self.input_shape), np.float32))
        return bool(np.all(p >= -1e-6) and np.allclose(p.sum(axis=-1), 1.0, atol=1e-3))

    # -- prediction --------------------------------------------------------------------------
    def check_speech(self, y: np.ndarray, *, name: str = "signal") -> None:
        """Refuse what cannot be judged: too short, non-finite or silent (AudioError)."""
        if y.ndim == 1 and y.shape[0] < max(sc.MIN_SAMPLES, self.min_seconds * SAMPLE_RATE):
            raise AudioError(f"{name}: too short ({y.shape[0] / SAMPLE_RATE:.2f} s < "
                             f"{self.min_seconds:.2f} s), no speech detected")
        sc.check_signal(y, name=name)

    def features(self, y: np.ndarray, *, name: str = "signal") -> np.ndarray:
        """The model's feature vector of mono audio at SAMPLE_RATE (only its feature set)."""
        self.check_speech(y, name=name)
        try:
            return sc.extract_features(y, sr=SAMPLE_RATE, sets=(self.feature,))[self.feature]
        except AudioError as e:
            raise AudioError(f"{name}: {e}") from None

    def predict_vectors(self, vectors: np.ndarray) -> list[Prediction]:
        """Judge feature vectors of shape (n, dim) in one call."""
        meta = self.meta
        norm = self.adaptation.normalization()
        if norm is not meta.get("normalization"):
            meta = {**meta, "normalization": norm}
        X = np.ascontiguousarray(sc.model_input(vectors, meta), dtype=np.float32)
        P = self._infer(X)
        if self._softmax:
            P = np.exp(P - P.max(axis=-1, keepdims=True))
            P /= P.sum(axis=-1, keepdims=True)
        return [Prediction.from_probs(p, self.labels) for p in P]

    def predict_vector(self, vector: np.ndarray) -> Prediction:
        return self.predict_vectors(np.asarray(vector)[None, :])[0]

    def predict_signal(self, y: np.ndarray, sr: int = SAMPLE_RATE, *, name: str = "signal",
                       adapt: bool = False) -> Prediction:
        """Judge mono audio at any rate (resampled like the loader does).

        ``adapt=True`` (streaming) first passes the feature vector to the adaptation hook.
        """
        y = sc.resample(y, sr)
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
                             f"models/emotion_mlp_stats_speaker.h5")
        used, errors = 0, []
        for path in paths:
            try:
                self.adaptation.observe(self.features(self.load(path), name=str(path)))
                used += 1
            except (AudioError, OSError) as e:
                errors.append(str(e))
        return used, errors

    def load(self, path: str | os.PathLike) -> np.ndarray:
        """:func:`ser_common.load_audio` with this predictor's length limit (``max_seconds``)."""
        try:
            return sc.load_audio(path, max_seconds=self.max_seconds)
        except sc.AudioTooLong as e:
            raise AudioError(f"{e} (a file is judged whole, in memory: about 3-7 GB an hour "
                             f"of audio; raise the limit with --max-seconds S)") from None

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


# --------------------------------------------------------------------------------------------
# Audio input (sounddevice / PortAudio, imported only when needed)
# --------------------------------------------------------------------------------------------
def _sounddevice():
    try:
        import sounddevice as sd
    except OSError as e:
        raise DeviceError(f"audio input unavailable: {e} (install the PortAudio library: "
                          f"Debian/Ubuntu apt-get install libportaudio2, macOS brew install "
                          f"portaudio)") from None
    except ImportError:
        raise DeviceError("audio input unavailable: the sounddevice package is missing "
                          "(pip install sounddevice)") from None
    return sd


def parse_device(device: str | int | None) -> str | int | None:
    """``--device`` value: an index (digits) or a name (substring), or None for the default."""
    if device is None or isinstance(device, int):
        return device
    device = device.strip()
    return int(device) if device.isdigit() else device


def input_device(device: str | int | None = None) -> dict:
    """Describe the input device to use; DeviceError when there is none."""
    sd = _sounddevice()
    device = parse_device(device)
    try:
        info = sd.query_devices(device, kind="input")
    except (sd.PortAudioError, ValueError) as e:
        which = "default input device" if device is None else f"input device {device!r}"
        hint = (" (see --list-devices)" if device is not None else
                " (is a microphone connected? see --list-devices)")
        raise DeviceError(f"no usable {which}: {str(e).splitlines()[0]}{hint}") from None
    if info.get("max_input_channels", 0) < 1:
        raise DeviceError(f"device {info['name']!r} has no input channels (see --list-devices)")
    return dict(info)


def list_devices(out=None) -> int:
    """Print the audio devices; ``>`` marks the default input. Returns an exit status."""
    out = sys.stdout if out is None else out
    try:
        sd = _sounddevice()
        devices = sd.query_devices()
    except DeviceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        default_in = sd.default.device[0]
    except Exception:
        default_in = -1
    inputs = [d for d in devices if d["max_input_channels"] > 0]
    if not inputs:
        print("no input devices found (is a microphone connected, or a sound server running?)",
              file=out)
    for d in devices:
        mark = ">" if d["index"] == default_in else " "
        kind = ", ".join(k for k, n in (("in", d["max_input_channels"]),
                                        ("out", d["max_output_channels"])) if n)
        print(f"{mark} {d['index']:3d}  {d['name']}  ({kind}; {d['default_samplerate']:.0f} Hz)",
              file=out)
    return 0


def _capture_rate(sd, device, info: dict, want: int = SAMPLE_RATE) -> int:
    """Capture at the model's rate when the device allows it, else at its own default rate."""
    try:
        sd.check_input_settings(device=device, channels=1, dtype="float32", samplerate=want)
        return want
    except Exception:
        return int(info["default_samplerate"])


class Capture:
    """A mono float32 input stream feeding a queue of blocks (callback thread -> caller)."""

    def __init__(self, device: str | int | None = None, *, blocksize: int = 1024):
        self.sd = _sounddevice()
        self.device = parse_device(device)
        self.info = input_device(self.device)
        self.rate = _capture_rate(self.sd, self.device, self.info)
        self.blocksize = blocksize
        self.queue: queue.Queue[np.ndarray] = queue.Queue()
        self.overflows = 0
        self._stream = None

    def _callback(self, indata, frames, time_info, status) -> None:
        if status and status.input_overflow:
            self.overflows += 1
        self.queue.put(indata[:, 0].copy())

    def __enter__(self) -> "Capture":
        try:
            self._stream = self.sd.InputStream(device=self.device, channels=1, dtype="float32",
                                               samplerate=self.rate, blocksize=self.blocksize,
                                               callback=self._callback)
            self._stream.start()
        except Exception as e:
            raise DeviceError(f"cannot open input device {self.info['name']!r}: "
                              f"{str(e).splitlines()[0]}") from None
        return self

    def __exit__(self, *exc) -> None:
        if self._stream is not None:
            try:
                self._stream.stop()
                self._stream.close()
            except Exception:
                pass

    def get(self, timeout: float = DATA_TIMEOUT) -> np.ndarray:
        try:
            return self.queue.get(timeout=timeout)
        except queue.Empty:
            raise DeviceError(f"no audio arrived from {self.info['name']!r} within "
                              f"{timeout:.0f} s") from None

    def warm_up(self, seconds: float = 0.2) -> None:
        """Wait until audio flows (the first stream of a process can take ~1.5 s), then drop
        ``seconds`` more so that a device's start-up transient is not recorded."""
        self.get()
        drop = int(seconds * self.rate)
        while drop > 0:
            drop -= len(self.get())
        while not self.queue.empty():
            self.queue.get_nowait()


def record(seconds: float = DEFAULT_SECONDS, device: str | int | None = None, *,
           on_start: Callable[[dict], None] | None = None) -> tuple[np.ndarray, int]:
    """Record ``seconds`` of mono audio after the stream has warmed up.

    Returns the recording at the device's capture rate and that rate; ``on_start`` is called
    (with the device description) when recording proper begins.
    """
    with Capture(device) as cap:
        cap.warm_up()
        if on_start:
            on_start(cap.info)
        need = int(round(seconds * cap.rate))
        blocks, have = [], 0
        deadline = time.monotonic() + seconds + DATA_TIMEOUT
        while have < need:
            b = cap.get(timeout=max(0.1, deadline - time.monotonic()))
            blocks.append(b)
            have += len(b)
    return np.concatenate(blocks)[:need], cap.rate


# --------------------------------------------------------------------------------------------
# Streaming
# --------------------------------------------------------------------------------------------
@dataclass
class StreamResult:
    """One hop of a stream: the window's end time, its level and a prediction or a reason."""
    time: float
    level_db: float
    prediction: Prediction | None = None
    reason: str | None = None

    def as_dict(self) -> dict:
        d = {"time": round(self.time, 3), "level_dbfs": round(self.level_db, 1)}
        if self.prediction is not None:
            d.update(self.prediction.as_dict())
        else:
            d.update({"emotion": None, "reason": self.reason})
        return d


class StreamProcessor:
    """Sliding-window judgement of running audio at SAMPLE_RATE, independent of any device.

    Feed blocks of any size with :meth:`feed`; every ``hop`` seconds (once ``window`` seconds
    have arrived) the last ``window`` seconds are judged. Windows whose speech level is below
    ``gate_db`` dBFS are skipped as "no speech" without computing features. Windows that pass
    go through ``predictor.predict_signal(..., adapt=True)``, i.e. the adaptation hook.
    """

    def __init__(self, predictor: Predictor, *, window: float = DEFAULT_WINDOW,
                 hop: float = DEFAULT_HOP, gate_db: float = DEFAULT_GATE_DB,
                 sr: int = SAMPLE_RATE):
        if window <= 0 or hop <= 0:
            raise ValueError("window and hop must be positive")
        self.predictor, self.window, self.hop, self.gate_db, self.sr = (
            predictor, window, hop, gate_db, sr)
        self.n_window = int(round(window * sr))
        self.n_hop = max(1, int(round(hop * sr)))
        self._buf = np.zeros(self.n_window, dtype=np.float32)
        self._fill = 0      # valid samples in _buf
        self._since = 0     # samples since the last judgement
        self._total = 0     # samples fed in all

    def feed(self, block: np.ndarray) -> list[StreamResult]:
        out = []
        block = np.asarray(block, dtype=np.float32).reshape(-1)
        while block.size:
            take = min(block.size, self.n_hop - self._since)
            self._push(block[:take])
            block = block[take:]
            self._since += take
            self._total += take
            if self._since >= self.n_hop:
                self._since = 0
                if self._fill >= self.n_window:
                    out.append(self.judge(self._buf.copy(), self._total / self.sr))
        return out

    def _push(self, x: np.ndarray) -> None:
        n = x.size
        if n >= self.n_window:
            self._buf[:] = x[-self.n_window:]
        else:
            self._buf[:-n] = self._buf[n:]
            self._buf[-n:] = x
        self._fill = min(self.n_window, self._fill + n)

    def judge(self, w: np.ndarray, t: float) -> StreamResult:
        level = speech_level_db(w)
        if level < self.gate_db:
            return StreamResult(t, level, reason="no speech")
        try:
            return StreamResult(t, level, self.predictor.predict_signal(
                w, self.sr, name=f"window at {t:.1f} s", adapt=True))
        except AudioError:
            return StreamResult(t, level, reason="no speech")


class _StreamResampler:
    """Block-wise resampling for a device that cannot capture at SAMPLE_RATE."""

    def __init__(self, rate: int):
        self.rate = rate
        self._rs = None
        if rate != SAMPLE_RATE:
            import soxr
            self._rs = soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")

    def __call__(self, block: np.ndarray) -> np.ndarray:
        return block if self._rs is None else self._rs.resample_chunk(block)


def run_stream(predictor: Predictor, emit: Callable[[StreamResult], None], *,
               device: str | int | None = None, window: float = DEFAULT_WINDOW,
               hop: float = DEFAULT_HOP, gate_db: float = DEFAULT_GATE_DB,
               duration: float | None = None,
               on_start: Callable[[dict], None] | None = None) -> StreamProcessor:
    """Listen until Ctrl-C (KeyboardInterrupt propagates) or ``duration`` seconds of audio."""
    proc = StreamProcessor(predictor, window=window, hop=hop, gate_db=gate_db)
    with Capture(device) as cap:
        cap.warm_up()
        resample_block = _StreamResampler(cap.rate)
        if on_start:
            on_start(cap.info)
        limit = None if duration is None else int(round(duration * SAMPLE_RATE))
        got = 0
        while limit is None or got < limit:
            block = resample_block(cap.get())
            if limit is not None:
                block = block[:limit - got]
            got += block.size
            for r in proc.feed(block):
                emit(r)
    return proc


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------
def _bar(p: float, width: int = 20) -> str:
    n = int(round(max(0.0, min(1.0, p)) * width))
    return "█" * n + "·" * (width - n)


def format_prediction(p: Prediction, top: int = 3) -> str:
    others = ", ".join(f"{k} {v:.2f}" for k, v in p.top(top)[1:])
    return f"{p.emotion} {p.confidence:.2f}" + (f"  ({others})" if others else "")


def _err(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr, flush=True)


def _info(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass
class Inputs:
    """FILE arguments with their folders expanded.

    ``entries`` keeps the arguments' order: ``(path, None)`` for a file to judge, ``(path,
    message)`` for a folder that failed (cannot be read, empty, no audio in it). ``left_out``
    names every file or folder a folder argument did not take, with the reason.
    """
    entries: list[tuple[str, str | None]]
    left_out: list[tuple[str, str]]
    folders: int = 0            # folder arguments given
    unreadable: int = 0         # folders (arguments or inside them) that could not be read

    @property
    def files(self) -> list[str]:
        return [path for path, problem in self.entries if problem is None]

    @property
    def problems(self) -> list[tuple[str, str]]:
        return [(path, problem) for path, problem in self.entries if problem is not None]


def _expand_inputs(items: list[str]) -> Inputs:
    """Expand folder arguments (recursively, :func:`ser_common.scan_audio_files`)."""
    entries: list[tuple[str, str | None]] = []
    left_out: list[tuple[str, str]] = []
    folders = unreadable = 0
    for item in items:
        if not os.path.isdir(item):
            entries.append((item, None))       # load_audio says what is wrong with it
            continue
        folders += 1
        scan = sc.scan_audio_files(item)
        unreadable += len(scan.unreadable)
        for path, reason in scan.unreadable:
            entries.append((str(path), f"{path}: cannot read the folder ({reason})"))
        left_out += [(str(path), reason) for path, reason in scan.left_out]
        entries += [(str(f), None) for f in scan.files]
        if scan.files or scan.unreadable:
            continue
        if scan.left_out:
            n = len(scan.left_out)
            entries.append((item, f"{item}: no audio files ({n} other file{'s' * (n != 1)} "
                                  f"left out, named above; audio is "
                                  f"{', '.join(sc.AUDIO_EXTENSIONS)})"))
        else:
            entries.append((item, f"{item}: empty folder (no files in it)"))
    return Inputs(entries, left_out, folders, unreadable)


def _report_left_out(inputs: Inputs, what: str = "") -> None:
    for path, reason in inputs.left_out:
        _info(f"skipped{what}: {path}: {reason}")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        description="Predict the emotion in speech from audio files, a microphone recording "
                    "or a live microphone stream, with the model trained by neural_network.py.",
        epilog="Exit status: 0 all inputs judged, 1 some input failed (a file, or a folder "
               "that is empty or cannot be read; the rest still run), 2 nothing could run "
               "(arguments, model or its sidecar, audio device, no audio file in the inputs).")
    ap.add_argument("files", nargs="*", metavar="FILE",
                    help="audio files (WAV, FLAC, AIFF, Ogg Vorbis, Opus, MP3; any rate, mono "
                         "or stereo) or folders (searched recursively; every file a folder "
                         "leaves out is named on stderr)")
    mode = ap.add_argument_group("modes (default: the FILE arguments)")
    mode.add_argument("--mic", action="store_true",
                      help="record from the input device for --seconds and predict")
    mode.add_argument("--stream", action="store_true",
                      help="listen continuously; judge a sliding window every --hop seconds "
                           "until Ctrl-C or --duration")
    mode.add_argument("--list-devices", action="store_true",
                      help="list the audio devices ('>' marks the default input) and exit")
    ap.add_argument("--model", type=Path, default=sc.DEFAULT_MODEL,
                    help="H5 model with its JSON sidecar beside it (default: "
                         f"{sc.DEFAULT_MODEL.relative_to(sc.ROOT)})")
    ap.add_argument("--json", action="store_true",
                    help="print one JSON object per line: per file {file, emotion, confidence, "
                         "probabilities} or {file, error}; per --mic recording or --stream hop "
                         "the same fields with source/time instead of file")
    ap.add_argument("--enrol", action="append", metavar="PATH", default=None,
                    help="a recording or folder of recordings of the speaker (any emotion, no "
                         "labels needed; repeat the flag for more): a model trained with "
                         "--norm speaker then normalises by this speaker's statistics; ~20 or "
                         "more utterances work best")
    ap.add_argument("--top", type=int, default=3, metavar="K",
                    help="text output: show the K most likely emotions (default: %(default)s)")
    ap.add_argument("--backend", choices=BACKENDS, default="auto",
                    help="inference: litert (TFLite via the ai-edge-litert package: fastest "
                         "per call, ~0.4 s to convert at start), tf (a traced TensorFlow "
                         "function), auto (litert for --stream and for "
                         f"{LITERT_MIN_FILES}+ files, where it pays back, if installed; "
                         "else tf) (default: %(default)s)")
    ap.add_argument("--min-seconds", type=float, default=MIN_SPEECH_SECONDS, metavar="S",
                    help="clips shorter than S seconds are 'no speech detected' "
                         "(default: %(default)s)")
    ap.add_argument("--max-seconds", type=float, default=DEFAULT_MAX_SECONDS, metavar="S",
                    help="refuse files (and --enrol recordings) longer than S seconds, judged "
                         "from the file's header before decoding: a file is judged whole, in "
                         "memory, about 3-7 GB an hour of audio (default: %(default)g)")
    dev = ap.add_argument_group("microphone (--mic, --stream)")
    dev.add_argument("--device", metavar="ID",
                     help="input device: index or part of its name (default: the system's "
                          "default input; see --list-devices)")
    dev.add_argument("--seconds", type=float, default=DEFAULT_SECONDS, metavar="N",
                     help="--mic: seconds to record (default: %(default)s)")
    dev.add_argument("--trim-db", type=float, default=DEFAULT_TRIM_DB, metavar="DB",
                     help="--mic: cut leading/trailing audio quieter than DB dBFS before "
                          "judging (default: %(default)s; use -200 to keep everything)")
    dev.add_argument("--save-recording", type=Path, metavar="WAV",
                     help="--mic: also write the raw recording to this WAV file")
    dev.add_argument("--window", type=float, default=DEFAULT_WINDOW, metavar="S",
                     help="--stream: window length in seconds (default: %(default)s)")
    dev.add_argument("--hop", type=float, default=DEFAULT_HOP, metavar="S",
                     help="--stream: seconds between judgements (default: %(default)s)")
    dev.add_argument("--gate-db", type=float, default=DEFAULT_GATE_DB, metavar="DB",
                     help="--stream: windows whose speech level (95th percentile of frame "
                          "RMS) is below DB dBFS are reported as 'no speech' "
                          "(default: %(default)s)")
    dev.add_argument("--duration", type=float, metavar="S",
                     help="--stream: stop after S seconds of audio (default: until Ctrl-C)")
    return ap


def _check_args(ap: argparse.ArgumentParser, args) -> None:
    modes = [m for m, on in (("FILE", bool(args.files)), ("--mic", args.mic),
                             ("--stream", args.stream), ("--list-devices", args.list_devices))
             if on]
    if not modes:
        ap.error("give audio FILEs, --mic, --stream or --list-devices")
    if len(modes) > 1:
        ap.error(f"choose one of {' / '.join(modes)}")
    for name in ("seconds", "window", "hop"):
        if getattr(args, name) <= 0:
            ap.error(f"--{name} must be positive")
    if args.duration is not None and args.duration <= 0:
        ap.error("--duration must be positive")
    if args.hop > args.window:
        ap.error("--hop must not exceed --window")
    if args.top < 1:
        ap.error("--top must be at least 1")
    if not args.max_seconds > 0:
        ap.error("--max-seconds must be positive")


def _cli_backend(args, n_files: int) -> str:
    """``--backend auto`` on the command line: LiteRT only where its one-off conversion
    (~0.4 s) is paid back by ~0.5 ms saved per prediction (streaming, big batches)."""
    if args.backend != "auto":
        return args.backend
    return "auto" if args.stream or n_files >= LITERT_MIN_FILES else "tf"


def _report_error(path: str, msg: str, args) -> None:
    if args.json:
        print(json.dumps({"file": path, "error": msg}), flush=True)
    else:
        _err(msg)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' * (n != 1)}"


def _run_files(predictor: Predictor | None, inputs: Inputs, args) -> int:
    """Judge the files in argument order; folder problems are reported in their place.

    ``predictor`` is None when there is no file to judge (only failed folders)."""
    judged = failed = 0
    for path, problem in inputs.entries:
        if problem is not None:
            _report_error(path, problem, args)
            continue
        _, res = next(predictor.predict_files([path]))
        if isinstance(res, Exception):
            failed += 1
            _report_error(path, str(res), args)
            continue
        judged += 1
        if args.json:
            print(json.dumps({"file": path, **res.as_dict()}), flush=True)
        else:
            print(f"{path}: {format_prediction(res, args.top)}", flush=True)
    problems = inputs.problems
    if len(inputs.entries) > 1 or inputs.left_out:      # a batch: say what it did and skipped
        parts = [f"{judged} of {judged + failed} files judged"]
        if failed:
            parts.append(f"{failed} failed")
        unreadable = inputs.unreadable
        if unreadable:
            parts.append(f"{_plural(unreadable, 'folder')} could not be read")
        if len(problems) > unreadable:
            parts.append(f"{_plural(len(problems) - unreadable, 'folder')} empty or without "
                         f"audio")
        if inputs.left_out:
            dirs = sum(os.path.isdir(path) for path, _ in inputs.left_out)
            kinds = [_plural(n, w) for n, w in ((len(inputs.left_out) - dirs, "file"),
                                                 (dirs, "folder")) if n]
            parts.append(f"{' and '.join(kinds)} left out of the folders (named above)")
        _info("summary: " + ", ".join(parts))
    if not inputs.files:
        return 2
    return 1 if failed or problems else 0


def _run_mic(predictor: Predictor, args) -> int:
    def started(info):
        _info(f"recording {args.seconds:g} s from {info['name']!r}... speak now")
    y_raw, rate = record(args.seconds, args.device, on_start=started)
    _info("recording done")
    if args.save_recording:
        import soundfile as sf
        with sc.atomic_path(args.save_recording) as tmp:
            sf.write(str(tmp), y_raw, rate, format="WAV", subtype="FLOAT")
    y = sc.resample(y_raw, rate)
    speech = trim_silence(y, threshold_db=args.trim_db)
    base = {"source": "microphone", "seconds": round(y.size / SAMPLE_RATE, 3),
            "speech_seconds": round(speech.size / SAMPLE_RATE, 3),
            "level_dbfs": round(speech_level_db(speech), 1)}
    try:
        pred = predictor.predict_signal(speech, name="microphone recording")
    except AudioError as e:
        if args.json:
            print(json.dumps({**base, "error": str(e)}), flush=True)
        else:
            _err(str(e))
        return 1
    if args.json:
        print(json.dumps({**base, **pred.as_dict()}), flush=True)
    else:
        print(f"microphone ({base['speech_seconds']:.1f} s of sound): "
              f"{format_prediction(pred, args.top)}", flush=True)
    return 0


def _run_stream(predictor: Predictor, args) -> int:
    def started(info):
        until = f"for {args.duration:g} s" if args.duration else "until Ctrl-C"
        _info(f"listening to {info['name']!r} {until}: window {args.window:g} s, hop "
              f"{args.hop:g} s, gate {args.gate_db:g} dBFS (first result after "
              f"{args.window:g} s)")

    def emit(r: StreamResult):
        if args.json:
            print(json.dumps(r.as_dict()), flush=True)
        elif r.prediction is None:
            print(f"{r.time:7.1f} s  {'-':<9} {' ' * 20}       {r.reason} "
                  f"({r.level_db:.0f} dBFS)", flush=True)
        else:
            p = r.prediction
            print(f"{r.time:7.1f} s  {p.emotion:<9} {_bar(p.confidence)} {p.confidence:.2f}",
                  flush=True)
    try:
        run_stream(predictor, emit, device=args.device, window=args.window, hop=args.hop,
                   gate_db=args.gate_db, duration=args.duration, on_start=started)
    except KeyboardInterrupt:
        _info("stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    _check_args(ap, args)
    try:
        if args.list_devices:
            return list_devices()
        if args.mic or args.stream:
            input_device(args.device)      # fail fast, before the slow model load
        inputs = _expand_inputs(args.files)
        _report_left_out(inputs)
        if args.files and not inputs.files:
            return _run_files(None, inputs, args)    # only failed folders: nothing to judge
        try:
            predictor = Predictor(args.model, min_seconds=args.min_seconds,
                                  backend=_cli_backend(args, len(inputs.files)),
                                  max_seconds=args.max_seconds)
        except ModelError as e:
            _err(str(e))
            return 2
        if args.enrol:
            enrol = _expand_inputs(args.enrol)
            _report_left_out(enrol, " (enrolment)")
            try:
                used, errors = predictor.enrol(enrol.files)
            except ModelError as e:
                _err(str(e))
                return 2
            errors = [msg for _, msg in enrol.problems] + errors
            for msg in errors:
                _err(f"enrolment skipped: {msg}")
            if not used:
                _err("no usable enrolment recording; nothing to adapt to")
                return 2
            skipped = [f"{len(errors)} failed"] if errors else []
            if enrol.left_out:
                skipped.append(f"{_plural(len(enrol.left_out), 'file')} left out of the "
                               f"folders")
            _info(f"adapted to the speaker from {used} enrolment recording(s)"
                  + (f" ({', '.join(skipped)}, named above)" if skipped else ""))
        elif predictor.adaptation.name == "speaker" and not args.stream:
            _info("note: this model adapts to the speaker; without --enrol it uses the "
                  "population's normalisation")
        if args.mic:
            return _run_mic(predictor, args)
        if args.stream:
            return _run_stream(predictor, args)
        return _run_files(predictor, inputs, args)
    except DeviceError as e:
        _err(str(e))
        return 2
    except KeyboardInterrupt:
        _info("interrupted")
        return 130
    except BrokenPipeError:
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 1


if __name__ == "__main__":
    sys.exit(main())
