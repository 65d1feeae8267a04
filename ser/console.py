"""What the scripts say: one-line errors, notes, progress bars on a terminal only, quiet TensorFlow."""
from __future__ import annotations

import os
import re
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


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
FORMULA_LEAD = ("=", "+", "-", "@", "\t", "\r")   # what makes a spreadsheet cell a formula


def printable(text) -> str:
    """``text`` with its control characters escaped (``\\n``, ``\\x1b``, ``\\u2028``): a file
    name with a newline cannot forge a result line, nor an escape sequence move the cursor."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"),
                        str(text))


def csv_cell(text: str) -> str:
    """A text cell for a CSV that spreadsheets open: one starting like a formula (``=``,
    ``+``, ``-``, ``@``, tab, CR) gets a leading ``'``, which they show as text; undone by
    :func:`from_csv_cell`."""
    return f"'{text}" if text.startswith(FORMULA_LEAD) else text


def from_csv_cell(text: str) -> str:
    """The text :func:`csv_cell` was given."""
    return text[1:] if text.startswith("'") and text[1:].startswith(FORMULA_LEAD) else text


def err(msg: str) -> None:
    """One line on stderr: ``error: <msg>`` (control characters escaped)."""
    print(f"error: {printable(msg)}", file=sys.stderr, flush=True)


def info(msg: str) -> None:
    """A note on stderr (results go to stdout), control characters escaped."""
    print(printable(msg), file=sys.stderr, flush=True)


def show_progress(quiet: bool = False) -> bool:
    """Whether to draw progress bars: on a terminal, unless ``--quiet``."""
    return not quiet and sys.stderr.isatty()
