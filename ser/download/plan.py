"""Planning: what to place from folders, zips or download listings, and where; duplicates
dropped, entries that cannot be used refused or skipped, numbers of files checked."""
from __future__ import annotations

import os
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Iterable, Mapping

from ser.download.archives import ZipSource
from ser.download.classify import CORPORA, Classified, audio_problem, classify
from ser.download.messages import DownloadError, note, shown, warn
from ser.download.names import UnsafeName, path_problem, resolve_inside
from ser.download.summary import OTHER, Summary
from ser.files import os_reason
from ser.scan import AUDIO_EXTENSIONS

if TYPE_CHECKING:
    from ser.download.http import RemoteFile


@dataclass
class Item:
    corpus: str
    dest: Path
    key: tuple
    group: str
    label: str                                # where it comes from, for messages
    src: Path | None = None                   # a file on disk ...
    zsrc: "ZipSource | None" = None           # ... or a zip member
    member: zipfile.ZipInfo | None = None
    move: bool = False                        # src is our own staging copy: rename it
    known_hash: str | None = None             # for downloads: the repository's checksum
    remote: "RemoteFile | None" = None        # for downloads: where it comes from
    status: str | None = None                 # "new", "present", "other-format", "replace",
    #                                           "kept" (differs, not replaced without force)
    existing: Path | None = None              # the file that makes it present
    root: Path | None = None                  # the destination folder dest lies in


class Planner:
    """Collects items from folders, zips or download listings; de-duplicates; counts.

    Problems with single entries (unsafe names, unreadable folders and files) are fatal when
    ``strict`` (a :class:`DownloadError` before anything is placed); otherwise the entry is
    skipped, named in a warning and counted in the summary (``problems`` counts them).
    """

    def __init__(self, *, features_dir: Path, tess_dir: Path, corpora: Iterable[str],
                 summary: Summary, strict: bool = True):
        self.roots = {"ravdess_speech": Path(features_dir), "ravdess_song": Path(features_dir),
                      "tess": Path(tess_dir)}
        self.corpora = tuple(corpora)
        self.summary = summary
        self.strict = strict
        self.items: list[Item] = []
        self.seen: dict[tuple, Item] = {}
        self.duplicate_example = ""
        self.zips: list[ZipSource] = []
        self.entries = 0          # files and zip members looked at
        self.problems = 0         # entries skipped for a problem (see refuse)

    def refuse(self, kind: str, reason: str, msg: str, *, fatal: bool | None = None) -> None:
        """One entry cannot be used: fatal (``fatal``, by default ``strict``), or skipped,
        named in a warning and counted under ``reason``."""
        if self.strict if fatal is None else fatal:
            raise DownloadError(f"{msg}; nothing was placed (--allow-incomplete skips it)")
        warn(f"skipped {msg}")
        self.summary[kind].skipped[reason] += 1
        self.problems += 1

    def add(self, c: Classified, label: str, **source) -> Item | None:
        if c.kind == "junk":
            self.summary[OTHER].skipped["hidden or system files"] += 1
            return None
        if c.kind == "nonaudio":
            self.summary[OTHER].skipped["not audio"] += 1
            return None
        if c.kind == "bad":
            self.summary[OTHER].skipped["bad name"] += 1
            warn(f"skipped {label}: {c.reason}")
            return None
        if c.kind not in self.corpora:
            self.summary[c.kind].skipped["not selected"] += 1
            return None
        if c.rel_dest is None:    # classify gives every recording a destination: a bug
            raise DownloadError(f"{label}: no destination for a {c.kind} recording")
        root = self.roots[c.kind]
        try:
            dest = resolve_inside(root, c.rel_dest, label)
        except UnsafeName as e:
            self.refuse(c.kind, "unsafe name", str(e))
            return None
        if c.key in self.seen:    # the one seen is readable audio: it is preferred
            self.summary[c.kind].skipped["duplicate"] += 1
            if not self.duplicate_example:
                self.duplicate_example = f"{label} duplicates {self.seen[c.key].label}"
            return None
        if source.get("member") is not None:      # downloads are checked once downloaded
            why = source["zsrc"].audio_problem(source["member"])
            if why:
                self.refuse(c.kind, "not readable audio", f"{label}: {why}", fatal=False)
                return None
        elif source.get("src") is not None and not source.get("move"):
            problem = audio_problem(source["src"])
            if problem is not None:
                readable, why = problem
                self.refuse(c.kind, "not readable audio" if readable else "unreadable file",
                            f"{label}: {why}", fatal=None if not readable else False)
                return None
        item = Item(c.kind, dest, c.key, c.group, label, root=root, **source)
        self.seen[c.key] = item
        self.items.append(item)
        return item

    # ---- sources ---------------------------------------------------------------------------
    def add_tree(self, src: Path) -> None:
        """Walk ``src``: audio files and zip archives (an ``originals/`` folder is ignored).

        Symbolic links are followed only when they lead to a file inside ``src`` (links to
        folders are not followed; links out of ``src`` or to nothing are reported and
        counted); folders that cannot be read are named and counted (fatal when strict).
        """
        src = Path(src)
        if src.is_file():       # named by the user: taken even if it is a link
            self.entries += 1
            if src.suffix.lower() == ".zip":
                self.add_zip(src)
            else:
                self.add(classify(src.resolve().parts[-2:]), str(src), src=src)
            return
        real_src = os.path.realpath(src)
        # The root's own name counts as a parent folder (``--from .../OAF_angry``).
        top = tuple(n for n in Path(real_src).parts[-1:] if not n.startswith("."))

        def unreadable(e: OSError) -> None:
            self.refuse(OTHER, "unreadable folder",
                        f"{shown(e.filename)}: cannot read this folder ({os_reason(e)})")

        for dirpath, dirnames, filenames in os.walk(src, onerror=unreadable):
            d = Path(dirpath)
            rel = d.relative_to(src)
            dirnames[:] = self._folders(d, rel, dirnames, real_src, src)
            for name in sorted(filenames):
                p = d / name
                self.entries += 1
                if p.is_symlink():
                    if not self._link(p, real_src, src):
                        continue
                elif not p.is_file():     # a FIFO, socket or device: never opened
                    self.summary[OTHER].skipped["not a regular file"] += 1
                    warn(f"skipped {shown(p)}: not a regular file")
                    continue
                if name.lower().endswith(".zip") and not name.startswith("."):
                    self.add_zip(p)
                    continue
                self.add(classify((*top, *rel.parts, name)), shown(p), src=p)

    def _folders(self, d: Path, rel: Path, dirnames: list[str], real_src: str,
                 src: Path) -> list[str]:
        """The folders of ``d`` to walk into: not hidden, not links, not the top-level
        ``originals/`` (its audio files are counted as ignored)."""
        keep = []
        for name in sorted(dirnames):
            if name.startswith(".") or name == "__MACOSX":
                continue
            if (d / name).is_symlink():
                self._link(d / name, real_src, src)
                continue
            if rel == Path(".") and name == "originals":
                n = sum(1 for p in (d / name).rglob("*")
                        if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
                if n:
                    self.summary[OTHER].skipped["in originals/ (ignored: duplicates; "
                                                "--from DIR/originals imports them)"] += n
                continue
            keep.append(name)
        return keep

    def _link(self, p: Path, real_src: str, src: Path) -> bool:
        """Is the symbolic link ``p`` one to follow (to a file inside ``src``)? Else it is
        reported and counted."""
        target = os.path.realpath(p)
        if os.path.commonpath([real_src, target]) != real_src:
            kind, why = ("symbolic link leaving the source folder",
                         f"a symbolic link to {shown(target)}, outside {src}; not followed")
        elif not os.path.exists(target):
            kind, why = ("broken symbolic link", f"a symbolic link to "
                         f"{shown(os.readlink(p))}, which does not exist")
        elif os.path.isdir(target):
            kind, why = ("symbolic link to a folder (not followed)",
                         f"a symbolic link to the folder {shown(target)} (links to folders "
                         f"are not followed)")
        elif not os.path.isfile(target):
            kind, why = ("not a regular file",
                         f"a symbolic link to {shown(target)}, not a regular file")
        else:
            return True
        self.summary[OTHER].skipped[kind] += 1
        warn(f"skipped {shown(p)}: {why}")
        return False

    def add_zip(self, path: Path, *, only: str | None = None) -> None:
        """Every member of a zip; with ``only``, members of other corpora are refused.

        A member whose path is absolute, has a drive letter, ``..`` or a control character is
        refused (fatal when strict)."""
        z = ZipSource(path)
        self.zips.append(z)
        for m in z.members():
            self.entries += 1
            inner = m.filename.replace("\\", "/")
            label = f"{path.name}:{shown(inner)}"
            why = path_problem(inner)
            if why:
                self.refuse(OTHER, "unsafe name", f"{label}: unsafe member name ({why}); "
                                                  f"refused")
                continue
            c = classify(PurePosixPath(inner).parts)
            if only and c.kind in CORPORA and c.kind != only:
                self.summary[c.kind].skipped[f"unexpected in {path.name}"] += 1
                continue
            self.add(c, label, zsrc=z, member=m)

    def close(self) -> None:
        for z in self.zips:
            z.close()
        self.zips.clear()

    def report_duplicates(self) -> None:
        n = sum(self.summary[c].skipped["duplicate"] for c in CORPORA)
        if n:
            note(f"skipped {n} duplicate file(s) (same recording as an earlier file, e.g. "
                 f"{self.duplicate_example})")


def check_counts(items: list[Item], expected: Mapping[str, Mapping[str, int | None]], *,
                 strict: bool, corpora: Iterable[str],
                 consequence: str = "nothing was placed") -> bool:
    """Compare the numbers of files per corpus (and per actor) with ``expected``.

    Raises :class:`DownloadError` listing the differences (and ``consequence``) when
    ``strict``; otherwise warns. Returns True when the counts are as expected.
    """
    problems = []
    for corpus in corpora:
        exp = expected.get(corpus) or {}
        mine = [it for it in items if it.corpus == corpus]
        if not mine:
            continue
        total = exp.get("total")
        if total is not None and len(mine) != total:
            problems.append(f"{corpus} has {len(mine)} audio files, expected {total}")
        per_actor = exp.get("per_actor")
        if per_actor is not None:
            groups = Counter(it.group for it in mine)
            for g, n in sorted(groups.items()):
                if n != per_actor:
                    problems.append(f"{corpus} {g} has {n} files, expected {per_actor}")
    if not problems:
        return True
    listed = "; ".join(problems[:4]) + (f"; and {len(problems) - 4} more" if len(problems) > 4
                                        else "")
    if strict:
        raise DownloadError(f"file counts are not as expected: {listed}; {consequence} "
                            f"(--allow-incomplete imports them anyway)")
    warn(f"file counts are not as expected (importing anyway): {listed}")
    return False
