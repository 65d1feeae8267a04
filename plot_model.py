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
import shutil
import sys
from pathlib import Path

import ser_common as sc

DEFAULT_OUT = sc.MEDIA_DIR / "model.png"
FORMATS = ("png", "svg", "pdf", "jpg", "jpeg")


def _err(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr, flush=True)


def missing_tools() -> str | None:
    """What is missing for drawing, as an install hint, or None."""
    try:
        import pydot  # noqa: F401
    except ImportError:
        return "the Python package pydot is missing: pip install pydot"
    if shutil.which("dot") is None:
        return ("Graphviz's `dot` program was not found on PATH: install Graphviz "
                "(Debian/Ubuntu: apt-get install graphviz; Fedora: dnf install graphviz; "
                "macOS: brew install graphviz)")
    return None


def plot(model_path: str | Path = sc.DEFAULT_MODEL, out: str | Path = DEFAULT_OUT, *,
         dpi: int = 96, rankdir: str = "TB") -> Path:
    """Load ``model_path`` with its sidecar and write its diagram to ``out`` atomically.

    Raises FileNotFoundError/ValueError (model), ImportError (pydot/Graphviz).
    """
    keras = sc.import_keras()
    with sc.stderr_silenced():
        model, _ = sc.load_model(model_path)
    out = Path(out)
    with sc.atomic_path(out) as tmp:          # temp name keeps the extension: format from it
        keras.utils.plot_model(model, to_file=str(tmp), show_shapes=True,
                               show_layer_names=True, show_layer_activations=True,
                               rankdir=rankdir, dpi=dpi)
        if not tmp.exists() or tmp.stat().st_size == 0:
            raise RuntimeError(f"Graphviz wrote nothing to {tmp}")
    return out


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        description="Draw the model's layer diagram with input/output shapes "
                    "(keras.utils.plot_model; needs pydot and Graphviz).")
    ap.add_argument("--model", type=Path, default=sc.DEFAULT_MODEL,
                    help="H5 model with its JSON sidecar beside it (default: "
                         f"{sc.DEFAULT_MODEL.relative_to(sc.ROOT)})")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT,
                    help="picture to write; the format follows the extension "
                         f"({', '.join(FORMATS)}) (default: {DEFAULT_OUT.relative_to(sc.ROOT)})")
    ap.add_argument("--dpi", type=int, default=96, help="resolution (default: %(default)s)")
    ap.add_argument("--rankdir", choices=("TB", "LR"), default="TB",
                    help="layout: TB top to bottom, LR left to right (default: %(default)s)")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    ext = args.out.suffix.lower().lstrip(".")
    if ext not in FORMATS:
        _err(f"{args.out}: unsupported picture format {ext or '(none)'!r} "
             f"(use one of {', '.join(FORMATS)})")
        return 2
    if args.dpi <= 0:
        _err("--dpi must be positive")
        return 2
    hint = missing_tools()
    if hint:
        _err(f"cannot draw the model: {hint}")
        return 3
    try:
        out = plot(args.model, args.out, dpi=args.dpi, rankdir=args.rankdir)
    except (FileNotFoundError, ValueError) as e:
        _err(str(e).splitlines()[0])
        return 2
    except ImportError as e:            # keras' own pydot/Graphviz check
        _err(f"cannot draw the model: {str(e).splitlines()[0]}")
        return 3
    except Exception as e:
        _err(f"drawing failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        return 1
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
