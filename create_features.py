#!/usr/bin/env python
"""Step 2: extract feature vectors from every audio file under features/Actor_XX/.

Writes ``features/features_<set>.joblib`` for each feature set asked for: a dict with

- ``X``: float32 array (n_files, dim), one row per audio file;
- ``y``: int64 array (n_files,), labels 0..7 (RAVDESS emotion code - 1);
- ``meta``: dict of arrays (n_files,): ``path`` (relative to the features folder), ``corpus``
  (ravdess_speech, ravdess_song, tess), ``actor`` (1..26), ``vocal_channel``, ``intensity``,
  ``statement``, ``repetition``;
- ``feature`` and ``params``: the feature set and its parameters (ser.features.feature_params).

Files are processed in parallel; every result is cached under ``features/.cache`` keyed by the
file's path, size and modification time and by the feature parameters, so a re-run only
processes new or changed files and an interrupted run resumes where it stopped.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ser.cli import VersionAction
from ser import files as ser_files
from ser.audio import DEFAULT_MAX_SECONDS, MAX_RATE, MIN_RATE
from ser.cluster import SCHEDULER_ENV, scheduler_default, stop_local_workers
from ser.console import err, info, show_progress
from ser.extract import NoRowsError, extract
from ser.features import FEATURE_SETS, describe_sets
from ser.paths import FEATURES_DIR


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Exit status: 0 the features were written (files that could not be used are "
               "named on stderr as skipped:, and counted); 1 an error (one line), or no file "
               "could be used (then nothing is written and an older features file stays as "
               "it was); 2 bad arguments; 130 interrupted (what was extracted is cached: run "
               "again to resume).")
    p.add_argument("--feature", default="mfcc", choices=[*FEATURE_SETS, "all"],
                   help=f"feature set (values): {describe_sets()}; or all of them (default "
                        f"mfcc)")
    p.add_argument("--features-dir", type=Path, default=FEATURES_DIR,
                   help="folder with the Actor_XX audio folders (default: features/)")
    p.add_argument("--csv", type=Path, default=None, metavar="FILE",
                   help="your own recordings instead of the Actor_XX folders: a CSV with the "
                        "columns path (relative to the CSV), emotion (one of the eight) and "
                        "speaker; train on it with neural_network.py --features-dir "
                        "<CSV name>_features --subset csv")
    p.add_argument("--out", type=Path, default=None,
                   help="where the .joblib files go (default: the features folder; with "
                        "--csv, <CSV name>_features/ beside the CSV)")
    p.add_argument("--jobs", type=int, default=-1,
                   help="parallel worker processes (-1: all cores, the default; 1: no "
                        "parallelism)")
    p.add_argument("--no-cache", action="store_true",
                   help="ignore and do not write the per-file cache")
    p.add_argument("--augment", type=int, default=0, metavar="N",
                   help="also write N augmented copies of every file to "
                        "features_<set>_aug.joblib (speed perturbation and a random "
                        "microphone/room channel per speaker and copy, audiomentations); "
                        "neural_network.py --augment adds them to training folds only "
                        "(default 0)")
    p.add_argument("--max-seconds", type=float, default=DEFAULT_MAX_SECONDS, metavar="S",
                   help="skip files longer than S seconds, judged from the header before "
                        f"decoding (default {DEFAULT_MAX_SECONDS:g}); files whose header "
                        f"states a rate outside {MIN_RATE}-{MAX_RATE} Hz are skipped too")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bar (there is none anyway when stderr is not a terminal)")
    p.add_argument("--version", action=VersionAction)
    p.add_argument("--scheduler", default=scheduler_default(), metavar="ADDRESS",
                   help="process the files on the Dask cluster of this scheduler (e.g. "
                        f"tcp://10.0.0.5:8786; default ${SCHEDULER_ENV}); its workers need "
                        "the same paths and this repository installed (make setup)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except KeyboardInterrupt:     # the per-file cache keeps what was done: a re-run resumes
        stop_local_workers()
        info("create_features: interrupted; what was extracted is cached, run again to "
             "resume")
        return 130


def _run(args: argparse.Namespace) -> int:
    sets = list(FEATURE_SETS) if args.feature == "all" else [args.feature]
    try:
        out = args.out
        if args.csv is not None and out is None:     # never mixed with features/'s files
            out = args.csv.parent / f"{args.csv.stem}_features"
        r = extract(args.features_dir, feature_sets=sets, jobs=args.jobs,
                    use_cache=not args.no_cache, progress=show_progress(args.quiet),
                    out_dir=out, scheduler=args.scheduler, augment=args.augment,
                    csv=args.csv, max_seconds=args.max_seconds)
    except NoRowsError as e:
        for line in e.skipped:
            info(f"skipped: {line}")
        err(str(e))
        return 1
    except (OSError, ValueError) as e:   # OutputError, FileNotFoundError, bad input
        err(str(e) if isinstance(e, (ValueError, ser_files.OutputError, FileNotFoundError))
            else ser_files.describe_os_error(e, e.filename))
        return 1
    for line in r["bad_cache"]:
        info(f"recomputed a damaged cache entry: {line}")
    for line in r["skipped"]:
        info(f"skipped: {line}")
    for line in r["aug_fallbacks"]:
        info(f"kept the original: {line}")
    n = r["files"] + len(r["skipped"])
    rate = r["computed"] / r["seconds"] if r["seconds"] > 0 else 0.0
    print(f"create_features: {n} files, {r['files']} rows, {len(r['skipped'])} skipped, "
          f"{r['computed']} processed, {r['cached']} from cache, "
          + (f"{r['augmented']} files' augmented copies computed "
             f"({len(r['aug_fallbacks'])} kept the original), " if args.augment else "")
          + f"{r['seconds']:.1f} s, "
          f"{rate:.0f} files/s; wrote "
          + ", ".join(str(o) for o in r["outputs"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
