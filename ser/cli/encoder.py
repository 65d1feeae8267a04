"""``python -m ser.cli.encoder``: convert the BYOL-S checkpoint once into ``models/``.

The command-line layer over :func:`ser.encoder.convert`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ser import byols
from ser.console import err
from ser.encoder import LICENSE_NAME, NPZ_NAME, NPZ_SHA256, EncoderError, convert, sha256_of
from ser.paths import MODELS_DIR


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m ser.cli.encoder",
        description="Convert the BYOL-S checkpoint once into models/byols_default512.npz "
                    "(numpy arrays) and models/BYOLS_LICENSE.txt. The checkpoint comes from "
                    f"--checkpoint, ${byols.ENV_PATH}, or its pinned URL (pooch, checked by "
                    f"sha256; ${byols.ENV_URL} for a mirror).")
    ap.add_argument("--out", type=Path, default=MODELS_DIR, help="output folder (models/)")
    ap.add_argument("--checkpoint", type=Path, default=None,
                    help=f"a local copy of the checkpoint (sha256 {byols.SHA256[:12]}...)")
    ap.add_argument("--force", action="store_true",
                    help="convert even when the output already has the expected sha256")
    args = ap.parse_args(argv)
    dest = args.out / NPZ_NAME
    if (not args.force and dest.is_file() and (args.out / LICENSE_NAME).is_file()
            and sha256_of(dest) == NPZ_SHA256):
        print(f"{dest}: up to date (sha256 {NPZ_SHA256[:12]}...)")
        return 0
    try:
        dest = convert(args.out, checkpoint=args.checkpoint)
    except (EncoderError, byols.CheckpointError, byols.FetchError, OSError) as e:
        err(str(e))
        return 1
    print(f"wrote {dest} ({dest.stat().st_size} bytes, sha256 {NPZ_SHA256[:12]}...) and "
          f"{args.out / LICENSE_NAME}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
