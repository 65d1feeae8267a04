#!/usr/bin/env python
"""A recipe's UAR on the validation actors of the ``speaker`` protocol: for choosing.

Each fold of the ``speaker`` protocol trains on its training actors (plus the augmented copies
of their rows, ``--augment``) with early stopping on its two validation actors, and the figure
is the UAR on those validation actors, mean ± std over the folds of every seed. The folds'
test actors are never looked at, so a choice made from this table (augmented copies or not,
how many ensemble members) leaves the test figures of the README untouched.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
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
    ap.add_argument("--augment", default="0,4", help="copies to compare, comma-separated")
    ap.add_argument("--ensemble", default="1", help="members to compare, comma-separated")
    ap.add_argument("--norms", default="global,speaker")
    ap.add_argument("--seeds", default="42,142")
    ap.add_argument("--features-dir", type=Path, default=ser.paths.FEATURES_DIR)
    args = ap.parse_args(argv)
    ser.console.quiet_tensorflow()
    copies = [int(a) for a in args.augment.split(",")]
    members = [int(e) for e in args.ensemble.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    full = ser.protocols.load_dataset(args.feature, "speech+song+tess", features_dir=args.features_dir,
                           augment=max(copies))
    folds = [(s, f) for s in seeds for f in ser.protocols.split_speaker(full, s)]
    print(f"{args.feature}: speaker protocol, seeds {seeds}, {len(folds)} folds, UAR on the "
          f"validation actors {[f.info['val_actors'] for _, f in folds]} (test actors unused)")
    for norm in [n.strip() for n in args.norms.split(",") if n.strip()]:
        for n_aug in copies:
            ds0 = ser.protocols.Dataset(full.X, full.y, full.meta, full.feature, full.params,
                             full.aug[:n_aug] if n_aug else None)
            for n_ens in members:
                cfg = ser.training.TrainConfig(batch_size=64, norm=norm, augment=n_aug, ensemble=n_ens)
                ds, cfg, _ = ser.training._adapt(ds0, cfg)
                uars, t0 = [], time.perf_counter()
                for seed, f in folds:
                    model, _, nrm, _ = ser.training.train_one("mlp", ds, f, replace(cfg, seed=seed))
                    p = ser.training.predict_proba(model, ds.X[f.val], nrm).argmax(axis=1)
                    uars.append(ser.training.metrics(ds.y[f.val], p)["uar"])
                print(f"{norm:8s} copies {n_aug}  mlp x{n_ens}  validation UAR "
                      f"{np.mean(uars):.3f} ± {np.std(uars):.3f}  "
                      f"({time.perf_counter() - t0:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
