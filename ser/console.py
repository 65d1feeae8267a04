"""What the scripts say: one-line errors, notes, progress bars on a terminal only, quiet TensorFlow."""
from __future__ import annotations

import os
import re
import sys
from contextlib import contextmanager
from typing import Iterator


def quiet_tensorflow() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _flush_std_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass


@contextmanager
def silenced(*fds: int) -> Iterator[None]:
    """Point file descriptors (1 stdout, 2 stderr) at /dev/null for the duration: what C++
    code writes there ignores Python's streams (TensorFlow's start-up lines ignore
    TF_CPP_MIN_LOG_LEVEL; the TFLite converter print()s about its SavedModel; LiteRT announces
    its XNNPACK delegate). A descriptor that does not exist (a daemon) is left alone."""
    saved: list[tuple[int, int]] = []
    try:
        _flush_std_streams()
        for fd in fds:
            saved.append((fd, os.dup(fd)))
        with open(os.devnull, "w") as null:
            for fd, _ in saved:
                os.dup2(null.fileno(), fd)
    except OSError:                      # no such descriptor: nothing to silence
        for fd, dup in saved:
            os.dup2(dup, fd)
            os.close(dup)
        saved = []
    try:
        yield
    finally:
        _flush_std_streams()
        for fd, dup in saved:
            os.dup2(dup, fd)
            os.close(dup)


def stderr_silenced():
    """:func:`silenced` for file descriptor 2."""
    return silenced(2)


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


def plural(n: int, word: str) -> str:
    """``3 files``, ``1 file``: a count and its word."""
    return f"{n} {word}{'s' * (n != 1)}"


def err(msg: str) -> None:
    """One line on stderr: ``error: <msg>`` (control characters escaped)."""
    print(f"error: {printable(msg)}", file=sys.stderr, flush=True)


def info(msg: str) -> None:
    """A note on stderr (results go to stdout), control characters escaped."""
    print(printable(msg), file=sys.stderr, flush=True)


def show_progress(quiet: bool = False) -> bool:
    """Whether to draw progress bars: on a terminal, unless ``--quiet``."""
    return not quiet and sys.stderr.isatty()
