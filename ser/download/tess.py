"""TESS's source: the Borealis Dataverse dataset doi:10.5683/SP2/E8H2MF (its native API), one
file per request into a staging folder beside ``data/tess/``, every listed name checked
before any download and every download checked as audio before anything is placed."""
from __future__ import annotations

import shutil
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Mapping

from tqdm import tqdm

from ser.download.classify import Classified, audio_problem, classify
from ser.download.http import RemoteFile, fetch, get_json
from ser.download.messages import DownloadError, note, shown
from ser.download.names import SEPARATORS, UnsafeName, check_name, path_problem, resolve_inside
from ser.download.place import place, resolve_status
from ser.download.plan import Item, Planner, check_counts
from ser.download.records import complete, write_marker
from ser.download.summary import Summary

DATAVERSE_URL = "https://borealisdata.ca"
TESS_DOI = "doi:10.5683/SP2/E8H2MF"


def _hash_name(kind: str) -> str:
    k = kind.lower().replace("-", "")
    if k not in ("md5", "sha1", "sha256", "sha512"):
        raise DownloadError(f"unsupported checksum type {kind!r} in the repository listing")
    return k


def dataverse_files(dataverse_url: str, *, timeout: float) -> list[RemoteFile]:
    """The files of the TESS dataset, with their folder (``directoryLabel``) and checksum.

    Names are returned as listed; :func:`download_tess` checks them before any use."""
    api = f"{dataverse_url}/api/datasets/:persistentId/"
    data = get_json(api, params={"persistentId": TESS_DOI}, timeout=timeout,
                    what=f"the file list of {TESS_DOI}")
    try:
        files = data["data"]["latestVersion"]["files"]
    except (KeyError, TypeError):
        raise DownloadError(f"{api}?persistentId={TESS_DOI}: the answer has no "
                            f"data.latestVersion.files") from None
    out = []
    for f in files:
        df = f.get("dataFile") or {}
        name = f.get("label") or df.get("filename")
        fid = df.get("id")
        if not name or fid is None:
            continue
        cs = df.get("checksum") or {}
        if cs.get("type") and cs.get("value"):
            known = f"{_hash_name(cs['type'])}:{cs['value']}"
        elif df.get("md5"):
            known = f"md5:{df['md5']}"
        else:
            raise DownloadError(f"{api}: {name} has no checksum in the listing")
        out.append(RemoteFile(name, f"{dataverse_url}/api/access/datafile/{fid}", known,
                              df.get("filesize"), f.get("directoryLabel") or None))
    return out


def download_tess(dv: str, *, tess_dir: Path, cache_dir: Path, summary: Summary,
                  expected: Mapping, strict: bool, retries: int, retry_wait: float,
                  timeout: float, jobs: int, progress: bool, force: bool = False) -> None:
    """TESS file by file into a staging folder beside ``tess_dir``, then into place.

    Every name of the listing is checked (:func:`check_name`, :func:`path_problem`,
    :func:`resolve_inside`) before anything is downloaded; every download is checked to be
    audio before anything is placed.
    """
    listing = dataverse_files(dv, timeout=timeout)
    planner = Planner(features_dir=tess_dir, tess_dir=tess_dir, corpora=("tess",),
                      summary=summary, strict=strict)
    staging = tess_dir.parent / f".{tess_dir.name}.download.tmp"
    items = _plan(listing, planner, staging, tess_dir)
    planner.report_duplicates()
    if not items:
        raise DownloadError(f"{dv}: the dataset {TESS_DOI} lists no TESS audio files")
    verified = check_counts(items, expected, strict=strict, corpora=("tess",),
                            consequence="tess was not downloaded")
    # Which files are needed at all (already in place: no download; differing: only with
    # force).
    resolve_status(items, summary)
    need = [it for it in items if it.status == "new" or (force and it.status == "replace")]
    if need:
        note(f"tess: downloading {len(need)} of {len(items)} files from {dv} "
             f"({TESS_DOI}) into {staging}")
        _fetch_all(need, staging=staging, tess_dir=tess_dir, retries=retries,
                   retry_wait=retry_wait, timeout=timeout, jobs=jobs, progress=progress)
        _check_audio(need, items, planner, strict=strict, tess_dir=tess_dir)
    elif all(it.status == "present" for it in items):
        note(f"tess: all {len(items)} files are already in {tess_dir} (checksums verified), "
             f"no download")
    place(items, summary, force=force, progress=progress, desc="placing tess")
    shutil.rmtree(staging, ignore_errors=True)
    if complete(planner, items):
        write_marker(cache_dir, "tess", tess_dir, items, f"{dv} {TESS_DOI}", verified)


def _plan(listing: list[RemoteFile], planner: Planner, staging: Path,
          tess_dir: Path) -> list[Item]:
    """The items of the listing whose names are safe, each to be downloaded into
    ``staging`` at its path below ``tess_dir``."""
    items: list[Item] = []
    for rf in listing:
        where = f"{TESS_DOI} listing entry {rf.url}"
        try:
            check_name(rf.name, where, "label")
            why = path_problem(rf.folder) if rf.folder is not None else None
            if why:
                raise UnsafeName(f"{where}: unsafe directoryLabel '{shown(rf.folder)}' "
                                 f"({why}); refused")
        except UnsafeName as e:
            planner.refuse("tess", "unsafe name", str(e))
            continue
        folders = [f for f in SEPARATORS.split(rf.folder or "") if f not in ("", ".")]
        parts = (folders[-1], rf.name) if folders else (rf.name,)
        c = classify(parts)
        if c.kind in ("ravdess_speech", "ravdess_song"):
            c = Classified("bad", reason=f"{rf.name}: not a TESS file")
        it = planner.add(c, f"{TESS_DOI}:{'/'.join(parts)} ({rf.url})",
                         known_hash=rf.known_hash)
        if it is not None:
            it.src = resolve_inside(staging, it.dest.relative_to(tess_dir).parts, where)
            it.move = True
            items.append(it)
            it.remote = rf
    return items


def _fetch_all(need: list[Item], *, staging: Path, tess_dir: Path, retries: int,
               retry_wait: float, timeout: float, jobs: int, progress: bool) -> None:
    """Download every item of ``need`` to its ``src`` in ``staging``, ``jobs`` at a time;
    after a failure the downloads not yet started are cancelled, and the first failure is
    raised (what arrived is kept for the next run)."""
    errors: list[str] = []
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {pool.submit(fetch, it.remote, it.src.parent, fname=it.src.name,
                               retries=retries, retry_wait=retry_wait, timeout=timeout,
                               progress=False): it
                   for it in need}
        with tqdm(total=len(futures), desc="tess", unit="file", disable=not progress,
                  file=sys.stderr) as bar:
            for fut in as_completed(futures):
                try:
                    fut.result()
                except DownloadError as e:
                    errors.append(str(e))
                    for f in futures:
                        f.cancel()
                bar.update(1)
    if errors:
        more = f" (and {len(errors) - 1} more failures)" if len(errors) > 1 else ""
        raise DownloadError(f"tess: {errors[0]}{more}; files downloaded so far are kept "
                            f"in {staging}, nothing was placed in {tess_dir}")


def _check_audio(need: list[Item], items: list[Item], planner: Planner, *, strict: bool,
                 tess_dir: Path) -> None:
    """Each download of ``need`` must decode as audio (the checksum is the server's word):
    else fatal when ``strict``, or deleted, skipped and dropped from ``items``."""
    for it in need:
        problem = audio_problem(it.src)
        if problem is None:
            continue
        it.src.unlink(missing_ok=True)
        if strict:
            raise DownloadError(f"tess: {it.label}: downloaded, but {problem[1]}; nothing "
                                f"was placed in {tess_dir} (--allow-incomplete skips it)")
        planner.refuse("tess", "not readable audio", f"{it.label}: {problem[1]}")
        items.remove(it)
