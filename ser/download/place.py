"""Placing: which planned files are already in place, keeping a differing file unless
``--force`` (then the old one goes to ``.previous/``), and putting the others in place
through a staging folder or a temporary name, never with wider permissions."""
from __future__ import annotations

import errno
import os
import shutil
import stat
import sys
import tempfile
import time
from pathlib import Path

from tqdm import tqdm

from ser.download.archives import crc32, member_mode, zip_mtime
from ser.download.messages import DownloadError, warn
from ser.download.plan import Item
from ser.download.summary import Summary
from ser.files import atomic_path
from ser.scan import AUDIO_EXTENSIONS

STAGING_PREFIX = "download_data-"
PREVIOUS_DIR = ".previous"   # under a destination: files replaced by --force
KEPT = "differs from the file in place (kept; --force replaces it)"

_UMASK: int | None = None


def file_mode() -> int:
    """The permissions of a new file under this process's umask (never executable)."""
    global _UMASK
    if _UMASK is None:
        _UMASK = os.umask(0o022)
        os.umask(_UMASK)
    return 0o666 & ~_UMASK


def _same_content(a: Path, b: Path) -> bool:
    import filecmp
    return filecmp.cmp(a, b, shallow=False)


def _is_present(item: Item, dest_stat: os.stat_result) -> bool:
    """Is ``item.dest`` (which exists) already the same file as the source?"""
    if item.member is not None:
        m = item.member
        if dest_stat.st_size != m.file_size:
            return False
        if int(dest_stat.st_mtime) == int(zip_mtime(m)):
            return True
        return crc32(item.dest) == m.CRC
    if item.known_hash is not None:
        import pooch
        return pooch.file_hash(str(item.dest), alg=item.known_hash.split(":")[0]) \
            == item.known_hash.split(":")[-1].lower()
    if item.src is None:      # neither a zip member, a checksum nor a local file: a bug
        raise DownloadError(f"{item.dest}: nothing to compare it with (no source file)")
    s = item.src.stat()
    if s.st_size != dest_stat.st_size:
        return False
    return s.st_mtime_ns == dest_stat.st_mtime_ns or _same_content(item.src, item.dest)


class _DirIndex:
    """Lower-cased stems of the files already in destination folders (listed once each)."""

    def __init__(self) -> None:
        self.cache: dict[Path, dict[str, str]] = {}

    def other_format(self, dest: Path) -> Path | None:
        folder = dest.parent
        if folder not in self.cache:
            idx: dict[str, str] = {}
            if folder.is_dir():
                for p in folder.iterdir():
                    if p.suffix.lower() in AUDIO_EXTENSIONS and not p.name.startswith("."):
                        idx.setdefault(p.name.split(".")[0].lower(), p.name)
            self.cache[folder] = idx
        have = self.cache[folder].get(dest.name.split(".")[0].lower())
        if have is not None and have != dest.name:
            return folder / have
        return None


def resolve_status(items: list[Item], summary: Summary) -> None:
    """Mark each item ``present``, ``other-format`` (skipped), ``replace`` or ``new``."""
    index = _DirIndex()
    for it in items:
        if it.status is not None:
            continue
        it.status = "new"
        try:
            st = it.dest.stat()
        except FileNotFoundError:
            st = None
        if st is not None:
            if _is_present(it, st):
                it.status, it.existing = "present", it.dest
            else:
                it.status = "replace"
            continue
        other = index.other_format(it.dest)
        if other is not None:
            it.status, it.existing = "other-format", other


class _Backups:
    """Where ``--force`` keeps the files it replaces: ``<root>/.previous/<date-time>/``,
    one folder per run and destination, the file's path below the root unchanged."""

    def __init__(self) -> None:
        self.dirs: dict[Path, Path] = {}

    def keep(self, it: Item) -> Path:
        """Keep the file at ``it.dest``; returns the folder of this run's kept files."""
        root = it.root if it.root is not None else it.dest.parent.parent
        if root not in self.dirs:
            base = root / PREVIOUS_DIR / time.strftime("%Y%m%d-%H%M%S")
            d, n = base, 1
            while d.exists():
                n += 1
                d = base.with_name(f"{base.name}-{n}")
            self.dirs[root] = d
        kept = self.dirs[root] / it.dest.relative_to(root)
        kept.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(it.dest, kept)        # the old file stays whole: the name is replaced
        except OSError:
            shutil.copy2(it.dest, kept)
        return self.dirs[root]


def place(items: list[Item], summary: Summary, *, force: bool = False, progress: bool = True,
          desc: str = "placing") -> None:
    """Put every item in place; zip members go through a staging folder first.

    Nothing from a zip reaches its destination unless every needed member of every zip was
    read back with a correct CRC. Single files are copied under a temporary name and renamed.
    A file in place that differs is kept (status ``kept``, reported) unless ``force``; then
    the old one is kept under ``<root>/.previous/<date-time>/`` before it is replaced.
    """
    resolve_status(items, summary)
    todo = []
    for it in items:
        st = summary[it.corpus]
        if it.status == "present":
            st.present += 1
        elif it.status == "other-format":
            st.skipped["already present in another format"] += 1
        elif it.status in ("replace", "kept") and not force:
            it.status = "kept"
            st.skipped[KEPT] += 1
            warn(f"kept {it.dest}: it differs from {it.label}; --force replaces it (and keeps "
                 f"this one under {(it.root or it.dest.parent.parent) / PREVIOUS_DIR})")
        else:
            todo.append(it)
    if not todo:
        return
    staging_dirs: list[Path] = []
    try:
        staged = _stage_members(todo, staging_dirs, progress)
        _put_in_place(todo, staged, summary, progress=progress, desc=desc)
    finally:
        for d in staging_dirs:
            shutil.rmtree(d, ignore_errors=True)


def _stage_members(todo: list[Item], staging_dirs: list[Path], progress: bool
                   ) -> dict[int, Path]:
    """Extract the zip members of ``todo`` into staging folders beside their destinations
    (appended to ``staging_dirs``); returns where each went, by ``id`` of its item."""
    staged: dict[int, Path] = {}
    zipped = [it for it in todo if it.member is not None]
    if not zipped:
        return staged
    roots: dict[Path, Path] = {}
    for it in tqdm(zipped, desc="extracting", unit="file", disable=not progress,
                   file=sys.stderr):
        root = it.dest.parent.parent       # features_dir or tess_dir
        if root not in roots:             # staging folder beside it
            root.parent.mkdir(parents=True, exist_ok=True)
            roots[root] = Path(tempfile.mkdtemp(prefix=f".{root.name}{STAGING_PREFIX}",
                                                suffix=".tmp", dir=root.parent))
            staging_dirs.append(roots[root])
        tmp = roots[root] / it.dest.parent.name / it.dest.name
        tmp.parent.mkdir(exist_ok=True)
        it.zsrc.extract(it.member, tmp)
        staged[id(it)] = tmp
    return staged


def _put_in_place(todo: list[Item], staged: dict[int, Path], summary: Summary, *,
                  progress: bool, desc: str) -> None:
    """Each item of ``todo`` onto its destination (a differing file first kept in
    ``.previous/``): staged members and staging copies renamed, other files copied."""
    backups = _Backups()
    for it in tqdm(todo, desc=desc, unit="file", disable=not progress, file=sys.stderr):
        it.dest.parent.mkdir(parents=True, exist_ok=True)
        st = summary[it.corpus]
        if it.status in ("replace", "kept") and it.dest.exists():
            st.backup = str(backups.keep(it))
        if id(it) in staged:
            _move_into_place(staged[id(it)], it.dest, member_mode(it.member, file_mode()))
        elif it.move:
            _move_into_place(it.src, it.dest, file_mode())
        else:
            _copy_into_place(it.src, it.dest)
        st.placed += 1
        if it.status in ("replace", "kept"):
            st.replaced += 1
        it.status, it.existing = "placed", it.dest


def _copy_into_place(src: Path, dest: Path) -> None:
    """Copy ``src`` (followed if a link) onto ``dest``; never with wider permissions."""
    with open(src, "rb") as f:
        s = os.fstat(f.fileno())
        with atomic_path(dest) as tmp:
            with open(tmp, "wb") as out:
                shutil.copyfileobj(f, out, 1 << 20)
            os.chmod(tmp, file_mode() & stat.S_IMODE(s.st_mode))
            os.utime(tmp, ns=(s.st_atime_ns, s.st_mtime_ns))


def _move_into_place(src: Path, dest: Path, mode: int) -> None:
    os.chmod(src, mode)
    try:
        os.replace(src, dest)
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
        _copy_into_place(src, dest)
        src.unlink()
