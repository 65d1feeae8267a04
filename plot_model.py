#!/usr/bin/env python3
"""Draw the trained model's layer diagram, with tensor shapes, to media/model.png.

    python plot_model.py                       # the shipped model -> media/model.png
    python plot_model.py --model M.h5 --out diagram.png

Uses ``keras.utils.plot_model``, which needs the Python package ``pydot`` and Graphviz's
``dot`` program. The picture is written to a temporary name and renamed, so an interrupted
run never leaves a half-written file. Exit status: 0 written, 2 model unusable, 3 pydot or
Graphviz missing, 1 drawing failed.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ser.cli import VersionAction
from ser.console import err
from ser.diagram import DEFAULT_OUT, FORMATS, missing_tools, plot
from ser.paths import CNN_MODEL, ROOT


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        description="Draw the model's layer diagram with input/output shapes "
                    "(keras.utils.plot_model; needs pydot and Graphviz).",
        epilog="Exit status: 0 the picture was written; 1 drawing failed; 2 bad arguments or "
               "an unusable model; 3 pydot or Graphviz missing.")
    ap.add_argument("--model", type=Path, default=CNN_MODEL,
                    help="H5 model with its JSON sidecar beside it (default: "
                         f"{CNN_MODEL.relative_to(ROOT)})")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT,
                    help="picture to write; the format follows the extension "
                         f"({', '.join(FORMATS)}) (default: {DEFAULT_OUT.relative_to(ROOT)})")
    ap.add_argument("--dpi", type=int, default=96, help="resolution (default: %(default)s)")
    ap.add_argument("--rankdir", choices=("TB", "LR"), default="TB",
                    help="layout: TB top to bottom, LR left to right (default: %(default)s)")
    ap.add_argument("--version", action=VersionAction)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    ext = args.out.suffix.lower().lstrip(".")
    if ext not in FORMATS:
        err(f"{args.out}: unsupported picture format {ext or '(none)'!r} "
             f"(use one of {', '.join(FORMATS)})")
        return 2
    if args.dpi <= 0:
        err("--dpi must be positive")
        return 2
    hint = missing_tools()
    if hint:
        err(f"cannot draw the model: {hint}")
        return 3
    try:
        out = plot(args.model, args.out, dpi=args.dpi, rankdir=args.rankdir)
    except (FileNotFoundError, ValueError) as e:
        err(str(e).splitlines()[0])
        return 2
    except ImportError as e:            # keras' own pydot/Graphviz check
        err(f"cannot draw the model: {str(e).splitlines()[0]}")
        return 3
    except Exception as e:
        err(f"drawing failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        return 1
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
