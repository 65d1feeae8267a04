"""numba's on-disk cache, made safe for processes that start together.

librosa compiles some functions with ``@guvectorize(cache=True)`` / ``@jit(cache=True)`` and numba
keeps the machine code on disk. Its cache is not safe when two processes compile the same
function at once (numba issue 10128): a gufunc is two files written separately, and two
processes can leave a pair from different compilations; every later call then jumps to a null
pointer (a segmentation fault, for good). A fresh environment's first parallel feature
extraction is exactly that race.

The cure here: before a process uses librosa (:func:`librosa`), it checks a *ready stamp* that
records the cache files as one process left them after compiling everything the project calls.
Where the stamp is missing or the files changed (a fresh cache, an upgrade, a cache left by an
older version of the project, a deleted ``__pycache__``), the process takes an exclusive file
lock, and a child process compiles (or loads) every cached librosa function and runs the
project's feature extraction once. A child that crashes means a poisoned cache: its files are
removed and the child runs again on an empty cache. Only then is the stamp written and the lock
released; every other process waiting on the lock then finds a complete cache, which concurrent
readers can share safely. The check itself costs a few ``stat`` calls.

The stamp and lock live in ``$SER_CACHE_DIR/numba`` (default ``~/.cache/ser/numba``), keyed by
the interpreter, the numba / llvmlite / librosa versions, the cache location
(``NUMBA_CACHE_DIR``) and librosa's source files.
"""
from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.metadata as metadata
import importlib.util
import json
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ser.errors import SerError

ENV_CACHE_DIR = "SER_CACHE_DIR"
_ENV_WARMING = "_SER_NUMBA_WARMING"   # set in the child that builds the cache
_READY = False


class NumbaCacheError(SerError, RuntimeError):
    """numba could not build a working cache of librosa's functions."""


def librosa():
    """Return the ``librosa`` module, its numba cache made complete first (once per process)."""
    ensure_ready()
    import librosa as _librosa
    return _librosa


def ensure_ready() -> None:
    """Make sure every cached librosa function is complete on disk before this process uses it.

    Cheap when the stamp is valid (a few ``stat`` calls); otherwise builds the cache in a child
    process under an exclusive lock (see the module's docstring). Raises
    :class:`NumbaCacheError` if a child fails twice, with a line saying what to remove.
    """
    global _READY
    if _READY or os.environ.get(_ENV_WARMING):
        return
    stamp = stamp_path()
    if not _stamp_ok(stamp):
        with _exclusive_lock(stamp.parent / "lock"):
            if not _stamp_ok(stamp):
                _rebuild(stamp)
    _READY = True


# --------------------------------------------------------------------------------------------
# What is cached, and where
# --------------------------------------------------------------------------------------------
def _librosa_dir() -> Path:
    spec = importlib.util.find_spec("librosa")
    if spec is None or not spec.submodule_search_locations:
        raise NumbaCacheError("librosa is not installed (run `make setup`)")
    return Path(list(spec.submodule_search_locations)[0])


@functools.lru_cache(maxsize=None)
def cached_modules() -> tuple[tuple[str, Path], ...]:
    """librosa's modules that compile with ``cache=True``: (module name, source file)."""
    root = _librosa_dir()
    out = []
    for src in sorted(root.rglob("*.py")):
        try:
            if "cache=True" not in src.read_text(encoding="utf-8", errors="replace"):
                continue
        except OSError:
            continue
        rel = src.relative_to(root.parent).with_suffix("")
        out.append((".".join(rel.parts), src))
    return tuple(out)


def cache_dir(src: Path) -> Path:
    """Where numba keeps the cache of ``src``: the first of its locators that applies.

    ``NUMBA_CACHE_DIR`` if set (numba's ``_UserProvidedCacheLocator``, a test checks the layout),
    else ``__pycache__`` beside the source where writable, else the user-wide cache.
    """
    parent = os.path.dirname(os.path.abspath(src))
    user = os.environ.get("NUMBA_CACHE_DIR")
    if user:
        digest = hashlib.sha1(parent.encode()).hexdigest()
        return Path(user) / f"{os.path.basename(parent)}_{digest}"
    in_tree = Path(parent) / "__pycache__"
    if os.access(in_tree if in_tree.is_dir() else parent, os.W_OK):
        return in_tree
    home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return home.joinpath("numba", *Path(parent).parts[1:])


def cache_files() -> list[Path]:
    """The numba cache files (index ``.nbi`` and data ``.nbc``) of librosa's cached modules."""
    files = []
    for _, src in cached_modules():
        d = cache_dir(src)
        if d.is_dir():
            # a function's index and data, and a gufunc's second pair (``guf-``, numba 10128)
            files += sorted(p for p in d.iterdir() if p.suffix in (".nbi", ".nbc")
                            and p.name.removeprefix("guf-").startswith(src.stem + "."))
    return files


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "-"


def stamp_path() -> Path:
    """The ready stamp for this interpreter, these versions and this cache location."""
    root = _librosa_dir()
    parts = [sys.executable, sys.version, _version("numba"), _version("llvmlite"),
             _version("librosa"), os.environ.get("NUMBA_CACHE_DIR", ""), str(root)]
    for _, src in cached_modules():
        st = src.stat()
        parts.append(f"{src.name}:{st.st_size}:{st.st_mtime_ns}")
    key = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]
    base = Path(os.environ.get(ENV_CACHE_DIR) or Path.home() / ".cache" / "ser")
    return base / "numba" / f"ready-{key}.json"


def _snapshot() -> dict[str, list[int]]:
    out = {}
    for p in cache_files():
        try:
            st = p.stat()
        except OSError:
            continue
        out[str(p)] = [st.st_size, st.st_mtime_ns]
    return out


def _stamp_ok(stamp: Path) -> bool:
    try:
        recorded = json.loads(stamp.read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    for name, (size, mtime) in recorded.items():
        try:
            st = os.stat(name)
        except OSError:
            return False
        if st.st_size != size or st.st_mtime_ns != mtime:
            return False
    # a cache file that appeared since (another version compiled beside ours) is re-checked too
    return set(_snapshot()) <= set(recorded)


# --------------------------------------------------------------------------------------------
# Building the cache
# --------------------------------------------------------------------------------------------
@contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:      # no POSIX locks (Windows): one process at a time is the user's care
        yield
        return
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _run_child() -> subprocess.CompletedProcess:
    env = dict(os.environ, **{_ENV_WARMING: "1"})
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r}); "
            "from ser import numba_cache; numba_cache.warm()")
    return subprocess.run([sys.executable, "-c", code], env=env, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _describe(proc: subprocess.CompletedProcess) -> str:
    if proc.returncode < 0:
        return f"killed by signal {-proc.returncode}"
    tail = proc.stderr.strip().splitlines()[-1:] or [""]
    return f"exit {proc.returncode}: {tail[0]}"


def _rebuild(stamp: Path) -> None:
    proc = _run_child()
    if proc.returncode != 0:
        # a poisoned cache (mixed pairs from two compilations) crashes the child: start afresh
        removed = cache_files()
        for p in removed:
            p.unlink(missing_ok=True)
        first = _describe(proc)
        proc = _run_child()
        if proc.returncode != 0:
            where = sorted({str(p.parent) for p in removed}) or ["the numba cache"]
            raise NumbaCacheError(
                f"numba could not build librosa's cache ({first}; again after removing "
                f"{len(removed)} cache files: {_describe(proc)}); remove the .nbi/.nbc files "
                f"under {', '.join(where)} and retry")
        print(f"numba cache: removed {len(removed)} broken cache files ({first}) and rebuilt "
              "them", file=sys.stderr)
    stamp.parent.mkdir(parents=True, exist_ok=True)
    tmp = stamp.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"files": _snapshot()}, indent=0))
    os.replace(tmp, stamp)


def warm() -> None:
    """Compile (or load) every cached librosa function and run the project's extraction once.

    Runs in the child process of :func:`ensure_ready`; a crash here is a poisoned cache.
    """
    import numpy as np
    for name, _ in cached_modules():
        importlib.import_module(name)
    import librosa as _librosa

    from ser.audio import SAMPLE_RATE
    from ser.features import FEATURE_SETS, extract_features, needs_encoder
    rng = np.random.default_rng(0)
    sr = SAMPLE_RATE
    t = np.arange(sr) / sr
    y = (0.3 * np.sin(2 * np.pi * 220 * t) + 0.01 * rng.standard_normal(sr)).astype(np.float32)
    # the sets computed with librosa (the encoder's are numpy, and need its weights file)
    extract_features(y, sr=sr, sets=tuple(s for s in FEATURE_SETS if not needs_encoder(s)))
    _librosa.feature.zero_crossing_rate(y)
    _librosa.piptrack(y=y, sr=sr)
    _librosa.yin(y, fmin=60, fmax=500, sr=sr)
