"""Generic fetching over HTTP: JSON listings, and files downloaded with pooch, resumed with
``Range`` requests after a cut connection and checked against the repository's checksum."""
from __future__ import annotations

import os
import re
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

from tqdm import tqdm

from ser.download.messages import DownloadError, first_line, warn
from ser.download.names import check_name
from ser.errors import SerError

USER_AGENT = "ser-download_data/1 (python-requests)"

_local = threading.local()


def session():
    """One ``requests.Session`` per thread."""
    import requests
    s = getattr(_local, "session", None)
    if s is None:
        s = requests.Session()
        s.headers["User-Agent"] = USER_AGENT
        _local.session = s
    return s


def get_json(url: str, *, params: dict | None = None, timeout: float, what: str) -> dict:
    import requests
    try:
        r = session().get(url, params=params, timeout=(min(timeout, 30), timeout))
        r.raise_for_status()
        return r.json()
    except requests.HTTPError as e:
        raise DownloadError(f"cannot get {what} from {url}: HTTP {e.response.status_code} "
                            f"{e.response.reason}") from None
    except requests.RequestException as e:
        raise DownloadError(f"cannot get {what} from {url}: {first_line(e)}") from None
    except ValueError:
        raise DownloadError(f"cannot get {what} from {url}: the answer is not JSON") from None


_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


def parse_content_range(value: str | None) -> tuple[int, int, int | None] | None:
    """``"bytes 100-199/1000"`` -> ``(100, 199, 1000)``; anything else -> None."""
    m = _CONTENT_RANGE.match(value or "")
    if not m:
        return None
    return int(m.group(1)), int(m.group(2)), None if m.group(3) == "*" else int(m.group(3))


class _Incomplete(SerError):
    pass


class ResumableDownloader:
    """A pooch downloader that keeps a ``.part`` file and continues it with HTTP ``Range``.

    ``downloader(url, output_file, pooch)`` fills ``part_path`` (resuming what is there),
    retrying cut connections up to ``retries`` times in a row without progress, then renames
    the complete ``.part`` onto pooch's temporary ``output_file``; pooch then checks the hash
    and moves it under the final name. If the connection cannot be recovered the ``.part``
    stays, so the next run resumes it. (What arrived after the last complete chunk of a cut
    connection is lost, so a resume starts at a multiple of ``chunk_size``.)
    """

    chunk_size = 1 << 16

    def __init__(self, part_path: str | os.PathLike, *, size: int | None = None,
                 retries: int = 5, retry_wait: float = 1.0, timeout: float = 60.0,
                 progress: bool = True, desc: str | None = None):
        self.part = Path(part_path)
        self.size = size
        self.retries = retries
        self.retry_wait = retry_wait
        self.timeout = timeout
        self.progress = progress
        self.desc = desc or self.part.name.removesuffix(".part")
        self.called = False
        self.resumed = False

    def __call__(self, url: str, output_file, pooch=None, check_only: bool = False):
        import requests
        if check_only:
            r = session().head(url, timeout=self.timeout, allow_redirects=True)
            return r.status_code == 200
        self.called = True
        self.part.parent.mkdir(parents=True, exist_ok=True)
        total = self.size
        failures = 0
        bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=self.desc,
                   disable=not self.progress, file=sys.stderr, leave=False)
        try:
            while True:
                have = self.part.stat().st_size if self.part.exists() else 0
                if total is not None and have > total:
                    self.part.unlink()
                    have = 0
                if total is not None and have == total and have > 0:
                    break
                got = 0
                try:
                    headers = {"Accept-Encoding": "identity"}
                    if have:
                        headers["Range"] = f"bytes={have}-"
                    with session().get(url, headers=headers, stream=True,
                                        timeout=(min(self.timeout, 30), self.timeout)) as r:
                        if r.status_code == 416 and have:
                            m = re.search(r"/(\d+)\s*$", r.headers.get("Content-Range", ""))
                            if m and int(m.group(1)) == have:
                                total = have   # the part was complete
                                break
                            self.part.unlink()  # longer than the file: start over
                            continue
                        if r.status_code >= 500 or r.status_code == 429:
                            raise _Incomplete(f"HTTP {r.status_code} {r.reason}")
                        if r.status_code >= 400:
                            raise DownloadError(f"{self.desc}: HTTP {r.status_code} {r.reason} "
                                                f"for {url}")
                        if have and r.status_code == 206:
                            cr = parse_content_range(r.headers.get("Content-Range"))
                            if cr is None or cr[0] != have:
                                self.part.unlink()  # another range came back: start over
                                continue
                            mode = "ab"
                            total = cr[2] if cr[2] is not None else total
                            self.resumed = True
                        else:
                            mode, have = "wb", 0
                            n = r.headers.get("Content-Length")
                            if n is not None and n.isdigit():
                                total = int(n)
                        bar.reset(total=total)
                        bar.update(have)
                        with open(self.part, mode) as f:
                            for chunk in r.iter_content(chunk_size=self.chunk_size):
                                f.write(chunk)
                                got += len(chunk)
                                bar.update(len(chunk))
                    size = self.part.stat().st_size
                    if total is not None and size < total:
                        raise _Incomplete(f"connection closed at {size} of {total} bytes")
                    break
                except (requests.ConnectionError, requests.Timeout,
                        requests.exceptions.ChunkedEncodingError, _Incomplete) as e:
                    failures = 1 if got else failures + 1
                    have = self.part.stat().st_size if self.part.exists() else 0
                    if failures > self.retries:
                        where = f"{have} of {total} bytes" if total else f"{have} bytes"
                        raise DownloadError(
                            f"{self.desc}: download interrupted after {where} "
                            f"({first_line(e)}); "
                            f"the partial file {self.part} is kept, run again to resume"
                        ) from None
                    time.sleep(min(self.retry_wait * 2 ** (failures - 1), 30))
                except requests.RequestException as e:
                    raise DownloadError(f"{self.desc}: {first_line(e)} ({url})") from None
        finally:
            bar.close()
        os.replace(self.part, output_file)


@dataclass
class RemoteFile:
    name: str
    url: str
    known_hash: str
    size: int | None = None
    folder: str | None = None   # Dataverse directoryLabel as listed (unchecked)


def fetch(rf: RemoteFile, dest_dir: Path, *, fname: str | None = None, retries: int,
          retry_wait: float, timeout: float, progress: bool) -> tuple[Path, bool]:
    """Download ``rf`` into ``dest_dir`` with pooch (verified); reuse a verified copy.

    ``fname`` (default ``rf.name``) is the file name in ``dest_dir``: one plain name, else
    :class:`UnsafeName`. Returns ``(path, downloaded)``.
    """
    import pooch
    pooch.get_logger().setLevel("WARNING")
    fname = check_name(rf.name if fname is None else fname, rf.url, "file name")
    for attempt in (1, 2):
        dl = ResumableDownloader(dest_dir / f"{fname}.part", size=rf.size, retries=retries,
                                 retry_wait=retry_wait, timeout=timeout, progress=progress,
                                 desc=fname)
        try:
            path = pooch.retrieve(rf.url, rf.known_hash, fname=fname, path=dest_dir,
                                  downloader=dl)
            return Path(path), dl.called
        except ValueError as e:
            msg = str(e)
            if "hash" not in msg.lower():
                raise DownloadError(f"{rf.name}: {first_line(e)}") from None
            if attempt == 1 and dl.resumed:
                warn(f"{rf.name}: checksum mismatch after resuming; downloading it again "
                      f"from the start")
                continue
            got = re.search(r"but got (\w+)", msg)
            raise DownloadError(
                f"{rf.name}: checksum mismatch (expected {rf.known_hash}"
                f"{', got ' + got.group(1) if got else ''}); the corrupt download was deleted "
                f"and nothing was placed") from None
    raise AssertionError("unreachable")



def rebase(link: str, base: str, default: str) -> str:
    """Point a link of the API's answer at ``base`` when a mirror replaces ``default``.

    Relative links are joined to ``base``; absolute links to the default host are moved to
    ``base``; links to any other host are kept.
    """
    base = base.rstrip("/")
    default = default.rstrip("/")
    if "://" not in link:
        return urljoin(base + "/", link.lstrip("/"))
    if base != default and (link == default or link.startswith(default + "/")):
        return base + link[len(default):]
    return link

