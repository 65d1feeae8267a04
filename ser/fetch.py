"""One download of a pinned file (pooch, sha256): the pretrained encoders' weights.

Errors are one line naming the URL: :class:`FetchError`. A file that arrives with another
sha256 is removed by pooch, so nothing is kept under the cache name.
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Callable

from ser.errors import SerError


class FetchError(SerError, RuntimeError):
    """A download failed (network, HTTP status, a file that is not the pinned one)."""


def retrieve(url: str, *, sha256: str, folder: str | os.PathLike, fname: str,
             mismatch: Callable[[str | None], str] | None = None) -> Path:
    """``folder/fname``, downloaded from ``url`` once and checked against ``sha256``.

    ``mismatch(got)`` words the error of a download with another sha256 (``got``, or None when
    pooch does not say it); by default pooch's own message.
    """
    import pooch
    import requests
    try:
        return Path(pooch.retrieve(url, known_hash="sha256:" + sha256, path=folder,
                                   fname=fname, progressbar=_stderr_is_tty()))
    except requests.exceptions.RequestException as e:
        raise FetchError(f"{url}: download failed ({_reason(e)})") from None
    except ValueError as e:     # pooch's hash mismatch (the temporary file is removed)
        if mismatch is None:
            raise FetchError(f"{url}: {one_line(e)}") from None
        got = re.search(r"got ([0-9a-f]{64})", str(e))
        raise FetchError(f"{url}: {mismatch(got.group(1) if got else None)}") from None
    except OSError as e:        # a file-system error names its file; else ftp / sftp sockets
        where = f"could not write into {folder}" if e.filename else "download failed"
        raise FetchError(f"{url}: {where} ({one_line(e)})") from None


def _stderr_is_tty() -> bool:
    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _reason(e: BaseException) -> str:
    """The innermost cause of a requests error (urllib3 wraps it twice), on one line."""
    for _ in range(5):
        inner = getattr(e, "reason", None)
        if not isinstance(inner, BaseException) and e.args and isinstance(e.args[0],
                                                                          BaseException):
            inner = e.args[0]
        if not isinstance(inner, BaseException) or inner is e:
            break
        e = inner
    return one_line(e)


def one_line(e: BaseException) -> str:
    """An exception's text on one line (its type's name when it has none)."""
    return " ".join(str(e).split()) or type(e).__name__
