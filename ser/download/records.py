"""Completion records in the cache folder: a corpus downloaded and placed whole is not
fetched again while its files are unchanged."""
from __future__ import annotations

import json
from pathlib import Path

from ser.download.plan import Item, Planner
from ser.files import write_json


def marker_path(cache_dir: Path, corpus: str) -> Path:
    return cache_dir / f"{corpus}.complete.json"


def write_marker(cache_dir: Path, corpus: str, root: Path, items: list[Item],
                 source: str, verified: bool) -> None:
    files = {}
    for it in items:
        p = it.existing or it.dest
        s = p.stat()
        files[p.relative_to(root).as_posix()] = [s.st_size, s.st_mtime_ns]
    write_json(marker_path(cache_dir, corpus),
               {"corpus": corpus, "source": source, "dest": str(root.resolve()),
                "counts_verified": verified, "files": files})


def marker_ok(cache_dir: Path, corpus: str, root: Path, *, strict: bool) -> int:
    """Number of files if the marker of ``corpus`` still matches ``root``, else 0.

    A marker written by a run that accepted wrong counts is not trusted by a ``strict`` run.
    """
    p = marker_path(cache_dir, corpus)
    try:
        m = json.loads(p.read_text())
        if m.get("dest") != str(root.resolve()) or not m.get("files"):
            return 0
        if strict and not m.get("counts_verified"):
            return 0
        for rel, (size, mtime_ns) in m["files"].items():
            s = (root / rel).stat()
            if s.st_size != size or s.st_mtime_ns != mtime_ns:
                return 0
        return len(m["files"])
    except (OSError, ValueError, TypeError, KeyError):
        return 0


def complete(planner: Planner, items: list[Item]) -> bool:
    """Is every entry of the source in place (so a completion record may be written)?"""
    return not planner.problems and not any(it.status == "kept" for it in items)
