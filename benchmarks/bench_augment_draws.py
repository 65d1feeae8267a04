#!/usr/bin/env python
"""How much a cross-corpus figure owes to the random draw of the augmented copies.

Each augmented copy of an actor is one "virtual speaker" with one random channel (speed factor,
EQ, filter, noise, gain: ser.augment.augment). Copies 1-4 and copies 5-8 are two independent
draws of the same recipe. This trains the shipped recipe (an ensemble of MLPs on pooled
statistics with 4 copies) once per draw on the corpus protocol (RAVDESS actors 01-20 -> all of
TESS) and prints the restricted and 8-way UAR per draw, then their mean and spread. Model seeds
are the same for every draw, so the spread is the augmentation's.

Needs create_features.py --feature stats --augment N with N >= copies x draws.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import ser.augment  # noqa: E402
import ser.console  # noqa: E402
import ser.paths  # noqa: E402
import ser.protocols  # noqa: E402
import ser.training  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--copies", type=int, default=4, help="copies per draw (default 4, as shipped)")
    ap.add_argument("--draws", type=int, default=3,
                    help="disjoint blocks of copies to train on (default 3: copies 1-4, 5-8, 9-12)")
    ap.add_argument("--ensemble", type=int, default=5, help="MLPs per model (default 5, as shipped)")
    ap.add_argument("--norms", default="global,speaker",
                    help="normalisations to run, comma-separated (global: no speaker "
                         "information; speaker: adapted to each test speaker)")
    ap.add_argument("--train-corpus", default="ravdess", choices=["ravdess", "tess"],
                    help="corpus protocol direction (default ravdess -> tess)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--features-dir", type=Path, default=ser.paths.FEATURES_DIR)
    args = ap.parse_args(argv)
    ser.console.quiet_tensorflow()
    norms = [n.strip() for n in args.norms.split(",") if n.strip()]
    bad = [n for n in norms if n not in ("global", "speaker")]
    if bad or args.copies < 1 or args.draws < 1:
        ap.error(f"--norms takes global and/or speaker (got {bad}); --copies and --draws >= 1")
    try:
        full = ser.protocols.load_dataset("stats", "speech+song+tess", features_dir=args.features_dir,
                               augment=args.copies * args.draws)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    folds = ser.protocols.split_corpus(full, args.seed, args.train_corpus)
    scores = {n: [] for n in norms}
    print(f"corpus protocol {folds[0].name}, {args.ensemble} MLPs, stats, {args.copies} copies "
          f"per draw, seed {args.seed}")
    for d in range(args.draws):
        block = full.aug[d * args.copies:(d + 1) * args.copies]
        ds = ser.protocols.Dataset(full.X, full.y, full.meta, full.feature, full.params, block)
        for norm in norms:
            cfg = ser.training.TrainConfig(batch_size=64, norm=norm, seed=args.seed,
                                 augment=args.copies, ensemble=args.ensemble)
            rec = ser.training.evaluate_model("mlp", ds, folds, cfg, protocol="corpus",
                                    subset="speech+song+tess", progress=False)["record"]
            scores[norm].append((rec["uar_restricted"], rec["uar_8way"]))
            print(f"  copies {d * args.copies + 1:2d}-{(d + 1) * args.copies:<2d}  {norm:8s} "
                  f"restricted {rec['uar_restricted']:.3f}  8-way {rec['uar_8way']:.3f}",
                  flush=True)
    for norm, s in scores.items():
        a = np.array(s)
        print(f"{norm:8s} over {len(a)} draws: restricted {a[:, 0].mean():.3f} ± "
              f"{a[:, 0].std():.3f} (min {a[:, 0].min():.3f}, max {a[:, 0].max():.3f}); "
              f"8-way {a[:, 1].mean():.3f} ± {a[:, 1].std():.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
