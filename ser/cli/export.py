"""``python -m ser.cli.export``: give saved models their TFLite export, or verify one.

    python -m ser.cli.export MODEL.h5 ...            # write X.tflite beside X.h5, record it in X.json
    python -m ser.cli.export --verify MODEL.h5 ...   # convert again and compare (make setup runs it)

The command-line layer over :mod:`ser.export` and :func:`ser.checkpoint.add_export`; the
predictor runs ``--verify`` in a child process before it trusts an export it did not make.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ser import checkpoint
from ser.console import err
from ser.export import (
    EXPORT_MAX_BYTES,
    VERIFY_EXIT_DIFFERS,
    ExportError,
    check_source,
    is_verified,
    reexport_matches,
    sha256_bytes,
    tflite_path,
)
from ser.files import read_regular


def _verify(models: list[Path], export: Path | None) -> int:
    """``--verify``: each model's export against its H5 converted again; the exit status."""
    status = 0
    for h5 in models:
        lite = export or tflite_path(h5)
        try:
            if is_verified(check_source(h5, lite, None), sha256_bytes(read_regular(
                    lite, max_bytes=EXPORT_MAX_BYTES, error=ExportError))):
                print(f"{h5}: {lite.name} verified (recorded)", flush=True)
                continue
            same = reexport_matches(h5, lite)
        except (OSError, ValueError) as e:
            err(str(e).splitlines()[0] if str(e) else type(e).__name__)
            status = max(status, 1)
            continue
        print(f"{h5}: {lite.name} " + ("verified: the conversion of the H5" if same else
                                        "DIFFERS from the conversion of the H5"), flush=True)
        if not same:
            status = VERIFY_EXIT_DIFFERS
    return status


def main(argv: list[str] | None = None) -> int:
    """``python -m ser.cli.export MODEL.h5 ...``: give saved models their export (the
    ``.tflite`` beside each and the sidecar's entry; the H5 files are only read)."""
    ap = argparse.ArgumentParser(prog="python -m ser.cli.export",
                                 description="Export saved models (H5 + JSON sidecar) to "
                                             "TFLite for TensorFlow-free prediction: writes "
                                             "X.tflite beside X.h5 and records it in X.json.")
    ap.add_argument("models", nargs="+", type=Path, metavar="MODEL.h5")
    ap.add_argument("--verify", action="store_true",
                    help="instead: convert each model's H5 again and compare with its export "
                         "(once per installation: a verified pair is recorded); exit 0 the "
                         f"same bytes, {VERIFY_EXIT_DIFFERS} different, 1 not checked. The "
                         "predictor does this before it trusts an export it did not make")
    ap.add_argument("--export", type=Path, metavar="X.tflite",
                    help="with --verify and one model: the export to compare (default: the "
                         ".tflite beside it)")
    args = ap.parse_args(argv)
    if args.verify:
        if args.export is not None and len(args.models) != 1:
            ap.error("--export goes with one model")
        return _verify(args.models, args.export)
    failed = 0
    for h5 in args.models:
        try:
            entry = checkpoint.add_export(h5)
        except (OSError, ValueError) as e:          # ExportError is a ValueError
            err(str(e).splitlines()[0] if str(e) else type(e).__name__)
            failed += 1
            continue
        print(f"{h5}: {tflite_path(h5).name} ({entry['bytes']} bytes, sha256 "
              f"{entry['sha256'][:16]}...)", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
