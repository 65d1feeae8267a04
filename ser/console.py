"""What the scripts say: one-line errors, notes, progress bars on a terminal only, quiet TensorFlow."""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Iterator


def quiet_tensorflow() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@contextmanager
def stderr_silenced() -> Iterator[None]:
    """Silence file descriptor 2 (TensorFlow's C++ start-up lines ignore TF_CPP_MIN_LOG_LEVEL)."""
    import sys
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def import_keras(*, verbose: bool = False):
    """Import Keras (and TensorFlow) without their start-up chatter on stderr (the C++
    start-up lines, absl's HDF5 "legacy" notice, tf.function retracing warnings), unless
    ``verbose``."""
    import logging
    if verbose:
        import keras
        return keras
    quiet_tensorflow()
    if "keras" in sys.modules:
        keras = sys.modules["keras"]
    else:
        with stderr_silenced():
            import keras
            import tensorflow  # noqa: F401
    for name in ("tensorflow", "absl", "h5py"):
        logging.getLogger(name).setLevel(logging.ERROR)
    return keras


def err(msg: str) -> None:
    """One line on stderr: ``error: <msg>``."""
    print(f"error: {msg}", file=sys.stderr, flush=True)


def info(msg: str) -> None:
    """A note on stderr (results go to stdout)."""
    print(msg, file=sys.stderr, flush=True)


def show_progress(quiet: bool = False) -> bool:
    """Whether to draw progress bars: on a terminal, unless ``--quiet``."""
    return not quiet and sys.stderr.isatty()
