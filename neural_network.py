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

Results go to ``media/`` (plots, classification report, ``results.json`` and ``results.md``).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ser import files as ser_files
from ser.cluster import SCHEDULER_ENV, scheduler_default
from ser.console import import_keras, quiet_tensorflow, show_progress
from ser.corpora import FAMILIES, families_of, parse_subset
from ser.features import FEATURE_SETS
from ser.models import MODELS, ORIGINAL_MODELS
from ser.paths import CNN_MODEL, FEATURES_DIR, MEDIA_DIR, MODELS_DIR, ROOT
from ser.protocols import PROTOCOLS, load_dataset
from ser.training import TrainConfig, _protocol_records, run, save_trained, train_final


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="improved_cnn", choices=[*MODELS, "all"],
                   help="model to train, or all to compare the original four "
                        "(default improved_cnn)")
    p.add_argument("--protocol", default="random", choices=PROTOCOLS,
                   help="evaluation protocol (default random)")
    p.add_argument("--subset", default=None,
                   help="corpora joined by '+': speech, song, tess (default song+tess for "
                        "original and random, speech+song+tess for speaker and corpus)")
    p.add_argument("--feature", default="mfcc", choices=FEATURE_SETS,
                   help="feature set from create_features.py (default mfcc)")
    p.add_argument("--epochs", type=int, default=150, help="maximum epochs (default 150)")
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
                        "and save it; the shipped model is made this way")
    p.add_argument("--exclude-actors", default="", metavar="N,N,...",
                   help="with --all-data: leave these actors' rows out, to measure the model "
                        "on voices it never heard (benchmarks/bench_invariance.py --actors)")
    p.add_argument("--save", type=Path, default=None,
                   help=f"where to save the model (default {CNN_MODEL.relative_to(ROOT)}"
                        " for the improved CNN with the recipe's options, models/<model>.h5 "
                        "with --all-data; a run with other options goes to models/runs/ "
                        "instead, so that an experiment never replaces a shipped model). A "
                        "model that is replaced is kept under models/previous/")
    p.add_argument("--no-save", action="store_true", help="do not save any model")
    p.add_argument("--trust-features", action="store_true",
                   help="read .joblib feature files that this installation did not write (they "
                        "are pickles: loading one can run code; only for files from a source "
                        "you trust). Records them as trusted")
    p.add_argument("--features-dir", type=Path, default=FEATURES_DIR,
                   help="folder with the features_<set>.joblib files")
    p.add_argument("--media-dir", type=Path, default=MEDIA_DIR,
                   help="where plots and result tables go")
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
    return p


# the options that make a run the shipped recipe when they keep their defaults
RECIPE_OPTIONS = ("feature", "subset", "epochs", "batch_size", "learning_rate", "patience",
                  "norm", "augment", "ensemble", "seed", "features_dir", "exclude_actors")


def _actors(text: str) -> list[int]:
    try:
        return [int(a) for a in text.split(",") if a.strip()]
    except ValueError:
        raise ValueError(f"--exclude-actors takes actor numbers separated by commas, got "
                         f"{text!r}") from None


def experimental_options(args, parser) -> list[str]:
    """The training options of ``args`` that differ from the shipped recipe (the defaults)."""
    return [f"--{k.replace('_', '-')} {getattr(args, k)}" for k in RECIPE_OPTIONS
            if getattr(args, k) != parser.get_default(k)]


def save_target(args, model: str, changed: list[str]) -> Path | None:
    """Where this run saves its model: ``--save``; else the default name, unless the run
    differs from the recipe (``changed``: see :func:`experimental_options`) of a shipped
    model of that name (then ``models/runs/``, so that an experiment never replaces a shipped
    model)."""
    if args.no_save:
        return None
    if args.save:
        return args.save
    default = CNN_MODEL if model == "improved_cnn" else MODELS_DIR / f"{model}.h5"
    if model != "improved_cnn" and not args.all_data:
        return None
    if not changed:
        return default
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = MODELS_DIR / "runs" / f"{model}_{args.feature}_{args.protocol}_{stamp}.h5"
    print(f"this run differs from the shipped recipe ({', '.join(changed)}): its model goes "
          f"to {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}, not "
          f"{default.name} (--save PATH to choose)", file=sys.stderr)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verbose:
        import_keras(verbose=True)
    else:
        quiet_tensorflow()
    changed = experimental_options(args, parser)   # before the defaults that depend on others
    if args.trust_features:
        for f in Path(args.features_dir).glob("features_*.joblib"):
            ser_files.record_written(f)
    if args.subset is None:
        args.subset = ("song+tess" if args.protocol in ("original", "random")
                       and not args.all_data else "speech+song+tess")
    batch = args.batch_size or (16 if args.protocol == "original" else 64)
    norm = args.norm or ("none" if args.protocol == "original" else "global")
    cfg = TrainConfig(epochs=args.epochs, batch_size=batch, learning_rate=args.learning_rate,
                      patience=args.patience, seed=args.seed, norm=norm,
                      augment=args.augment, ensemble=args.ensemble,
                      verbose=2 if args.verbose else 0)
    models = list(ORIGINAL_MODELS) if args.model == "all" else [args.model]
    try:
        save_to = None if len(models) != 1 else save_target(args, models[0], changed)
        # where the results go is checked before the training
        ser_files.check_writable(args.media_dir, what="--media-dir")
        if save_to is not None and (args.all_data or args.protocol in ("original", "random")):
            ser_files.check_writable(Path(save_to).parent, what="model folder")
        parse_subset(args.subset)
        if args.jobs < 1:
            raise ValueError(f"--jobs must be >= 1 (got {args.jobs})")
        if args.ensemble < 1 or args.augment < 0:
            raise ValueError(f"--ensemble must be >= 1 (got {args.ensemble}) and --augment "
                             f">= 0 (got {args.augment})")
        if args.all_data:
            if len(models) != 1:
                raise ValueError("--all-data trains one model: pass --model NAME")
            if save_to is None:
                raise ValueError("--all-data trains a model to save: drop --no-save")
            train_final(models[0], subset=args.subset, feature=args.feature, cfg=cfg,
                        out=save_to,
                        features_dir=args.features_dir,
                        exclude_actors=_actors(args.exclude_actors),
                        epochs=args.epochs if args.epochs != 150 else None,
                        protocol_record=_protocol_records(args.media_dir, models[0],
                                                          args.subset, args.feature, cfg.norm,
                                                          cfg.augment, cfg.ensemble))
            return 0
        directions = (families_of(parse_subset(args.subset)) if args.train_corpus == "both"
                      else [args.train_corpus])
        for direction in (directions if args.protocol == "corpus" else ["ravdess"]):
            records, outs = run(models=models, protocol=args.protocol, subset=args.subset,
                                feature=args.feature, cfg=cfg, features_dir=args.features_dir,
                                media_dir=args.media_dir, k=args.folds,
                                train_corpus=direction, progress=show_progress(args.quiet),
                                scheduler=args.scheduler, jobs=args.jobs)
        if save_to and args.protocol in ("original", "random") and len(models) == 1:
            o = outs[models[0]]
            ds = load_dataset(args.feature, args.subset, features_dir=args.features_dir)
            save_trained(o["model"], o["norm"], ds, models[0], save_to,
                         protocol=args.protocol, subset=args.subset, record=o["record"],
                         cfg=cfg)
    except (ValueError, ser_files.OutputError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:   # a disk that filled up or went read-only during the run
        print(f"error: {ser_files.describe_os_error(e, e.filename or args.media_dir)}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
