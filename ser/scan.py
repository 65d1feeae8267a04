"""Finding audio files: folders searched, with every file left out named and why."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from ser.console import info
from ser.files import os_reason

AUDIO_EXTENSIONS = (".wav", ".flac", ".aif", ".aiff", ".ogg", ".oga", ".opus", ".mp3")
"""What folder expansion takes as audio: everything libsndfile decodes that the pipeline meets,
lossless (WAV, FLAC, AIFF) and lossy (Ogg Vorbis, Opus, MP3)."""


class AudioScan(NamedTuple):
    """What :func:`scan_audio_files` found under a folder."""
    files: list[Path]                    # audio files (by extension), sorted
    left_out: list[tuple[Path, str]]     # files and folders not taken, with the reason
    unreadable: list[tuple[Path, str]]   # folders that could not be listed, with the reason


def scan_audio_files(folder: str | os.PathLike) -> AudioScan:
    """The audio files under ``folder`` (recursively, by :data:`AUDIO_EXTENSIONS`), and every
    file or folder left out, with why.

    Left out: names starting with ``.`` (a hidden folder is named once, not searched), other
    extensions, entries that are not regular files, links to folders (not followed, as
    ``Path.rglob`` does not) and broken links. A folder that cannot be listed (permission
    denied, ...) is in ``unreadable``, never dropped without a word.
    """
    import stat
    folder = Path(folder)
    files: list[Path] = []
    left_out: list[tuple[Path, str]] = []
    unreadable: list[tuple[Path, str]] = []
    stack = [folder]
    while stack:
        d = stack.pop()
        try:
            with os.scandir(d) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            unreadable.append((d, os_reason(e)))
            continue
        subdirs = []
        for e in entries:
            p = d / e.name
            try:
                is_link = e.is_symlink()
                mode = os.stat(p).st_mode        # follows a link
            except FileNotFoundError:
                left_out.append((p, "broken link (its target does not exist)"))
                continue
            except OSError as err:
                left_out.append((p, f"cannot look at it ({os_reason(err)})"))
                continue
            if stat.S_ISDIR(mode):
                if e.name.startswith("."):
                    left_out.append((p, "hidden folder, not searched"))
                elif is_link:
                    left_out.append((p, f"link to the folder {os.path.realpath(p)}, "
                                        f"not followed"))
                else:
                    subdirs.append(p)
            elif e.name.startswith("."):
                left_out.append((p, "hidden file"))
            elif not stat.S_ISREG(mode):
                left_out.append((p, "not a regular file"))
            elif p.suffix.lower() not in AUDIO_EXTENSIONS:
                left_out.append((p, f"not an audio file (audio is {', '.join(AUDIO_EXTENSIONS)})"))
            else:
                files.append(p)
        stack.extend(reversed(subdirs))
    return AudioScan(sorted(files), left_out, unreadable)


def list_audio_files(folder: str | os.PathLike) -> list[Path]:
    """All audio files (by extension) under ``folder``, recursively, sorted.

    Hidden names are left out and links to folders are not followed; what is left out, and
    folders that cannot be read, are in :func:`scan_audio_files`.
    """
    return scan_audio_files(folder).files


@dataclass
class Inputs:
    """FILE arguments with their folders expanded.

    ``entries`` keeps the arguments' order: ``(path, None)`` for a file to judge, ``(path,
    message)`` for a folder that failed (cannot be read, empty, no audio in it). ``left_out``
    names every file or folder a folder argument did not take, with the reason.
    """
    entries: list[tuple[str, str | None]]
    left_out: list[tuple[str, str]]
    folders: int = 0            # folder arguments given
    unreadable: int = 0         # folders (arguments or inside them) that could not be read

    @property
    def files(self) -> list[str]:
        return [path for path, problem in self.entries if problem is None]

    @property
    def problems(self) -> list[tuple[str, str]]:
        return [(path, problem) for path, problem in self.entries if problem is not None]


def expand_inputs(items: list[str]) -> Inputs:
    """Expand folder arguments (recursively, :func:`scan_audio_files`)."""
    entries: list[tuple[str, str | None]] = []
    left_out: list[tuple[str, str]] = []
    folders = unreadable = 0
    for item in items:
        if not os.path.isdir(item):
            entries.append((item, None))       # load_audio says what is wrong with it
            continue
        folders += 1
        scan = scan_audio_files(item)
        unreadable += len(scan.unreadable)
        for path, reason in scan.unreadable:
            entries.append((str(path), f"{path}: cannot read the folder ({reason})"))
        left_out += [(str(path), reason) for path, reason in scan.left_out]
        entries += [(str(f), None) for f in scan.files]
        if scan.files or scan.unreadable:
            continue
        if scan.left_out:
            n = len(scan.left_out)
            entries.append((item, f"{item}: no audio files ({n} other file{'s' * (n != 1)} "
                                  f"left out, named above; audio is "
                                  f"{', '.join(AUDIO_EXTENSIONS)})"))
        else:
            entries.append((item, f"{item}: empty folder (no files in it)"))
    return Inputs(entries, left_out, folders, unreadable)


def report_left_out(inputs: Inputs, what: str = "") -> None:
    """Name on stderr every file the folders of ``inputs`` left out, with the reason."""
    for path, reason in inputs.left_out:
        info(f"skipped{what}: {path}: {reason}")
