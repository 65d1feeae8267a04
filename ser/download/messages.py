"""What the download step says: its one-line error (:class:`DownloadError`), warnings and
notes, and how a name or an exception is shown on one line."""
from __future__ import annotations

import sys

from tqdm import tqdm

from ser.errors import SerError

PROG = "download_data.py"


class DownloadError(SerError, RuntimeError):
    """A failure with a one-line message for the user (the CLI prints it and exits 1)."""


def warn(msg: str) -> None:
    """``download_data.py: warning: <msg>`` on stderr, above any progress bar."""
    tqdm.write(f"{PROG}: warning: {msg}", file=sys.stderr)


def note(msg: str) -> None:
    """A note on stdout, above any progress bar."""
    tqdm.write(msg, file=sys.stdout)


def shown(s: object) -> str:
    """``s`` for a one-line message (control characters escaped)."""
    s = str(s)
    return s if s.isprintable() else repr(s)[1:-1]


def first_line(e: BaseException) -> str:
    """The first line of an exception's text (its type's name when it has none)."""
    s = str(e).strip()
    return s.splitlines()[0] if s else type(e).__name__


def sf_reason(e: BaseException) -> str:
    """Why libsndfile (``soundfile``) could not read a file, on one line."""
    why = getattr(e, "error_string", None) or first_line(e)
    return str(why).strip().rstrip(".")
