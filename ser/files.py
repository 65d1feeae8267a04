"""Files the pipeline writes: where they may go, what they replace, and which it will read back.

* :func:`check_writable` checks an output folder before any work (it exists or can be made,
  a file can be created in it, it has room), so that a read-only or full disk is one line at
  the start, not a traceback after an hour of extraction or training.
* :func:`keep_previous` moves a file (and its sidecar) that is about to be replaced into a
  ``previous/`` folder beside it, so that nothing a user made is lost.
* :func:`dump_trusted` / :func:`load_trusted`: ``.joblib`` files are pickles, and unpickling
  runs code. The pipeline keeps ``.joblib`` as its hand-off between steps, but reads back only
  files this installation wrote: each write records the file's SHA-256 in
  ``~/.cache/ser/written/`` (``$SER_CACHE_DIR``), outside the features folder, where a file
  received from elsewhere cannot bring its record along. Anything else is refused unless the
  caller says it trusts the file (``--trust-features``).
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

ENV_CACHE_DIR = "SER_CACHE_DIR"
MIN_FREE_BYTES = 64 * 2 ** 20     # what an output folder must have free before work starts


class OutputError(OSError):
    """An output location cannot be written (read-only, full, not a folder)."""


def describe_os_error(e: OSError, path: str | os.PathLike) -> str:
    """One line for an ``OSError`` while writing ``path``: no space, read-only, permission."""
    reason = {errno.ENOSPC: "no space left on the device",
              errno.EDQUOT: "disk quota exceeded",
              errno.EROFS: "read-only file system",
              errno.EACCES: "permission denied",
              errno.EPERM: "permission denied"}.get(e.errno, e.strerror or str(e))
    return f"{path}: cannot write: {reason}"


def check_writable(folder: str | os.PathLike, *, what: str = "output folder",
                   need_bytes: int = MIN_FREE_BYTES) -> Path:
    """Make sure ``folder`` exists (created if needed), accepts a new file and has room.

    Raises
    ------
    OutputError
        With one line naming the folder and the reason.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(errno.ENOTDIR, f"{folder}: {what} is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-probe.{os.getpid()}.tmp"
        with open(probe, "wb") as fh:
            fh.write(b"\0" * 4096)
            fh.flush()
            os.fsync(fh.fileno())
        probe.unlink()
    except OSError as e:
        raise OutputError(e.errno, f"{what} {describe_os_error(e, folder)}") from None
    free = shutil.disk_usage(folder).free
    if free < need_bytes:
        raise OutputError(errno.ENOSPC, f"{what} {folder}: only {free / 2 ** 20:.1f} MB free, "
                          f"{need_bytes / 2 ** 20:.0f} MB needed")
    return folder


def keep_previous(path: str | os.PathLike, *, companions: tuple[str, ...] = (".json",)
                  ) -> Path | None:
    """Move ``path`` (and files beside it with the ``companions`` suffixes) into
    ``<folder>/previous/<stem>.<time>.<suffix>`` before it is replaced.

    Returns the kept copy of ``path``, or ``None`` if there was nothing to keep.
    """
    path = Path(path)
    if not path.exists():
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(path.stat().st_mtime))
    dest_dir = path.parent / "previous"
    dest_dir.mkdir(exist_ok=True)
    base = f"{path.stem}.{stamp}"
    n = 1
    while (dest_dir / f"{base}{path.suffix}").exists():
        n += 1
        base = f"{path.stem}.{stamp}-{n}"
    kept = dest_dir / f"{base}{path.suffix}"
    for suffix in companions:
        side = path.with_suffix(suffix)
        if side.exists():
            shutil.copy2(side, dest_dir / f"{base}{suffix}")
    shutil.copy2(path, kept)
    return kept


# --------------------------------------------------------------------------------------------
# Pickles this installation wrote
# --------------------------------------------------------------------------------------------
def _record_dir() -> Path:
    base = Path(os.environ.get(ENV_CACHE_DIR) or Path.home() / ".cache" / "ser")
    return base / "written"


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def require_sha256(path: str | os.PathLike, want: str, error: type[Exception], *,
                   missing: str, mismatch: str) -> Path:
    """``path``, if it is a file whose SHA-256 is ``want``; else ``error("<path>: <missing>")``
    or ``error("<path>: sha256 <got> <mismatch>")``."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: {missing}")
    got = sha256_file(path)
    if got != want:
        raise error(f"{path}: sha256 {got} {mismatch}")
    return path


def record_written(path: str | os.PathLike) -> None:
    """Remember that this installation wrote ``path`` as it is now."""
    d = _record_dir()
    d.mkdir(parents=True, exist_ok=True)
    (d / sha256_file(path)).touch()


def is_trusted(path: str | os.PathLike) -> bool:
    """Whether ``path`` is byte for byte a file this installation wrote."""
    return (_record_dir() / sha256_file(path)).exists()


class UntrustedFileError(ValueError):
    """A pickle this installation did not write (loading it could run any code)."""


def dump_trusted(obj, dest: str | os.PathLike, *, tmp: str | os.PathLike | None = None) -> None:
    """``joblib.dump(obj)`` to ``tmp`` (or ``dest``) and record the bytes as written here."""
    import joblib
    target = Path(tmp or dest)
    joblib.dump(obj, target)
    record_written(target)


def load_trusted(path: str | os.PathLike, *, trust: bool = False, hint: str = ""):
    """``joblib.load(path)`` if this installation wrote ``path`` (or ``trust`` is set).

    Raises
    ------
    UntrustedFileError
        One line naming the file, why it is refused and how to proceed.
    """
    import joblib
    path = Path(path)
    if not trust and not is_trusted(path):
        raise UntrustedFileError(
            f"{path}: not written by this installation (a .joblib file is a pickle and "
            f"loading it can run code); {hint or 're-create it'}, or pass --trust-features "
            f"if you trust where it came from")
    return joblib.load(path)


def os_reason(e: OSError) -> str:
    """An OSError's reason in words ("permission denied"), for one-line messages."""
    return (e.strerror or (str(e).splitlines()[0] if str(e) else type(e).__name__)).lower()


@contextmanager
def atomic_path(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; rename it onto ``dest`` only on success."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    # the writer's pid in the name: clean_stale_tmp removes what a killed process left
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.{os.getpid()}.", suffix=".tmp" + dest.suffix,
                               dir=dest.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)      # mkstemp makes 0600; outputs are ordinary files
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:     # alive, another user's
        return True
    return True


def clean_stale_tmp(folder: str | os.PathLike, *, recursive: bool = False) -> int:
    """Remove the temporary files of :func:`atomic_path` whose writer is no longer running
    (a killed run's leftovers); returns how many were removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    n = 0
    for p in (folder.rglob(".*.tmp*") if recursive else folder.glob(".*.tmp*")):
        m = re.match(r"\..+\.(\d+)\.[a-z0-9_]{8}\.tmp", p.name)   # see atomic_path
        pid = int(m.group(1)) if m else None
        if pid is not None and pid != os.getpid() and not _pid_alive(pid):
            try:
                p.unlink()
                n += 1
            except OSError:
                pass
    return n


def write_json(path: str | os.PathLike, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")
