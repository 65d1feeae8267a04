#!/usr/bin/env python
"""A protocol's figure over several seeds: the mean and spread a single run cannot give.

Trains the recipe given (``--feature``, ``--augment``, ``--ensemble``, MLP) on the ``corpus``
protocol (one direction), the ``speaker`` protocol or the ``random`` one (the original's:
song + TESS, a random split, accuracy) once per seed, with and/or without per-speaker
normalisation, and prints each run and the mean ± std over seeds. A seed moves the members'
initialisations and shuffling and, for ``speaker``, the draw of each fold's validation actors
(early stopping; for ``random``, the validation rows: its test third stays the original's);
the test actors and the augmented copies stay the same.
Seeds are spaced by 100 so that the ensembles' members (seeds SEED..SEED+N-1) never overlap.

Needs ``create_features.py --feature FEATURE [--augment N]``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import ser.console  # noqa: E402
import ser.features  # noqa: E402
import ser.paths  # noqa: E402
import ser.protocols  # noqa: E402
import ser.training  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--feature", default="stats_byols", choices=ser.features.FEATURE_SETS)
    ap.add_argument("--protocol", default="corpus", choices=["corpus", "speaker", "random"])
    ap.add_argument("--train-corpus", default="ravdess", choices=["ravdess", "tess"])
    ap.add_argument("--augment", type=int, default=4)
    ap.add_argument("--ensemble", type=int, default=5)
    ap.add_argument("--seeds", default="42,142,242")
    ap.add_argument("--norms", default="global,speaker")
    ap.add_argument("--features-dir", type=Path, default=ser.paths.FEATURES_DIR)
    args = ap.parse_args(argv)
    ser.console.quiet_tensorflow()
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    norms = [n.strip() for n in args.norms.split(",") if n.strip()]
    subset = "song+tess" if args.protocol == "random" else "speech+song+tess"
    try:
        ds = ser.protocols.load_dataset(args.feature, subset, features_dir=args.features_dir,
                                        augment=args.augment)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    key = {"corpus": "uar_restricted", "random": "accuracy"}.get(args.protocol, "uar")
    print(f"{args.protocol} protocol"
          + (f" ({args.train_corpus} -> other)" if args.protocol == "corpus" else "")
          + f", mlp x{args.ensemble}, {args.feature}, {args.augment} copies, seeds {seeds}")
    scores = {n: [] for n in norms}
    for seed in seeds:
        folds = ser.protocols.make_folds(ds, args.protocol, seed, train_corpus=args.train_corpus)
        for norm in norms:
            cfg = ser.training.TrainConfig(batch_size=64, norm=norm, seed=seed, augment=args.augment,
                                 ensemble=args.ensemble)
            t0 = time.perf_counter()
            rec = ser.training.evaluate_model("mlp", ds, folds, cfg, protocol=args.protocol,
                                              subset=subset, progress=False)["record"]
            scores[norm].append(rec[key])
            extra = (f" 8-way {rec['uar_8way']:.3f}" if args.protocol == "corpus"
                     else f" UAR {rec['uar']:.3f}" if args.protocol == "random"
                     else f" ± {rec['uar_std']:.3f} over folds")
            print(f"  seed {seed:4d}  {norm:8s} {key} {rec[key]:.3f}{extra}  "
                  f"({rec['epochs']:.0f} epochs, {time.perf_counter() - t0:.0f} s)", flush=True)
    for norm, s in scores.items():
        a = np.array(s)
        print(f"{norm:8s} over {len(a)} seeds: {key} {a.mean():.3f} ± {a.std():.3f} "
              f"(min {a.min():.3f}, max {a.max():.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
