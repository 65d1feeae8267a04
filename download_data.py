"""Step 0: get the RAVDESS and TESS corpora into the layout the pipeline reads.

``python download_data.py`` downloads RAVDESS audio-only (Zenodo record 1188976) and TESS
(Borealis Dataverse, doi:10.5683/SP2/E8H2MF), each file checked against the repository's
checksum, resuming cut downloads. ``python download_data.py --from DIR`` imports local copies
(the official zips, a TESS zip, unpacked folders, or the shared layout ``ravdess_speech/``,
``ravdess_song/``, ``tess/``). RAVDESS goes to ``features/Actor_XX/``, TESS to ``data/tess/``
for ``tess_pipeline.py``. A second run changes nothing; a file in place that differs is kept
unless ``--force`` (then the old one goes to ``.previous/``). What is refused and why (names
leading out of the destination, unreadable or non-audio files, links): ``ser/download/``.

Exit status: 0 done (the summary line says what was placed, present and skipped), 1 an error
(one line), 130 interrupted.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ser.cli import VersionAction
from ser.console import info, show_progress
from ser.download import (
    CORPORA,
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
    download,
    first_line,
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
               "(one line; also an empty source or one where every file was skipped), 2 bad arguments, "
               "130 interrupted.")
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
    p.add_argument("--no-progress", action="store_true",
                   help="do not show progress bars (shown only on a terminal)")
    p.add_argument("--version", action=VersionAction)
    return p


def _error(msg: str) -> None:
    """The one error line on stderr, through ser.console (control characters escaped). Its
    prefix stays ``download_data.py: error:`` (argparse's form, which the tests read), not
    the ``error:`` of :func:`ser.console.err`."""
    info(f"{PROG}: error: {msg}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    progress = show_progress(args.no_progress)   # a bar on a terminal only
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
        _error(str(e))
        return 1
    except OSError as e:
        _error(first_line(e))
        return 1
    except KeyboardInterrupt:
        info(f"{PROG}: interrupted; partial downloads are kept (.part), run again to resume")
        return 130
    print(summary.line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
