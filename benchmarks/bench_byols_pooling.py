#!/usr/bin/env python
"""Which pooling of the BYOL-S frames carries best, judged on validation actors only.

For every row of ``features_stats.joblib`` the encoder's frames are computed once (on the
whole utterance, and on the utterance with leading/trailing silence trimmed as the ``stats``
set trims it: 30 dB) and summarised by their max, mean and std over time (cached in
``features/.cache/byols-pooling-scratch.npz``). Each pooling (``maxmean``: max + mean, 512;
``maxmean_std``: that and the std, 1024; ``mean_std``: mean and std, 1024) is appended to the
``stats`` vector, as in the ``stats_byols`` set, and one MLP (the shipped recipe's member, no
augmented copies) is trained on each fold of the ``speaker`` protocol with early stopping on
the fold's two validation actors. The figure is the UAR **on those validation actors**, mean
and std over the 5 folds (of each seed); the folds' test actors are never looked at, so the choice made from
this table leaves the test figures of the README untouched.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import ser.audio  # noqa: E402
import ser.console  # noqa: E402
import ser.corpora  # noqa: E402
import ser.dsp  # noqa: E402
import ser.features  # noqa: E402
import ser.models  # noqa: E402
import ser.paths  # noqa: E402
import ser.protocols  # noqa: E402
import ser.training  # noqa: E402

SCRATCH = ser.paths.FEATURES_DIR / ".cache" / "byols-pooling-scratch.npz"
POOLINGS = ("maxmean", "maxmean_std", "mean_std")


def _summaries(path: str) -> np.ndarray:
    """(2, 3, 512): [whole, trimmed] x [max, mean, std] of the frames of one file."""
    from ser import byols, encoder
    from ser import numba_cache
    librosa = numba_cache.librosa()
    y = ser.audio.load_audio(path)
    out = []
    yt, _ = librosa.effects.trim(y, top_db=ser.dsp.TRIM_TOP_DB, frame_length=ser.audio.N_FFT,
                                 hop_length=ser.audio.HOP_LENGTH)
    for sig in (y, yt if len(yt) >= ser.audio.MIN_SAMPLES else y):
        s16 = ser.audio.resample(sig, ser.audio.SAMPLE_RATE, sr=byols.SAMPLE_RATE)
        f = encoder.load_encoder().frames(byols.normalise(byols.log_mel(s16)))
        out.append(np.stack([f.max(axis=0), f.mean(axis=0), f.std(axis=0)]))
    return np.stack(out).astype(np.float32)


def summaries(paths: np.ndarray, features_dir: Path, jobs: int) -> np.ndarray:
    if SCRATCH.exists():
        with np.load(SCRATCH, allow_pickle=False) as z:
            if np.array_equal(z["path"], paths):
                return z["S"]
    import joblib
    t0 = time.perf_counter()
    S = joblib.Parallel(n_jobs=jobs, batch_size=16)(
        joblib.delayed(_summaries)(str(features_dir / p)) for p in paths)
    S = np.stack(S)
    print(f"frames of {len(paths)} files (whole and trimmed) in {time.perf_counter() - t0:.0f} s")
    SCRATCH.parent.mkdir(parents=True, exist_ok=True)
    np.savez(SCRATCH, path=paths, S=S)
    return S


def pooled(S: np.ndarray, method: str, trimmed: bool) -> np.ndarray:
    mx, mean, std = (S[:, int(trimmed), k] for k in range(3))
    if method == "maxmean":
        return mx + mean
    if method == "maxmean_std":
        return np.concatenate([mx + mean, std], axis=1)
    return np.concatenate([mean, std], axis=1)


def _mlp(widths: tuple[int, ...]):
    """neural_network.py's mlp with other hidden layers (its dropouts: 0.2 in, 0.4 after each)."""
    def build(input_shape, n_classes=ser.corpora.N_CLASSES):
        import keras
        L = keras.layers
        layers = [keras.Input(input_shape), L.Flatten(), L.Dropout(0.2)]
        for u in widths:
            layers += [L.Dense(u, activation="relu"), L.Dropout(0.4)]
        return keras.Sequential(layers + [L.Dense(n_classes, activation="softmax")],
                                name="mlp_" + "_".join(map(str, widths)))
    return build


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--features-dir", type=Path, default=ser.paths.FEATURES_DIR)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--norms", default="global,speaker")
    ap.add_argument("--seeds", default="42",
                    help="comma-separated; each seed draws other validation actors and other "
                         "initialisations (the figure is over all folds of all seeds)")
    ap.add_argument("--alone", action="store_true", help="also the encoder's vector alone")
    ap.add_argument("--no-trimmed", action="store_true", help="only the whole utterance")
    ap.add_argument("--poolings", default=",".join(POOLINGS), help="comma-separated")
    ap.add_argument("--widths", default="256-128",
                    help="hidden layers of the MLPs to compare, e.g. 256-128,512-256 "
                         "(256-128 is neural_network.py's mlp; the dropouts are its own)")
    args = ap.parse_args(argv)
    ser.console.quiet_tensorflow()
    stats = ser.protocols.load_dataset("stats", "speech+song+tess", features_dir=args.features_dir)
    S = summaries(stats.meta["path"], args.features_dir, args.jobs)
    seeds = [int(x) for x in args.seeds.split(",")]
    folds = [(seed, f) for seed in seeds for f in ser.protocols.split_speaker(stats, seed)]
    print(f"speaker protocol, seeds {seeds}, {len(folds)} folds, UAR on each fold's validation "
          f"actors {[f.info['val_actors'] for _, f in folds]} (test actors unused); one MLP, "
          f"no copies")
    poolings = [p for p in args.poolings.split(",") if p]
    variants = [(m, t, False) for t in ((False,) if args.no_trimmed else (False, True))
                for m in poolings]
    if args.alone:
        variants += [(m, False, True) for m in poolings]
    widths = [tuple(int(u) for u in w.split("-")) for w in args.widths.split(",")]
    for w in widths:
        ser.models.MODELS[f"mlp_{w}"] = _mlp(w)
    for norm in [n.strip() for n in args.norms.split(",")]:
        for (method, trimmed, alone), w in [(v, w) for v in variants for w in widths]:
            B = pooled(S, method, trimmed)
            X = B if alone else np.concatenate([stats.X, B], axis=1)
            ds = ser.protocols.Dataset(X.astype(np.float32), stats.y, stats.meta, "scratch", {})
            cfg = ser.training.TrainConfig(batch_size=64, norm=norm)
            ds, cfg, _ = ser.training._adapt(ds, cfg)
            uars, t0 = [], time.perf_counter()
            for seed, f in folds:
                model, hist, nrm, _ = ser.training.train_one(f"mlp_{w}", ds, f, replace(cfg, seed=seed))
                p = ser.training.predict_proba(model, ds.X[f.val], nrm).argmax(axis=1)
                uars.append(ser.training.metrics(ds.y[f.val], p)["uar"])
            what = (f"{'byols' if alone else 'stats+byols'} {method}"
                    f"{' trimmed' if trimmed else ''}" + (f" mlp {w}" if len(widths) > 1 else ""))
            print(f"{norm:8s} {what:34s} {X.shape[1]:5d} values  validation UAR "
                  f"{np.mean(uars):.3f} ± {np.std(uars):.3f}  ({time.perf_counter() - t0:.0f} s)",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
