"""The ``ser`` command: the pipeline's six scripts as subcommands of one installed command.

    ser download --from /path/to/corpora     # = python download_data.py --from ...
    ser tess                                 # = python tess_pipeline.py
    ser features --feature all               # = python create_features.py --feature all
    ser train --recipe recommended --all-data  # = python neural_network.py ...
    ser predict clip.wav                     # = python live_predictions.py clip.wav
    ser plot                                 # = python plot_model.py

Each subcommand runs the very ``main(argv)`` its script runs (the scripts are installed as
modules beside the package), so options, output and exit codes are the script's. This module is
part of the command-line layer: nothing in the library imports it.
"""
from __future__ import annotations

import argparse
import sys
from importlib import import_module

# subcommand -> (the script's module, what it does)
COMMANDS = {
    "download": ("download_data", "step 0: download (or import with --from) RAVDESS and TESS"),
    "tess": ("tess_pipeline", "step 1: TESS renamed into RAVDESS-style folders Actor_25/26"),
    "features": ("create_features", "step 2: extract the feature sets into features/*.joblib"),
    "train": ("neural_network", "step 3: train, evaluate and save models"),
    "predict": ("live_predictions", "step 4: predict files, a microphone or a stream"),
    "plot": ("plot_model", "step 5: draw a model's diagram"),
    # upkeep of the shipped models (the library's own commands, not steps of the pipeline)
    "export": ("ser.cli.export", "give models their TFLite export, or --verify one"),
    "encoder": ("ser.cli.encoder", "convert the BYOL-S checkpoint once into models/"),
}


class VersionAction(argparse.Action):
    """``--version`` for the scripts: prints ``<prog> <version>`` and exits; the version is
    looked up only then (importlib.metadata costs ~40 ms at every start otherwise)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS,
                 help="show the version and exit"):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        from ser import __version__
        print(f"{parser.prog} {__version__}")
        parser.exit()


def usage() -> str:
    width = max(map(len, COMMANDS))
    rows = "\n".join(f"  {name:<{width}}  {what}  ("
                     + (f"python -m {module}" if module.startswith("ser.") else f"{module}.py")
                     + ")" for name, (module, what) in COMMANDS.items())
    return ("usage: ser COMMAND [options]     (ser COMMAND --help for a command's options)\n\n"
            f"speech emotion recognition: the pipeline's steps, in order\n\ncommands:\n{rows}\n\n"
            "  ser --version    the installed version\n\n"
            "Exit status: the command's own (listed in its --help); 2 for an unknown command.")


def main(argv: list[str] | None = None) -> int:
    """Run ``ser COMMAND ARGS...``: the named script's ``main(ARGS)``; its exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    if argv[0] == "--version":
        from ser import __version__
        print(f"ser {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"ser: unknown command {name!r} (choose from {', '.join(COMMANDS)}; "
              "ser --help lists them)", file=sys.stderr)
        return 2
    module = import_module(COMMANDS[name][0])
    sys.argv[0] = f"ser {name}"          # so that the script's usage lines say `ser predict`
    return module.main(rest)


if __name__ == "__main__":
    sys.exit(main())
