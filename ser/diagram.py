"""A model's diagram (pydot/Graphviz)."""
from __future__ import annotations

import shutil
from pathlib import Path

from ser.checkpoint import load_model, read_sidecar
from ser.console import import_keras, stderr_silenced
from ser.files import atomic_path
from ser.paths import CNN_MODEL, MEDIA_DIR

DEFAULT_OUT = MEDIA_DIR / "model.png"
FORMATS = ("png", "svg", "pdf", "jpg", "jpeg")


def missing_tools() -> str | None:
    """What is missing for drawing, as an install hint, or None."""
    try:
        import pydot  # noqa: F401
    except ImportError:
        return "the Python package pydot is missing: pip install pydot"
    if shutil.which("dot") is None:
        return ("Graphviz's `dot` program was not found on PATH: install Graphviz "
                "(Debian/Ubuntu: apt-get install graphviz; Fedora: dnf install graphviz; "
                "macOS: brew install graphviz)")
    return None


def plot(model_path: str | Path = CNN_MODEL, out: str | Path = DEFAULT_OUT, *,
         dpi: int = 96, rankdir: str = "TB") -> Path:
    """Load ``model_path`` with its sidecar and write its diagram to ``out`` atomically.

    Raises FileNotFoundError/ValueError (model), ImportError (pydot/Graphviz).
    """
    model_path = Path(model_path)
    if not model_path.exists():
        raise FileNotFoundError(f"{model_path}: model file not found")
    meta = read_sidecar(model_path)        # a wrong --model is one line before TensorFlow
    keras = import_keras()
    with stderr_silenced():
        model, _ = load_model(model_path, meta=meta)
    out = Path(out)
    with atomic_path(out) as tmp:          # temp name keeps the extension: format from it
        keras.utils.plot_model(model, to_file=str(tmp), show_shapes=True,
                               show_layer_names=True, show_layer_activations=True,
                               expand_nested=True, rankdir=rankdir, dpi=dpi)
        if not tmp.exists() or tmp.stat().st_size == 0:
            raise RuntimeError(f"Graphviz wrote nothing to {tmp}")
    return out
