"""Zip archives: one open handle per archive, members checked as audio before use, extracted
with their time stamps, a damaged member reported as a corrupt archive."""
from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
import zipfile
import zlib
from pathlib import Path

from ser.download.messages import DownloadError, first_line, sf_reason, shown

_CORRUPT = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError)


class ZipSource:
    """An open zip archive (one handle, reused for all its members)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            self.zf = zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, OSError) as e:
            raise DownloadError(f"{self.path}: not a valid zip archive ({first_line(e)})"
                                ) from None
        self.lock = threading.Lock()

    def members(self) -> list[zipfile.ZipInfo]:
        return [m for m in self.zf.infolist() if not m.is_dir()]

    def corrupt(self, m: zipfile.ZipInfo, e: BaseException) -> DownloadError:
        return DownloadError(f"{self.path}: corrupt archive, cannot extract {shown(m.filename)} "
                             f"({first_line(e)}); nothing was placed")

    def audio_problem(self, m: zipfile.ZipInfo) -> str | None:
        """None if member ``m`` decodes as audio (``soundfile.info``), else the reason.

        The member is read whole first (into memory, or a temporary file when large), so a
        damaged member is a :class:`DownloadError` (corrupt archive), not "not audio"."""
        import soundfile as sf
        if m.file_size == 0:
            return "empty file (0 bytes)"
        with tempfile.SpooledTemporaryFile(max_size=64 << 20) as buf:
            try:
                with self.lock, self.zf.open(m) as f:
                    shutil.copyfileobj(f, buf, 1 << 20)
            except _CORRUPT as e:
                raise self.corrupt(m, e) from None
            buf.seek(0)
            try:
                info = sf.info(buf)
            except Exception as e:   # libsndfile's errors are of several types
                return f"not readable audio ({sf_reason(e)})"
        return None if info.frames > 0 else "not readable audio (no audio samples)"

    def extract(self, m: zipfile.ZipInfo, tmp: Path) -> None:
        """Member ``m`` into the file ``tmp``, with the member's time stamp."""
        try:
            with self.lock, self.zf.open(m) as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        except _CORRUPT as e:
            raise self.corrupt(m, e) from None
        t = zip_mtime(m)
        if t:
            os.utime(tmp, (t, t))

    def close(self) -> None:
        self.zf.close()


def zip_mtime(m: zipfile.ZipInfo) -> float:
    """A member's time stamp in seconds since the epoch (0 when it has none that is valid)."""
    try:
        return time.mktime((*m.date_time, 0, 0, -1))
    except (OverflowError, ValueError):
        return 0.0


def crc32(path: Path) -> int:
    """The CRC-32 of a file, as a zip records it for its members."""
    crc = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            crc = zlib.crc32(block, crc)
    return crc


def member_mode(m: zipfile.ZipInfo | None, mode: int) -> int:
    """Permissions for an extracted member: ``mode``, narrowed by the member's Unix mode."""
    if m is not None and m.create_system == 3:
        unix = (m.external_attr >> 16) & 0o777
        if unix:
            mode &= unix
    return mode
