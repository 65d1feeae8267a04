"""Getting the RAVDESS and TESS corpora into the layout the pipeline reads (download_data.py).

Two ways in:

``download(...)`` (``python download_data.py``)
    Downloads RAVDESS audio-only (Zenodo record 1188976: ``Audio_Speech_Actors_01-24.zip``,
    ``Audio_Song_Actors_01-24.zip``) and TESS (Borealis Dataverse, doi:10.5683/SP2/E8H2MF, one
    request per file through the Dataverse native API). Every download is checked against the
    checksum the repository lists; a cut connection resumes with an HTTP ``Range`` request from
    the kept ``.part`` file (also on the next run).

``import_local(DIR)`` (``python download_data.py --from DIR``)
    Imports local copies: the official zips, a TESS zip, unpacked folders, or the project's
    shared layout (``ravdess_speech/Actor_XX``, ``ravdess_song/Actor_XX``, ``tess/<FOLDER>``).
    Every audio file under ``DIR`` (and inside any zip there) is classified by its name.

Where files go (names are never changed, files are never modified):

* RAVDESS speech and song of actor ``XX`` -> ``features/Actor_XX/`` (``--features-dir``);
* TESS -> ``data/tess/<original folder>/<original name>`` (``--tess-dir``), read by
  ``tess_pipeline.py``.

Safety: archives are extracted into a temporary folder beside the destination and moved into
place only once every member has been read and checked; single files are copied under a
temporary name and renamed. Counts of audio files are checked before anything is placed
(RAVDESS: 60 speech and 44 song files per actor present, 1440 and 1012 in the official zips;
TESS: 2800). A second run changes nothing: files that are already in place (same size and
time stamp, or same content) are left alone, and a completed download is remembered in the
cache folder so a re-run does not even contact the servers.

Hostile or broken input:

* every destination goes through one resolver (:func:`resolve_inside`): a name from a
  listing (Dataverse ``label``, each folder of ``directoryLabel``) or an archive member with a
  path separator, ``..``, an absolute path, a drive letter, NUL or another control character
  is refused on one line naming the entry, and the resolved destination (symbolic links
  followed) must lie inside ``--features-dir`` / ``--tess-dir``;
* a file becomes corpus audio only if ``soundfile.info`` reads it (downloads: after the
  download); of two files of the same recording in one source the readable one is taken;
* a symbolic link in a ``--from`` folder that leads out of that folder (or nowhere) is not
  followed; a placed file never has wider permissions than its source (and is never
  executable);
* a file in place that differs from the incoming one is kept, and said so, unless
  ``--force``: then it is replaced and the old one kept under
  ``<destination>/.previous/<date-time>/`` (a hidden folder the pipeline does not read);
* folders and files that cannot be read are named with the reason (e.g. permission denied).

Unsafe names and unreadable folders or files are fatal in the default strict mode (nothing is
placed); with ``--allow-incomplete`` they are skipped, and the summary counts them. An empty
source, or one where every file was skipped, is an error (exit 1).

The package, one module per concern (each imports only those above it):

* :mod:`~ser.download.messages`: the one-line :class:`DownloadError`, warnings and notes;
* :mod:`~ser.download.names`: name safety (:func:`resolve_inside`, :class:`UnsafeName`);
* :mod:`~ser.download.classify`: what a file is (corpus, recording, destination, audio);
* :mod:`~ser.download.summary`: the counts of a run (:class:`Summary`);
* :mod:`~ser.download.archives`: zip archives;
* :mod:`~ser.download.http`: generic fetching (resumable, checksummed downloads);
* :mod:`~ser.download.plan`: what to place and where (:class:`Planner`), counts checked;
* :mod:`~ser.download.place`: putting files in place (present, kept, replaced, staged);
* :mod:`~ser.download.records`: completion records in the cache folder;
* :mod:`~ser.download.ravdess`, :mod:`~ser.download.tess`: each corpus's source (Zenodo's
  record API, Dataverse's native API) and how its files are planned and placed;
* this module: :func:`download` and :func:`import_local`, the public face."""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Iterable, Mapping

from ser.corpora import RAVDESS_SPEECH_PER_ACTOR, TESS_FILES
from ser.download.archives import ZipSource
from ser.download.classify import CORPORA, TESS_FOLDERS, Classified, audio_problem, classify
from ser.download.http import (
    USER_AGENT,
    RemoteFile,
    ResumableDownloader,
    fetch,
    parse_content_range,
    rebase,
)
from ser.download.messages import PROG, DownloadError, first_line, note
from ser.download.names import UnsafeName, check_name, name_problem, path_problem, resolve_inside
from ser.download.place import KEPT, PREVIOUS_DIR, STAGING_PREFIX, place, resolve_status
from ser.download.plan import Item, Planner, check_counts
from ser.download.ravdess import (
    ARCHIVES,
    ZENODO_RECORD,
    ZENODO_URL,
    download_ravdess,
    zenodo_files,
)
from ser.download.records import marker_ok, marker_path
from ser.download.summary import OTHER, Stats, Summary
from ser.download.tess import DATAVERSE_URL, TESS_DOI, dataverse_files, download_tess
from ser.paths import DATA_DIR, FEATURES_DIR, TESS_SOURCE_DIR

__all__ = [
    "ARCHIVES", "CORPORA", "DATAVERSE_URL", "DOWNLOAD_DIR", "DOWNLOAD_EXPECTED", "ENV_BASE_URL",
    "ENV_DATAVERSE_URL", "ENV_ZENODO_URL", "KEPT", "LOCAL_EXPECTED", "OTHER", "PREVIOUS_DIR",
    "PROG", "STAGING_PREFIX", "TESS_DOI", "TESS_FOLDERS", "USER_AGENT", "ZENODO_RECORD",
    "ZENODO_URL", "Classified", "DownloadError", "Item", "Planner", "RemoteFile",
    "ResumableDownloader", "Stats", "Summary", "UnsafeName", "ZipSource", "audio_problem",
    "check_counts", "check_name", "classify", "dataverse_files", "download", "fetch",
    "first_line", "import_local", "name_problem", "parse_content_range", "path_problem",
    "place", "rebase", "resolve_inside", "resolve_status", "resolve_urls", "zenodo_files",
]

DOWNLOAD_DIR = DATA_DIR / "downloads"
ENV_BASE_URL = "SER_BASE_URL"
ENV_ZENODO_URL = "SER_ZENODO_URL"
ENV_DATAVERSE_URL = "SER_DATAVERSE_URL"

# Expected numbers of audio files. ``total``: the whole corpus; ``per_actor``: every RAVDESS
# actor present (actor 18 has no song, so song actors simply number 23 in the official zip).
DOWNLOAD_EXPECTED = {"ravdess_speech": {"total": 1440, "per_actor": 60},
                     "ravdess_song": {"total": 1012, "per_actor": 44},
                     "tess": {"total": TESS_FILES}}

# Local copies may lack whole actors (the shared copy has actors 01-20 only).
LOCAL_EXPECTED = {"ravdess_speech": {"per_actor": RAVDESS_SPEECH_PER_ACTOR},
                  "ravdess_song": {"per_actor": 44},
                  "tess": {"total": TESS_FILES}}


def import_local(src: str | os.PathLike, *, features_dir: str | os.PathLike = FEATURES_DIR,
                 tess_dir: str | os.PathLike = TESS_SOURCE_DIR,
                 corpora: Iterable[str] = CORPORA,
                 expected: Mapping[str, Mapping[str, int | None]] | None = None,
                 strict: bool = True, force: bool = False, progress: bool = True) -> Summary:
    """Import the corpora from a local folder (or a single zip).

    Parameters
    ----------
    src : path-like
        A folder holding the official zips, a TESS zip, unpacked folders or the shared layout
        (its top-level ``originals/`` is ignored: it duplicates files), or one zip file.
    features_dir, tess_dir : path-like, keyword-only
        Destinations of RAVDESS (``Actor_XX`` folders) and TESS (its original folders).
    corpora : iterable of str, keyword-only
        Subset of :data:`CORPORA`.
    expected : mapping, keyword-only
        Per corpus ``{"total": n, "per_actor": n}`` (``None`` or absent: not checked);
        replaces the defaults (:data:`LOCAL_EXPECTED`) for the corpora it names.
    strict : bool, keyword-only
        Count differences, unsafe archive member names and unreadable folders or files are
        errors (nothing is placed) unless False (then they are skipped and counted).
    force : bool, keyword-only
        Replace files in place that differ (the old ones are kept under
        ``<destination>/.previous/<date-time>/``); without it they are kept and reported.

    Returns
    -------
    Summary

    Raises
    ------
    DownloadError
        Unreadable zip, corrupt member, wrong counts, an empty source, nothing to import.
    """
    src = Path(src)
    if not src.exists():
        raise DownloadError(f"{src}: no such file or folder")
    corpora = _check_corpora(corpora)
    summary = Summary()
    planner = Planner(features_dir=Path(features_dir), tess_dir=Path(tess_dir),
                      corpora=corpora, summary=summary, strict=strict)
    try:
        planner.add_tree(src)
        planner.report_duplicates()
        found = Counter(it.corpus for it in planner.items)
        if not planner.items:
            _nothing_to_import(src, planner, summary)
        for c in corpora:
            if not found[c]:
                summary[c].note = f"none found in {src}"
        exp = {**LOCAL_EXPECTED, **(expected or {})}
        check_counts(planner.items, exp, strict=strict, corpora=corpora)
        place(planner.items, summary, force=force, progress=progress, desc="copying")
    finally:
        planner.close()
    return summary


def _nothing_to_import(src: Path, planner: Planner, summary: Summary) -> None:
    """Raise the error that says why ``src`` gave nothing to import."""
    what = "archive" if src.is_file() else "folder"
    if planner.entries == 0 and not planner.problems:
        raise DownloadError(f"{src}: the {what} is empty; nothing to import")
    why = Counter()
    for st in summary.stats.values():
        why.update(st.skipped)
    skipped = ", ".join(f"{n} {w}" for w, n in why.most_common())
    if not any(summary[c].skipped for c in CORPORA) and not planner.problems:
        raise DownloadError(f"{src}: nothing to import: no RAVDESS or TESS audio files found "
                            f"(looked for MM-VV-EE-II-SS-RR-AA names and OAF_/YAF_ folders, "
                            f"also in zips; skipped: {skipped or 'nothing'})")
    raise DownloadError(f"{src}: nothing to import, every file was skipped ({skipped})")


def _check_corpora(corpora: Iterable[str]) -> tuple[str, ...]:
    corpora = tuple(dict.fromkeys(corpora))
    unknown = [c for c in corpora if c not in CORPORA]
    if unknown:
        raise DownloadError(f"unknown corpus {', '.join(unknown)} (choose from "
                            f"{', '.join(CORPORA)})")
    return corpora


def resolve_urls(zenodo_url: str | None = None, dataverse_url: str | None = None,
                 base_url: str | None = None, env: Mapping[str, str] | None = None
                 ) -> tuple[str, str]:
    """Server base URLs ``(zenodo, dataverse)``.

    Arguments win over the environment, a specific URL over the common mirror: ``zenodo_url``,
    ``base_url``, ``$SER_ZENODO_URL``, ``$SER_BASE_URL``, then https://zenodo.org (the same
    for Dataverse).
    """
    env = os.environ if env is None else env
    z = (zenodo_url or base_url or env.get(ENV_ZENODO_URL) or env.get(ENV_BASE_URL)
         or ZENODO_URL)
    d = (dataverse_url or base_url or env.get(ENV_DATAVERSE_URL) or env.get(ENV_BASE_URL)
         or DATAVERSE_URL)
    return z.rstrip("/"), d.rstrip("/")


def download(*, features_dir: str | os.PathLike = FEATURES_DIR,
             tess_dir: str | os.PathLike = TESS_SOURCE_DIR,
             cache_dir: str | os.PathLike = DOWNLOAD_DIR,
             corpora: Iterable[str] = CORPORA,
             zenodo_url: str | None = None, dataverse_url: str | None = None,
             base_url: str | None = None,
             expected: Mapping[str, Mapping[str, int | None]] | None = None,
             strict: bool = True, retries: int = 5, retry_wait: float = 1.0,
             timeout: float = 60.0, jobs: int = 4, progress: bool = True,
             remove_archives: bool = False, force: bool = False) -> Summary:
    """Download the corpora from Zenodo and Dataverse (or a mirror) and place them.

    Parameters
    ----------
    features_dir, tess_dir : path-like, keyword-only
        Destinations (RAVDESS ``Actor_XX`` folders; TESS original folders).
    cache_dir : path-like, keyword-only
        Where the zips (and their ``.part`` files) and the completion markers are kept.
    corpora : iterable of str, keyword-only
        Subset of :data:`CORPORA`.
    zenodo_url, dataverse_url, base_url : str, keyword-only
        Server base URLs (see :func:`resolve_urls`; the environment variables apply too).
    expected, strict : keyword-only
        As in :func:`import_local`; defaults are :data:`DOWNLOAD_EXPECTED`.
    retries, retry_wait, timeout : keyword-only
        Cut connections are resumed up to ``retries`` times in a row, waiting ``retry_wait``
        seconds (doubling); ``timeout`` is the read timeout in seconds.
    jobs : int, keyword-only
        Parallel downloads of the TESS files.
    remove_archives : bool, keyword-only
        Delete each zip once its files are in place.
    force : bool, keyword-only
        As in :func:`import_local`.

    Returns
    -------
    Summary

    Raises
    ------
    DownloadError
        With a one-line message; the destinations hold only complete, verified files.
    """
    corpora = _check_corpora(corpora)
    features_dir, tess_dir, cache_dir = Path(features_dir), Path(tess_dir), Path(cache_dir)
    zen, dv = resolve_urls(zenodo_url, dataverse_url, base_url)
    exp = {**DOWNLOAD_EXPECTED, **(expected or {})}
    summary = Summary()
    zen_listing: dict[str, RemoteFile] | None = None
    for corpus in corpora:
        root = tess_dir if corpus == "tess" else features_dir
        n = marker_ok(cache_dir, corpus, root, strict=strict)
        if n:
            summary[corpus].present += n
            summary[corpus].note = "complete, skipped"
            note(f"{corpus}: complete in {root} ({n} files, as recorded in "
                 f"{marker_path(cache_dir, corpus)}), skipped")
            continue
        if corpus == "tess":
            download_tess(dv, tess_dir=tess_dir, cache_dir=cache_dir, summary=summary,
                          expected=exp, strict=strict, retries=retries,
                          retry_wait=retry_wait, timeout=timeout, jobs=jobs,
                          progress=progress, force=force)
            continue
        if zen_listing is None:
            zen_listing = zenodo_files(zen, timeout=timeout)
        download_ravdess(corpus, zen_listing, zen, features_dir=features_dir,
                         tess_dir=tess_dir, cache_dir=cache_dir, summary=summary,
                         expected=exp, strict=strict, retries=retries, retry_wait=retry_wait,
                         timeout=timeout, progress=progress, force=force,
                         remove_archives=remove_archives)
    return summary
