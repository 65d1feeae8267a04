"""RAVDESS's source: the two audio-only zips of Zenodo record 1188976 (its record API), each
downloaded into the cache, checked, and its members planned and placed under
``features/Actor_XX/``."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

from ser.download.http import RemoteFile, fetch, get_json, rebase
from ser.download.messages import DownloadError, note
from ser.download.place import place
from ser.download.plan import Planner, check_counts
from ser.download.records import complete, write_marker
from ser.download.summary import Summary

ZENODO_URL = "https://zenodo.org"
ZENODO_RECORD = 1188976
ARCHIVES = {"ravdess_speech": "Audio_Speech_Actors_01-24.zip",
            "ravdess_song": "Audio_Song_Actors_01-24.zip"}


def _human(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    return f"{n / 1024:.1f} KiB" if n < 2 ** 20 else f"{n / 2 ** 20:.1f} MiB"


def zenodo_files(zenodo_url: str, *, timeout: float) -> dict[str, RemoteFile]:
    """The files of Zenodo record 1188976 (legacy and InvenioRDM answer shapes)."""
    api = f"{zenodo_url}/api/records/{ZENODO_RECORD}"
    data = get_json(api, timeout=timeout, what=f"the file list of Zenodo record "
                                                f"{ZENODO_RECORD}")
    files = data.get("files")
    if isinstance(files, dict):            # {"entries": {name: {...}}} variant
        files = list((files.get("entries") or {}).values())
    if not isinstance(files, list):
        raise DownloadError(f"{api}: the answer lists no files")
    out = {}
    for f in files:
        name = f.get("key") or f.get("filename")
        checksum = f.get("checksum")
        if not name or not checksum:
            continue
        if ":" not in checksum:
            checksum = f"md5:{checksum}"
        links = f.get("links") or {}
        link = (links.get("content") or links.get("self") or links.get("download")
                or f"/records/{ZENODO_RECORD}/files/{name}?download=1")
        if link.rstrip("/").endswith(f"/api/records/{ZENODO_RECORD}/files/{name}"):
            link = link.rstrip("/") + "/content"   # InvenioRDM: that one is the metadata
        size = f.get("size", f.get("filesize"))
        out[name] = RemoteFile(name, rebase(link, zenodo_url, ZENODO_URL), checksum,
                               int(size) if size is not None else None)
    return out


def download_ravdess(corpus: str, listing: Mapping[str, RemoteFile], zen: str, *,
                     features_dir: Path, tess_dir: Path, cache_dir: Path, summary: Summary,
                     expected: Mapping, strict: bool, retries: int, retry_wait: float,
                     timeout: float, progress: bool, force: bool,
                     remove_archives: bool) -> None:
    """The zip of ``corpus`` (``ravdess_speech`` or ``ravdess_song``) from ``listing`` (the
    record's files at ``zen``) into ``cache_dir``, reused when its checksum matches; then its
    members into ``features_dir``, and a completion record when all of them are in place."""
    name = ARCHIVES[corpus]
    rf = listing.get(name)
    if rf is None:
        raise DownloadError(f"{name} is not listed in Zenodo record {ZENODO_RECORD} at "
                            f"{zen} (listed: {', '.join(sorted(listing)) or 'nothing'})")
    size = f" ({_human(rf.size)})" if rf.size else ""
    cached = (cache_dir / name).exists()
    if not cached:
        note(f"{corpus}: downloading {name}{size} from {rf.url}")
    path, downloaded = fetch(rf, cache_dir, retries=retries, retry_wait=retry_wait,
                             timeout=timeout, progress=progress)
    if cached and not downloaded:
        note(f"{corpus}: reusing {path} (checksum verified, no download)")
    elif cached:
        note(f"{corpus}: {path} did not match its checksum; downloaded it again")
    planner = Planner(features_dir=features_dir, tess_dir=tess_dir, corpora=(corpus,),
                      summary=summary, strict=strict)
    try:
        planner.add_zip(path, only=corpus)
        planner.report_duplicates()
        verified = check_counts(planner.items, expected, strict=strict, corpora=(corpus,),
                                consequence=f"{corpus} was not placed")
        if not planner.items:
            raise DownloadError(f"{path}: no {corpus} audio files in the archive")
        place(planner.items, summary, force=force, progress=progress,
              desc=f"placing {corpus}")
    finally:
        planner.close()
    if complete(planner, planner.items):
        write_marker(cache_dir, corpus, features_dir, planner.items, rf.url, verified)
    if remove_archives:
        path.unlink()
