#!/usr/bin/env python
"""Step 3: train and compare the Keras models on the .joblib features; save the model.

Protocols (named in every output):

- ``original``  the original project's procedure: random 67/33 split (random_state=42) and the
  test set passed as validation data for every epoch (test-set-as-validation: optimistic).
- ``random``    the same split, validation carved from the training part, early stopping with
  the best weights restored, the test set used once at the end.
- ``speaker``   whole RAVDESS actors held out (actor-group k-fold); TESS speakers always in
  training; validation actors carved from the training actors; UAR per fold, mean +- std.
- ``corpus``    train on one corpus, test on the other (RAVDESS actors 01-20 -> TESS, and the
  reverse as a stress test); UAR restricted to the test corpus's classes and 8-way.

Shipped recipes and experiments: a run whose training options are those of a shipped recipe
(below; ``--recipe NAME`` names them, any protocol) writes its reports (plots, classification
reports, ``results.json``, ``results.md``) to ``media/`` and, with ``--all-data``, its model to
the recipe's file. Any other run is an experiment: its reports and its model go to its own run
folder ``models/runs/<model>_<feature>_<protocol>_<run>/`` (the model as ``<model>.h5``), and no
tracked file changes. ``--media-dir`` and ``--save`` choose other places.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from ser.cli import VersionAction
from ser import files as ser_files
from ser.cluster import SCHEDULER_ENV, scheduler_default
from ser.console import err, import_keras, info, quiet_tensorflow, show_progress
from ser.corpora import FAMILIES, SUBSET_CORPORA, families_of, parse_subset
from ser.errors import SerError
from ser.features import FEATURE_SETS
from ser.models import MODELS, ORIGINAL_MODELS
from ser.paths import FEATURES_DIR, MEDIA_DIR
from ser.protocols import PROTOCOLS, ProtocolError, load_dataset
from ser.recipes import RECIPES, RUNS_DIR, TRAINING_OPTIONS, differences, run_folder
from ser.reports import RUN
from ser.training import TrainConfig, protocol_records, run, save_trained, train_final

EXIT_STATUS = """Exit status: 0 done; 1 an error during the work (features missing, unreadable or
not written here, augmented copies missing, a folder that cannot be written, a disk that
filled up; one line); 2 bad arguments: an unknown option or value, options that do not go
together (--all-data with --model all or --no-save, --jobs 0, ...), a subset without rows,
or data the protocol cannot split (too few recordings or speakers: the line says the
smallest usable corpus)."""


def _epilog() -> str:
    width = max(map(len, RECIPES))
    pad = " " * (width + 4)
    rows = "\n".join(f"  {name:<{width}}  {' '.join(r.args)}\n{pad}{r.about}"
                     + (f"\n{pad}--all-data saves {_shown(r.model)}" if r.model else "")
                     for name, r in RECIPES.items())
    return (__doc__.split("\n\n", 1)[1] + "\nThe shipped recipes (ser/recipes.py; the Makefile's "
            "train target runs them as --recipe NAME):\n" + rows + "\n\n" + EXIT_STATUS)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=_epilog(),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", choices=RECIPES, default=None,
                   help="the options of this shipped recipe (listed below); options given "
                        "beside it win (the run is then an experiment). With --all-data it "
                        "trains and saves the recipe's model")
    p.add_argument("--model", default="improved_cnn", choices=[*MODELS, "all"],
                   help="model to train, or all to compare the original four "
                        "(default improved_cnn)")
    p.add_argument("--protocol", default="random", choices=PROTOCOLS,
                   help="evaluation protocol (default random)")
    p.add_argument("--subset", default=None,
                   help=f"corpora joined by '+': {', '.join(SUBSET_CORPORA)} (csv: your own "
                        "recordings, create_features.py --csv) (default song+tess for "
                        "original and random, speech+song+tess for speaker and corpus)")
    p.add_argument("--feature", default="mfcc", choices=FEATURE_SETS,
                   help="feature set from create_features.py (default mfcc)")
    p.add_argument("--epochs", type=int, default=TrainConfig.epochs,
                   help=f"maximum epochs (default {TrainConfig.epochs})")
    p.add_argument("--batch-size", type=int, default=None,
                   help="batch size (default 16 for the original protocol as the original "
                        "project, 64 otherwise: same results, 2-3x faster)")
    p.add_argument("--learning-rate", type=float, default=0.001,
                   help="RMSprop learning rate (default 0.001)")
    p.add_argument("--patience", type=int, default=10,
                   help="early-stopping patience in epochs on validation loss (default 10)")
    p.add_argument("--norm", default=None, choices=["none", "global", "speaker"],
                   help="feature standardisation: global (fitted on the training rows), "
                        "speaker (each speaker z-scored with the statistics of their own "
                        "unlabelled utterances: speaker adaptation) or none (default none for "
                        "the original protocol, global otherwise)")
    p.add_argument("--augment", type=int, default=0, metavar="N",
                   help="add N augmented copies of each training row (made by "
                        "create_features.py --augment N: other voices and microphones) to "
                        "the training part of every fold; validation and test rows stay "
                        "original (default 0)")
    p.add_argument("--ensemble", type=int, default=1, metavar="N",
                   help="train N models apart (seeds SEED..SEED+N-1) and average their "
                        "probabilities, saved as one Keras model (default 1)")
    p.add_argument("--folds", type=int, default=5,
                   help="actor groups of the speaker protocol (default 5)")
    p.add_argument("--train-corpus", default="both", choices=[*FAMILIES, "both"],
                   help="corpus protocol: the corpus family trained on, tested on the others "
                        f"({', '.join(FAMILIES)}), or both: each in turn (default)")
    p.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    p.add_argument("--all-data", action="store_true",
                   help="train the chosen model on every row of the subset (no test part) "
                        "and save it; the shipped models are made this way (--recipe NAME "
                        "--all-data)")
    p.add_argument("--exclude-actors", default="", metavar="N,N,...",
                   help="with --all-data: leave these actors' rows out, to measure the model "
                        "on voices it never heard (benchmarks/bench_invariance.py --actors)")
    p.add_argument("--save", type=Path, default=None,
                   help="where to save the model (default: the recipe's file for a shipped "
                        "recipe's --all-data run, and for the cnn recipe's original or random "
                        "run; an experiment's model goes to its run folder, so that an "
                        "experiment never replaces a shipped model; runs of other models "
                        "under a protocol save nothing unless --save is given). A model that "
                        "is replaced is kept under models/previous/")
    p.add_argument("--no-save", action="store_true", help="do not save any model")
    p.add_argument("--trust-features", action="store_true",
                   help="read .joblib feature files that this installation did not write (they "
                        "are pickles: loading one can run code; only for files from a source "
                        "you trust). Records them as trusted")
    p.add_argument("--features-dir", type=Path, default=FEATURES_DIR,
                   help="folder with the features_<set>.joblib files")
    p.add_argument("--media-dir", type=Path, default=None,
                   help="where plots and result tables go (default: media/ for a shipped "
                        "recipe, the run's own folder models/runs/<run>/ for an experiment); "
                        "--all-data reads the speaker-protocol records of its configuration "
                        "(its calibration) from results.json here (default media/)")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bars (there are none anyway when stderr is not a terminal)")
    p.add_argument("--verbose", action="store_true",
                   help="Keras's per-epoch lines and TensorFlow's own messages")
    p.add_argument("--jobs", type=int, default=2, metavar="N",
                   help="local processes that train the folds of a comparison side by side "
                        "(default 2; 1 trains them one after the other in this process; the "
                        "figures are the same). The TensorFlow of each takes ~0.8 GB")
    p.add_argument("--scheduler", default=scheduler_default(), metavar="ADDRESS",
                   help="run the trainings of the comparison (folds x models) on the Dask "
                        f"cluster of this scheduler (default ${SCHEDULER_ENV}); its workers "
                        "need this repository installed (make setup). --all-data trains here")
    p.add_argument("--version", action=VersionAction)
    return p


def _shown(path: Path) -> str:
    """A path as the user reads it: relative to the current folder when inside it (the
    repository, usually), else absolute (the ``ser`` command runs from any folder)."""
    path = Path(path).absolute()
    here = Path.cwd()
    return str(path.relative_to(here) if path.is_relative_to(here) else path)


def _actors(text: str) -> list[int]:
    try:
        return [int(a) for a in text.split(",") if a.strip()]
    except ValueError:
        raise ValueError(f"--exclude-actors takes actor numbers separated by commas, got "
                         f"{text!r}") from None


def parse(argv: list[str] | None = None) -> tuple[argparse.Namespace, argparse.ArgumentParser]:
    """The options of ``argv``, ``--recipe NAME`` expanded to the recipe's options (put first,
    so that the options given beside it win); and the parser."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if args.recipe is not None:
        args = parser.parse_args([*RECIPES[args.recipe].args, *argv])
    return args, parser


def shipped_recipe(args: argparse.Namespace, parser: argparse.ArgumentParser
                   ) -> tuple[str | None, str | None, list[str]]:
    """Which shipped recipe (:data:`ser.recipes.RECIPES`) this run is.

    Returns
    -------
    recipe : str or None
        The recipe whose training options (:data:`ser.recipes.TRAINING_OPTIONS`) are the
        run's, or None: the run is an experiment.
    nearest : str or None
        For an experiment, the recipe of the same model it differs least from (None if no
        recipe trains that model).
    changed : list of str
        The options where the run differs from ``nearest`` (``--epochs 1``, ...).
    """
    mine = {k: getattr(args, k) for k in TRAINING_OPTIONS}
    nearest, fewest = None, []
    for name, recipe in RECIPES.items():
        theirs = vars(parser.parse_args(list(recipe.args)))
        changed = differences(mine, theirs)
        if not changed:
            return name, None, []
        if theirs["model"] == mine["model"] and (nearest is None or len(changed) < len(fewest)):
            nearest, fewest = name, changed
    return None, nearest, fewest


@dataclass
class Plan:
    """What a run does, its options resolved (:func:`plan`)."""

    models: list[str]
    protocol: str
    subset: str
    feature: str
    cfg: TrainConfig
    all_data: bool
    features_dir: Path
    exclude_actors: list[int]
    epochs: int | None          # --all-data: the epochs given, or None (found by early stopping)
    recipe: str | None          # the shipped recipe this run is; None: an experiment
    run_dir: Path | None        # an experiment's own folder (made when it first writes)
    reports_dir: Path           # where the reports go
    records_dir: Path           # where --all-data reads its configuration's protocol records
    save_to: Path | None        # where the model goes; None: nowhere
    notice: str | None          # said once the model is saved where the recipe's would not be


def plan(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Plan:
    """Resolve a run's options: the defaults that depend on others, whether it is a shipped
    recipe, and where its reports and its model go. Reads and writes nothing.

    Raises
    ------
    ValueError
        Options that do not go together (one line): a usage error.
    """
    recipe, nearest, changed = shipped_recipe(args, parser)
    subset = args.subset or ("song+tess" if args.protocol in ("original", "random")
                             and not args.all_data else "speech+song+tess")
    parse_subset(subset)
    if args.jobs < 1:
        raise ValueError(f"--jobs must be >= 1 (got {args.jobs})")
    if args.ensemble < 1 or args.augment < 0:
        raise ValueError(f"--ensemble must be >= 1 (got {args.ensemble}) and --augment "
                         f">= 0 (got {args.augment})")
    models = list(ORIGINAL_MODELS) if args.model == "all" else [args.model]
    if args.all_data and len(models) != 1:
        raise ValueError("--all-data trains one model: pass --model NAME")
    if args.all_data and args.no_save:
        raise ValueError("--all-data trains a model to save: drop --no-save")
    exclude = _actors(args.exclude_actors)
    cfg = TrainConfig(epochs=args.epochs,
                      batch_size=args.batch_size or (16 if args.protocol == "original" else 64),
                      learning_rate=args.learning_rate, patience=args.patience, seed=args.seed,
                      norm=args.norm or ("none" if args.protocol == "original" else "global"),
                      augment=args.augment, ensemble=args.ensemble,
                      verbose=2 if args.verbose else 0)
    run_dir = None if recipe else run_folder(
        args.model, args.feature, "all-data" if args.all_data else args.protocol, RUN["run"],
        runs_dir=RUNS_DIR)
    save_to, notice = None, None
    if args.no_save or len(models) != 1:
        pass
    elif args.save is not None:
        save_to = args.save
    elif not args.all_data and (models[0] != "improved_cnn"
                                or args.protocol not in ("original", "random")):
        pass        # an evaluation saves the model of its split: the original's CNN only
    elif recipe is not None:
        save_to = RECIPES[recipe].model
    else:
        save_to = run_dir / f"{models[0]}.h5"
        notice = (f"this run differs from the shipped recipe {nearest} ({', '.join(changed)})"
                  f": its model is {_shown(save_to)}, not {RECIPES[nearest].model.name}"
                  if nearest is not None and RECIPES[nearest].model is not None else
                  f"no shipped recipe trains {models[0]}: its model is "
                  f"{_shown(save_to)}") + " (--save PATH to choose)"
    return Plan(models=models, protocol=args.protocol, subset=subset, feature=args.feature,
                cfg=cfg, all_data=args.all_data, features_dir=args.features_dir,
                exclude_actors=exclude,
                epochs=None if args.epochs == parser.get_default("epochs") else args.epochs,
                recipe=recipe, run_dir=run_dir,
                reports_dir=args.media_dir or (MEDIA_DIR if recipe else run_dir),
                records_dir=args.media_dir or MEDIA_DIR, save_to=save_to, notice=notice)


def _check_writable(folder: Path, what: str) -> None:
    """:func:`ser.files.check_writable` on ``folder``, or, if it does not exist yet, on the
    folder it will be made in: nothing is made before the data has been read and split."""
    folder = Path(folder)
    base = folder
    while not base.exists() and base.parent != base:
        base = base.parent
    ser_files.check_writable(base, what=what if base == folder
                             else f"{what} {folder}, to be made in")


def _check_outputs(p: Plan) -> None:
    """Every folder the run will write checked before the work (and none made yet)."""
    if not p.all_data:
        _check_writable(p.reports_dir, "reports folder")
    if p.save_to is not None and (p.all_data or p.protocol in ("original", "random")):
        _check_writable(Path(p.save_to).parent, "model folder")


def _train(p: Plan, args: argparse.Namespace) -> bool:
    """Do what ``p`` says; whether a model was saved."""
    if p.all_data:
        train_final(p.models[0], subset=p.subset, feature=p.feature, cfg=p.cfg, out=p.save_to,
                    features_dir=p.features_dir, exclude_actors=p.exclude_actors,
                    epochs=p.epochs,
                    protocol_record=protocol_records(p.records_dir, p.models[0], p.subset,
                                                     p.feature, p.cfg.norm, p.cfg.augment,
                                                     p.cfg.ensemble))
        return True
    directions = (families_of(parse_subset(p.subset)) if args.train_corpus == "both"
                  else [args.train_corpus])
    for direction in (directions if p.protocol == "corpus" else ["ravdess"]):
        records, outs = run(models=p.models, protocol=p.protocol, subset=p.subset,
                            feature=p.feature, cfg=p.cfg, features_dir=p.features_dir,
                            media_dir=p.reports_dir, k=args.folds, train_corpus=direction,
                            progress=show_progress(args.quiet), scheduler=args.scheduler,
                            jobs=args.jobs)
    print(f"reports in {_shown(p.reports_dir)}")
    if p.save_to is None or p.protocol not in ("original", "random"):
        return False
    o = outs[p.models[0]]
    ds = load_dataset(p.feature, p.subset, features_dir=p.features_dir)
    save_trained(o["model"], o["norm"], ds, p.models[0], p.save_to, protocol=p.protocol,
                 subset=p.subset, record=o["record"], cfg=p.cfg)
    return True


def main(argv: list[str] | None = None) -> int:
    args, parser = parse(argv)
    if args.verbose:
        import_keras(verbose=True)
    else:
        quiet_tensorflow()
    try:
        p = plan(args, parser)
    except ValueError as e:
        err(str(e))
        return 2
    if args.trust_features:
        for f in Path(args.features_dir).glob("features_*.joblib"):
            ser_files.record_written(f)
    try:
        _check_outputs(p)        # where the results go is checked before the training
        saved = _train(p, args)
    except ProtocolError as e:   # data this protocol or subset cannot use: said before the work
        err(str(e))
        return 2
    except (ValueError, SerError, FileNotFoundError) as e:
        err(str(e))
        return 1
    except OSError as e:   # a disk that filled up or went read-only during the run
        err(ser_files.describe_os_error(e, e.filename or p.reports_dir))
        return 1
    if saved and p.notice:
        info(p.notice)
    return 0


if __name__ == "__main__":
    sys.exit(main())
