#!/usr/bin/env python
"""Step 1: copy the TESS corpus into RAVDESS-style actor folders.

Every TESS file becomes ``features/Actor_25`` (YAF) or ``features/Actor_26`` (OAF)
``/03-01-EE-01-SS-RR-AA.<ext>``, with a manifest CSV mapping every new name to its original
path, speaker and word (naming rules and what is read: ``ser/tess.py``). Re-running is a
no-op; nothing is overwritten with different content.

Exit status: 0 when files were copied or already in place (files that could not be placed are
named on stderr and counted); 1 on an error, or when nothing could be placed (an empty source,
only unusable files): then no manifest is written."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ser.cli import VersionAction
from ser.console import err, info, show_progress
from ser.errors import SerError
from ser.paths import FEATURES_DIR, TESS_SOURCE_DIR
from ser.tess import run


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                epilog="Symbolic links out of the source, or to folders, are "
                                       "not followed; unreadable folders and files are named "
                                       "and counted. Exit status: 0 when files were copied or "
                                       "already in place, 1 on an error or when nothing could "
                                       "be placed (then no manifest is written); 2 bad arguments.")
    p.add_argument("--source", type=Path, default=TESS_SOURCE_DIR,
                   help="the TESS tree (its 14 folders, WAV or FLAC; default: data/tess)")
    p.add_argument("--out", type=Path, default=FEATURES_DIR,
                   help="folder that receives Actor_25 (YAF) and Actor_26 (OAF) (default: "
                        "features/)")
    p.add_argument("--manifest", type=Path, default=None,
                   help="manifest CSV (default: OUT/tess_manifest.csv)")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bar (there is none anyway when stderr is not a terminal)")
    p.add_argument("--version", action=VersionAction)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    t0 = time.perf_counter()
    try:
        r = run(args.source, args.out, manifest=args.manifest, progress=show_progress(args.quiet))
    except (SerError, OSError) as e:     # TessError, a missing or unreadable source
        err(str(e))
        return 1
    for line in r["problems"]:
        info(f"skipped: {line}")
    if not r["manifest_written"]:
        err(f"{args.source}: nothing could be placed ({r['skipped']} skipped); no manifest "
            f"written")
        return 1
    print(f"TESS: {r['copied']} copied, {r['unchanged']} already in place, {r['skipped']} "
          f"skipped; manifest {r['manifest']} ({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
