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
from ser.errors import SerError

ENV_CACHE_DIR = "SER_CACHE_DIR"
MIN_FREE_BYTES = 64 * 2 ** 20     # what an output folder must have free before work starts


class OutputError(SerError, OSError):
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
    """Keep ``path`` (and files beside it with the ``companions`` suffixes) as
    ``<folder>/previous/<stem>.<time>.<suffix>`` before it is replaced.

    The kept files are hard links to the same bytes: no copy, so no room is needed and a full
    disk cannot leave a truncated copy behind; the caller must then replace the originals by
    renaming new files onto them (:func:`atomic_path`), never by writing into them. Where the
    file system has no hard links, each file is copied under a temporary name (after checking
    the room) and renamed into place. Either way the set is kept whole or not at all.

    Returns the kept copy of ``path``, or ``None`` if there was nothing to keep.

    Raises
    ------
    OutputError
        The files cannot be kept (one line naming the folder and the reason); nothing of
        them is left in ``previous/``.
    """
    path = Path(path)
    if not path.exists():
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(path.stat().st_mtime))
    dest_dir = path.parent / "previous"
    base = f"{path.stem}.{stamp}"
    n = 1
    while (dest_dir / f"{base}{path.suffix}").exists():
        n += 1
        base = f"{path.stem}.{stamp}-{n}"
    pairs = [(path.with_suffix(s), dest_dir / f"{base}{s}") for s in companions
             if path.with_suffix(s).exists()]
    pairs.append((path, dest_dir / f"{base}{path.suffix}"))
    done: list[Path] = []
    try:
        dest_dir.mkdir(exist_ok=True)
        for src, dst in pairs:
            _link_or_copy(src, dst)
            done.append(dst)
    except OSError as e:
        for d in done:
            d.unlink(missing_ok=True)
        raise OutputError(e.errno, f"cannot keep the file to be replaced: "
                          f"{describe_os_error(e, dest_dir)}; nothing was replaced") from None
    return pairs[-1][1]


def _link_or_copy(src: Path, dst: Path) -> None:
    """``dst`` as a hard link to ``src``; where links are not supported, an atomic copy."""
    try:
        os.link(src, dst)
        return
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.EXDEV, errno.EMLINK, errno.ENOTSUP,
                           errno.EOPNOTSUPP):
            raise
    need = src.stat().st_size + MIN_FREE_BYTES
    free = shutil.disk_usage(dst.parent).free
    if free < need:
        raise OSError(errno.ENOSPC, f"only {free / 2 ** 20:.1f} MB free, "
                                    f"{need / 2 ** 20:.0f} MB needed")
    with atomic_path(dst) as tmp:
        shutil.copy2(src, tmp)


# --------------------------------------------------------------------------------------------
# Pickles this installation wrote
# --------------------------------------------------------------------------------------------
def cache_dir() -> Path:
    """This installation's own records: ``~/.cache/ser`` (``$SER_CACHE_DIR``), outside every
    folder a file received from elsewhere could be put in."""
    return Path(os.environ.get(ENV_CACHE_DIR) or Path.home() / ".cache" / "ser")


def _record_dir() -> Path:
    return cache_dir() / "written"


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


class UntrustedFileError(SerError, ValueError):
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
    path = check_regular_file(path, kind="feature file")   # a FIFO would block the read
    if not trust and not is_trusted(path):
        raise UntrustedFileError(
            f"{path}: not written by this installation (a .joblib file is a pickle and "
            f"loading it can run code); {hint or 're-create it'}, or pass --trust-features "
            f"if you trust where it came from")
    return joblib.load(path)


def os_reason(e: OSError) -> str:
    """An OSError's reason in words ("permission denied"), for one-line messages."""
    return (e.strerror or (str(e).splitlines()[0] if str(e) else type(e).__name__)).lower()


def regular_file_problem(path: str | os.PathLike, *, kind: str = "file") -> str | None:
    """Why ``path`` cannot be read as a non-empty regular file, from ``stat`` alone (nothing
    is opened: a FIFO would block an open, a device would be read without end); ``None``
    when it can. ``kind`` names what was expected ("audio file", "model", ...)."""
    import stat
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return "file not found"
    except PermissionError:
        return "cannot read the file (permission denied on a folder above it)"
    except OSError as e:
        return f"cannot read the file ({os_reason(e)})"
    if stat.S_ISDIR(st.st_mode):
        return f"a folder, not {'an' if kind[0] in 'aeiou' else 'a'} {kind}"
    if not stat.S_ISREG(st.st_mode):
        what = ("a FIFO" if stat.S_ISFIFO(st.st_mode) else
                "a character device" if stat.S_ISCHR(st.st_mode) else
                "a block device" if stat.S_ISBLK(st.st_mode) else
                "a socket" if stat.S_ISSOCK(st.st_mode) else "a special file")
        return f"not a regular file ({what})"
    if st.st_size == 0:
        return "empty file (0 bytes)"
    return None


def check_regular_file(path: str | os.PathLike, error: type[Exception] = ValueError, *,
                       kind: str = "file") -> Path:
    """``path`` if :func:`regular_file_problem` finds nothing, else ``error("<path>: <why>")``
    (:class:`FileNotFoundError` where there is no such file)."""
    why = regular_file_problem(path, kind=kind)
    if why == "file not found":
        raise FileNotFoundError(f"{path}: {kind} not found")
    if why:
        raise error(f"{path}: {why}")
    return Path(path)


def read_regular(path: str | os.PathLike, *, max_bytes: int,
                 error: type[Exception] = ValueError, kind: str = "file") -> bytes:
    """The bytes of a regular file of at most ``max_bytes``, read with a bound: a FIFO, a
    device, a folder or a larger file is refused (``error``, one line naming the file)
    before more than ``max_bytes + 1`` bytes are read."""
    import stat
    check_regular_file(path, error, kind=kind)
    if os.stat(path).st_size > max_bytes:        # known too large: nothing read
        raise error(f"{path}: larger than {max_bytes} bytes, more than a {kind} can be")
    try:
        # O_NONBLOCK: were the name swapped for a FIFO since the check, open would not block
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise error(f"{path}: cannot read the file ({os_reason(e)})") from None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise error(f"{path}: not a regular file")
        try:
            data = fh.read(max_bytes + 1)
        except OSError as e:
            raise error(f"{path}: cannot read the file ({os_reason(e)})") from None
    if len(data) > max_bytes:
        raise error(f"{path}: larger than {max_bytes} bytes, more than a {kind} can be")
    return data


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


@contextmanager
def atomic_output(dest: str | os.PathLike) -> Iterator[Path]:
    """:func:`atomic_path` for a file the user asked for: ``dest`` must be a file path, not a
    folder; a failure to write is one :class:`OutputError` line naming ``dest`` (no space,
    read-only, permission denied)."""
    if not isinstance(dest, (str, os.PathLike)):
        raise TypeError(f"dest must be a file path, got {type(dest).__name__}")
    dest = Path(dest)
    if dest.is_dir():
        raise OutputError(errno.EISDIR, f"{dest}: is a folder, not a file name")
    try:
        with atomic_path(dest) as tmp:
            yield tmp
    except OutputError:
        raise
    except OSError as e:
        raise OutputError(e.errno, describe_os_error(e, dest)) from None


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
