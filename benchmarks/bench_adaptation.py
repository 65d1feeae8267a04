#!/usr/bin/env python
"""How speaker adaptation degrades with little enrolment audio (speaker protocol).

For each fold of the speaker protocol (RAVDESS actors held out, TESS in training), one MLP of
the shipped recipe (4 augmented copies; the shipped model averages five such MLPs) is
trained on per-speaker-normalised pooled statistics (`--norm speaker`); each test speaker is then
normalised with statistics from only N of their own utterances (drawn at random, labels unused,
shrunk towards the training population as live_predictions.py --enrol does), and judged on all
of their utterances. Prints UAR mean +- std over folds for each N, beside no adaptation
(population statistics) and all utterances.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import ser.normalization  # noqa: E402
import ser.models  # noqa: E402
import ser.features  # noqa: E402
import ser.paths  # noqa: E402
import ser.protocols  # noqa: E402
import ser.training  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--subset", default="speech+song+tess", help="corpora joined by '+'")
    ap.add_argument("--sizes", default="0,5,10,25,50,all",
                    help="enrolment sizes to try (0 = population statistics)")
    ap.add_argument("--draws", type=int, default=3, help="random enrolment draws per speaker")
    ap.add_argument("--model", default="mlp", choices=list(ser.models.MODELS),
                    help="model trained per fold (default mlp: one member of the shipped "
                         "ensemble)")
    ap.add_argument("--augment", type=int, default=4,
                    help="augmented copies added to training rows (default 4, as shipped; "
                         "create_features.py --feature stats --augment N makes them)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--feature", default="stats", choices=ser.features.FEATURE_SETS,
                    help="feature set (default stats; stats_byols for the encoder's model)")
    ap.add_argument("--features-dir", type=Path, default=ser.paths.FEATURES_DIR)
    args = ap.parse_args(argv)
    from sklearn.metrics import balanced_accuracy_score
    raw = ser.protocols.load_dataset(args.feature, args.subset, features_dir=args.features_dir,
                          augment=args.augment)
    ds = raw.speaker_normalized()
    folds = ser.protocols.split_speaker(ds, args.seed)
    cfg = ser.training.TrainConfig(batch_size=64, norm="none", seed=args.seed)
    sizes = [s for s in args.sizes.split(",")]
    rng = np.random.default_rng(args.seed)
    scores = {s: [] for s in sizes}
    for f in folds:
        model, *_ = ser.training.train_one(args.model, ds, f, cfg)
        prior = ser.normalization.fit_normalization(raw.X[np.concatenate([f.train, f.val])], "global")
        for s in sizes:
            preds, truth = [], []
            for actor in np.unique(raw.meta["actor"][f.test]):
                idx = f.test[raw.meta["actor"][f.test] == actor]
                for _ in range(1 if s in ("0", "all") else args.draws):
                    if s == "0":
                        st = prior
                    elif s == "all":
                        st = ser.normalization.speaker_stats(raw.X[idx])
                    else:
                        pick = rng.choice(idx, size=min(int(s), len(idx)), replace=False)
                        st = ser.normalization.speaker_stats(raw.X[pick], prior)
                    Xn = (raw.X[idx] - np.asarray(st["mean"], np.float32)) / \
                        np.asarray(st["std"], np.float32)
                    p = np.asarray(model.predict(Xn.reshape(len(idx), -1, 1), verbose=0))
                    preds.append(p.argmax(1))
                    truth.append(raw.y[idx])
            scores[s].append(balanced_accuracy_score(np.concatenate(truth),
                                                     np.concatenate(preds)))
        print(f"{f.name}: " + ", ".join(f"N={s}: {scores[s][-1]:.3f}" for s in sizes),
              flush=True)
    print("\n| enrolment utterances per test speaker | UAR (mean ± std over folds) |")
    print("|---|---|")
    for s in sizes:
        label = {"0": "0 (population statistics)", "all": "all (~100)"}.get(s, s)
        print(f"| {label} | {np.mean(scores[s]):.3f} ± {np.std(scores[s]):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
