"""Name safety: a name from a listing or an archive is used only if it is one plain name, and
every destination is resolved inside its root (:func:`resolve_inside`)."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable

from ser.download.messages import DownloadError, shown

DRIVE = re.compile(r"^[A-Za-z]:")
SEPARATORS = re.compile(r"[/\\]")


class UnsafeName(DownloadError):
    """A name from a listing or an archive that is not one plain name inside its destination."""


def name_problem(name: object) -> str | None:
    """Why ``name`` cannot be used as one file or folder name (None: it can)."""
    if not isinstance(name, str):
        return f"not a string but {type(name).__name__}"
    if not name:
        return "empty"
    if "\0" in name:
        return "contains a NUL character"
    if name.startswith(("/", "\\")):
        return "an absolute path"
    if DRIVE.match(name):
        return "starts with a drive letter"
    if ".." in SEPARATORS.split(name):
        return "contains '..'"
    if SEPARATORS.search(name):
        return "contains a path separator"
    if name == ".":
        return "is '.'"
    if not name.isprintable():
        return "contains a control character"
    return None


def check_name(name: object, where: str, what: str = "name") -> str:
    """``name`` if it is one plain file or folder name, else :class:`UnsafeName`."""
    why = name_problem(name)
    if why:
        raise UnsafeName(f"{where}: unsafe {what} '{shown(name)}' ({why}); refused")
    return name   # type: ignore[return-value]


def path_problem(path: str) -> str | None:
    """Why a relative path of ``/``-separated names (an archive member, a Dataverse
    ``directoryLabel``) cannot be used: absolute, a drive letter, ``..``, NUL, control
    characters. Empty and ``.`` components are allowed (they name nothing)."""
    if not isinstance(path, str):
        return f"not a string but {type(path).__name__}"
    if path.startswith(("/", "\\")):
        return "an absolute path"
    for part in SEPARATORS.split(path):
        if part in ("", "."):
            continue
        why = name_problem(part)
        if why:
            return why
    return None


def resolve_inside(root: str | os.PathLike, parts: Iterable[str], where: str) -> Path:
    """The destination ``root/parts...`` of an entry, checked: every part one plain name
    (:func:`name_problem`), and the resolved path (symbolic links followed) inside the
    resolved ``root``. The one resolver of every destination (folders, archives, listings).

    Raises :class:`UnsafeName` with a line naming ``where`` (the entry).
    """
    parts = tuple(parts)
    for part in parts:
        check_name(part, where)
    root = Path(root)
    dest = root.joinpath(*parts)
    real_root, real = os.path.realpath(root), os.path.realpath(dest)
    if real == real_root or os.path.commonpath([real_root, real]) != real_root:
        raise UnsafeName(f"{where}: destination {dest} resolves to {real}, outside {root}; "
                         f"refused")
    return dest
