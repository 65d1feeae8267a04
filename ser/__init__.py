"""ser: speech emotion recognition, the library behind the pipeline's scripts.

The public face, for use from Python::

    from ser import Predictor
    p = Predictor()                          # the recommended model shipped in models/
    r = p.predict_file("clip.wav")
    r.emotion, r.confidence, r.top(3)

Exported: :class:`Predictor` and :class:`Prediction` (``ser.predict``), :func:`load_audio`
(``ser.audio``), :func:`extract_features` (``ser.features``), :class:`SerError` (the root of every
error the package raises) and ``__version__``. They are imported on first use, so ``import ser``
stays light (no TensorFlow, no librosa; the version is looked up when first read).
"""
from __future__ import annotations

from importlib import import_module

from ser.errors import SerError

_LAZY = {
    "Predictor": "ser.predict",
    "Prediction": "ser.predict",
    "load_audio": "ser.audio",
    "extract_features": "ser.features",
}

__all__ = ["Predictor", "Prediction", "load_audio", "extract_features", "SerError", "__version__"]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version   # ~40 ms: only when asked
    try:
        return version("ser-pipeline")
    except PackageNotFoundError:      # run from a source tree that was never installed
        return "0+unknown"


def __getattr__(name: str):
    if name == "__version__":
        globals()[name] = value = _version()
        return value
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ser' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
