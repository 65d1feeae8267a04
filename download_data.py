"""Get the RAVDESS and TESS corpora into the layout the pipeline reads.

Two ways in:

``python download_data.py``
    Downloads RAVDESS audio-only (Zenodo record 1188976: ``Audio_Speech_Actors_01-24.zip``,
    ``Audio_Song_Actors_01-24.zip``) and TESS (Borealis Dataverse, doi:10.5683/SP2/E8H2MF, one
    request per file through the Dataverse native API). Every download is checked against the
    checksum the repository lists; a cut connection resumes with an HTTP ``Range`` request from
    the kept ``.part`` file (also on the next run).

``python download_data.py --from DIR``
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

Exit status: 0 done (the summary line says what was placed, present and skipped), 1 an error
(one line), 130 interrupted.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ser.corpora import CORPORA
from ser.download import (
    DATAVERSE_URL,
    DOWNLOAD_DIR,
    ENV_BASE_URL,
    ENV_DATAVERSE_URL,
    ENV_ZENODO_URL,
    PREVIOUS_DIR,
    PROG,
    TESS_DOI,
    ZENODO_RECORD,
    ZENODO_URL,
    DownloadError,
    _short,
    download,
    import_local,
)
from ser.paths import FEATURES_DIR, TESS_SOURCE_DIR


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Download RAVDESS (Zenodo record 1188976) and TESS (Dataverse "
                    f"{TESS_DOI}), or import local copies with --from, into the folders the "
                    "pipeline reads. Re-running is safe: complete files are kept as they are.",
        epilog=f"Environment: {ENV_BASE_URL}, {ENV_ZENODO_URL}, {ENV_DATAVERSE_URL} set the "
               "server URLs like the options (the options win). Exit status: 0 done (the "
               "summary line says what was placed, already present and skipped), 1 an error "
               "(one line; also an empty source or one where every file was skipped), 130 "
               "interrupted.")
    p.add_argument("--from", dest="src", metavar="DIR", type=Path,
                   help="import local copies from DIR instead of downloading: the official "
                        "zips, a TESS zip, unpacked folders or the shared layout "
                        "(ravdess_speech/, ravdess_song/, tess/; its originals/ is ignored); "
                        "DIR may also be one zip file")
    p.add_argument("--corpus", nargs="+", choices=CORPORA, default=list(CORPORA),
                   metavar="NAME",
                   help=f"corpora to get, any of {', '.join(CORPORA)} (default: all)")
    p.add_argument("--features-dir", type=Path, default=FEATURES_DIR, metavar="DIR",
                   help="destination of RAVDESS, one Actor_XX folder per actor "
                        "(default: %(default)s)")
    p.add_argument("--tess-dir", type=Path, default=TESS_SOURCE_DIR, metavar="DIR",
                   help="destination of TESS, in its original folders (default: %(default)s)")
    p.add_argument("--cache-dir", type=Path, default=DOWNLOAD_DIR, metavar="DIR",
                   help="where downloaded zips, partial downloads (.part) and completion "
                        "records are kept (default: %(default)s)")
    p.add_argument("--base-url", metavar="URL",
                   help=f"one mirror serving both APIs (/api/records/{ZENODO_RECORD} and "
                        f"/api/datasets/:persistentId/, /api/access/datafile/ID) "
                        f"[env {ENV_BASE_URL}]")
    p.add_argument("--zenodo-url", metavar="URL",
                   help=f"Zenodo server (default: {ZENODO_URL}) [env {ENV_ZENODO_URL}]")
    p.add_argument("--dataverse-url", metavar="URL",
                   help=f"Dataverse server holding {TESS_DOI} (default: {DATAVERSE_URL}) "
                        f"[env {ENV_DATAVERSE_URL}]")
    p.add_argument("--allow-incomplete", action="store_true",
                   help="import even when the numbers of audio files differ from the expected "
                        "ones (1440 speech, 1012 song, 2800 TESS; 60 speech and 44 song files "
                        "per actor present), and skip (name and count) what strict mode "
                        "refuses: unsafe names in a listing or archive, folders and files that "
                        "cannot be read; the differences are printed as warnings")
    p.add_argument("--force", action="store_true",
                   help="replace a file in place that differs from the one imported or "
                        "downloaded (without --force it is kept and reported); the replaced "
                        f"file is kept under DEST/{PREVIOUS_DIR}/<date-time>/ (DEST: "
                        "--features-dir or --tess-dir; a hidden folder the pipeline does not "
                        "read)")
    p.add_argument("--retries", type=int, default=5, metavar="N",
                   help="resume a cut download up to N times in a row (default: %(default)s)")
    p.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                   help="network read timeout (default: %(default)s)")
    p.add_argument("--jobs", type=int, default=4, metavar="N",
                   help="parallel downloads of the TESS files (default: %(default)s)")
    p.add_argument("--remove-archives", action="store_true",
                   help="delete each downloaded zip once its files are in place (default: keep "
                        "it in the cache folder so the files can be restored without "
                        "downloading)")
    p.add_argument("--no-progress", action="store_true", help="do not show progress bars (shown only on a terminal)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    progress = not args.no_progress and sys.stderr.isatty()   # a bar on a terminal only
    try:
        if args.src is not None:
            summary = import_local(args.src, features_dir=args.features_dir,
                                   tess_dir=args.tess_dir, corpora=args.corpus,
                                   strict=not args.allow_incomplete, force=args.force,
                                   progress=progress)
        else:
            summary = download(features_dir=args.features_dir, tess_dir=args.tess_dir,
                               cache_dir=args.cache_dir, corpora=args.corpus,
                               zenodo_url=args.zenodo_url, dataverse_url=args.dataverse_url,
                               base_url=args.base_url, strict=not args.allow_incomplete,
                               retries=args.retries, timeout=args.timeout, jobs=args.jobs,
                               progress=progress, remove_archives=args.remove_archives,
                               force=args.force)
    except DownloadError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"{PROG}: error: {_short(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; partial downloads are kept (.part), run again to resume",
              file=sys.stderr)
        return 130
    print(summary.line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
