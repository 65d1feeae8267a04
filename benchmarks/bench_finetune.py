"""Does fine-tuning BYOL-S's last layer beat the frozen encoder? (issue 17)

The ``stats_byols`` MLP of the ``speaker`` protocol, without speaker information (global
normalisation), in three variants per test fold, all from the same first stage:

1. **frozen**: the MLP trained on the frozen encoder's pooled features (the shipped recipe's
   features), early stopping on the fold's validation actors;
2. **frozen, trained on**: stage 1's MLP trained further at ``--lr-tune`` with the encoder
   still frozen (a control: what more training alone gives);
3. **fine-tuned**: stage 1's MLP and the encoder's last layer (``fc.3``, 512 x 512, its ReLU
   and the pooling in the graph) trained together at ``--lr-tune``, early stopping on the same
   validation actors.

The encoder's frames up to ``fc.0`` (+ ReLU) are computed once per file in numpy and kept in
memory (``--cache`` keeps them on disk between runs): only ``fc.3`` is trained, so the
convolutions never run again. The test folds only report; every stopping decision is made on
the validation actors. Prints UAR per fold and the means::

    python benchmarks/bench_finetune.py [--folds 5] [--seed 42] [--cache /tmp/fc0.npz]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ser import byols  # noqa: E402
from ser.features import SETS  # noqa: E402
from ser.paths import FEATURES_DIR  # noqa: E402

STATS_DIM = SETS["stats"].dim      # stats_byols = stats, then the pooled encoder frames


def _fc0_frames_of(paths: list[str], features_dir: str) -> list[np.ndarray]:
    """fc.0 + ReLU frames (T // 8, 512) of each file (run in a worker process)."""
    from ser import encoder as ser_encoder
    from ser.audio import SAMPLE_RATE, load_audio, resample
    full = ser_encoder.load_encoder()
    enc = byols.Encoder.__new__(byols.Encoder)      # the same weights, without fc.3
    enc.__dict__.update(full.__dict__)
    enc.fc_w, enc.fc_b = full.fc_w[:1], full.fc_b[:1]
    out = []
    for p in paths:
        y = load_audio(Path(features_dir) / p)       # as extraction: 22.05 kHz, then 16 kHz
        y16 = resample(y, SAMPLE_RATE, sr=byols.SAMPLE_RATE)
        out.append(enc.frames(byols.normalise(byols.log_mel(y16, sr=byols.SAMPLE_RATE)))
                   .astype(np.float32))
    return out


def fc0_frames(paths: list[str], *, features_dir: str, jobs: int, cache: Path | None
               ) -> list[np.ndarray]:
    if cache is not None and cache.exists():
        with np.load(cache, allow_pickle=False) as z:
            if list(z["paths"]) == list(paths):
                flat, lengths = z["frames"], z["lengths"]
                return np.split(flat, np.cumsum(lengths)[:-1])
    import joblib
    chunks = [list(paths[i::jobs * 8]) for i in range(jobs * 8)]
    res = joblib.Parallel(n_jobs=jobs)(joblib.delayed(_fc0_frames_of)(c, features_dir)
                                       for c in chunks)
    frames: list[np.ndarray] = [None] * len(paths)  # type: ignore[list-item]
    for i, r in enumerate(res):
        for k, f in enumerate(r):
            frames[i + k * jobs * 8] = f
    if cache is not None:
        tmp = cache.with_name(cache.name + ".part.npz")
        np.savez(tmp, paths=np.asarray(paths), frames=np.concatenate(frames),
                 lengths=np.array([len(f) for f in frames]))
        os.replace(tmp, cache)
    return frames


def padded(frames: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    t = max(len(f) for f in frames)
    x = np.zeros((len(frames), t, byols.EMBED_DIM), dtype=np.float32)
    mask = np.zeros((len(frames), t), dtype=np.float32)
    for i, f in enumerate(frames):
        x[i, :len(f)] = f
        mask[i, :len(f)] = 1.0
    return x, mask


def build(keras, state: dict, n_stats: int, head, mean: np.ndarray, std: np.ndarray):
    """frames (B, T, 512), mask (B, T), stats (B, n_stats, standardised) -> class
    probabilities: fc.3 + ReLU, masked (max + mean, std) pooling, the training rows'
    standardisation, concatenated with the statistics, ``head``."""
    ops, L = keras.ops, keras.layers
    frames = keras.Input((None, byols.EMBED_DIM), name="fc0_frames")
    mask = keras.Input((None,), name="mask")
    stats = keras.Input((n_stats,), name="stats")
    fc3 = L.Dense(byols.EMBED_DIM, activation="relu", name="fc_3")
    z = fc3(frames)
    fc3.set_weights([state["fc.3.weight"].T, state["fc.3.bias"]])

    class Pool(L.Layer):
        def call(self, z, m):
            m3 = ops.expand_dims(m, -1)
            n = ops.sum(m3, axis=1)
            mu = ops.sum(z * m3, axis=1) / n
            mx = ops.max(z * m3, axis=1)          # ReLU outputs >= 0: padding (0) never wins
            var = ops.sum(ops.square(z - ops.expand_dims(mu, 1)) * m3, axis=1) / n
            # + 1e-10: a dead unit (var 0) would give sqrt's infinite gradient, NaN weights
            return ops.concatenate([mx + mu, ops.sqrt(ops.maximum(var, 0.0) + 1e-10)], axis=-1)

    pooled = Pool(name="pool")(z, mask)
    pooled = (pooled - mean[STATS_DIM:]) / std[STATS_DIM:]
    x = L.Concatenate()([stats, pooled])
    return keras.Model([frames, mask, stats], head(x)), fc3


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--features-dir", default=str(FEATURES_DIR))
    p.add_argument("--cache", type=Path, default=None, help="keep the fc.0 frames in this .npz")
    p.add_argument("--lr-tune", type=float, default=1e-4, help="stage 2 learning rate (1e-4)")
    p.add_argument("--epochs-tune", type=int, default=30, help="stage 2 maximum epochs (30)")
    p.add_argument("--jobs", type=int, default=2)
    args = p.parse_args(argv)

    from ser.console import import_keras, quiet_tensorflow
    from ser.models import MODELS, compile_model
    from ser.protocols import load_dataset, make_folds
    from ser.normalization import fit_normalization
    from ser.training import metrics
    from ser import encoder as ser_encoder
    quiet_tensorflow()
    try:
        ds = load_dataset("stats_byols", "speech+song+tess", features_dir=args.features_dir)
    except (FileNotFoundError, ValueError) as e:       # no features yet: one line, not a trace
        print(f"bench_finetune: {e}", file=sys.stderr)
        return 1
    assert ds.X.shape[1] == STATS_DIM + 2 * byols.EMBED_DIM, ds.X.shape
    t0 = time.perf_counter()
    frames = fc0_frames(list(ds.meta["path"]), features_dir=args.features_dir,
                        jobs=args.jobs, cache=args.cache)
    print(f"fc.0 frames of {len(frames)} files in {time.perf_counter() - t0:.0f} s "
          f"(lengths {min(map(len, frames))}-{max(map(len, frames))})", flush=True)
    state = ser_encoder.read_weights()
    # the frozen graph must give the cached feature set: fc.3 + ReLU + pooling in numpy
    for i in range(0, len(frames), max(1, len(frames) // 20)):
        z = np.maximum(frames[i] @ state["fc.3.weight"].T + state["fc.3.bias"], 0)
        v = byols.pool(z, method="maxmean_std")
        err = np.max(np.abs(v - ds.X[i, STATS_DIM:]))
        assert err < 1e-3 * (1 + np.abs(v).max()), (i, err)
    keras = import_keras()
    folds = make_folds(ds, "speaker", args.seed, k=args.folds)
    rows = []
    for fold in folds:
        keras.utils.set_random_seed(args.seed)
        tr, va, te = fold.train, fold.val, fold.test
        norm = fit_normalization(ds.X[tr], "global")
        mean, std = (np.asarray(norm[k], dtype=np.float32) for k in ("mean", "std"))
        Xs = (ds.X - mean) / std
        # stage 1: the frozen encoder's features (the MLP recipe: RMSprop 1e-3, batch 64)
        head = compile_model(MODELS["mlp"]((ds.X.shape[1],)), 1e-3)
        stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=10,
                                             restore_best_weights=True, start_from_epoch=5)
        t = time.perf_counter()
        h1 = head.fit(Xs[tr], ds.y[tr], batch_size=64, epochs=150,
                      validation_data=(Xs[va], ds.y[va]), callbacks=[stop], verbose=0)
        s1 = time.perf_counter() - t

        def uar(model, inputs, idx):
            pr = model.predict(inputs, batch_size=256, verbose=0)
            return metrics(ds.y[idx], pr.argmax(1))["uar"]

        r = {"fold": fold.name, "frozen": uar(head, Xs[te], te),
             "frozen_val": uar(head, Xs[va], va), "s1_epochs": len(h1.epoch)}
        w1 = head.get_weights()
        # stage 2a: the control, frozen encoder trained on at the lower rate
        compile_model(head, args.lr_tune)
        stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=5,
                                             restore_best_weights=True)
        head.fit(Xs[tr], ds.y[tr], batch_size=64, epochs=args.epochs_tune,
                 validation_data=(Xs[va], ds.y[va]), callbacks=[stop], verbose=0)
        r["trained_on"] = uar(head, Xs[te], te)
        r["trained_on_val"] = uar(head, Xs[va], va)
        head.set_weights(w1)
        # stage 2b: fc.3 and the MLP together
        model, fc3 = build(keras, state, STATS_DIM, head, mean, std)
        compile_model(model, args.lr_tune)

        def inputs(idx):
            x, m = padded([frames[i] for i in idx])
            return [x, m, Xs[idx, :STATS_DIM]]

        itr, iva, ite = inputs(tr), inputs(va), inputs(te)
        assert abs(uar(model, ite, te) - r["frozen"]) < 0.01   # the same model before tuning
        stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=5,
                                             restore_best_weights=True)
        t = time.perf_counter()
        h = model.fit(itr, ds.y[tr], batch_size=64, epochs=args.epochs_tune,
                      validation_data=(iva, ds.y[va]), callbacks=[stop], verbose=0)
        s2 = time.perf_counter() - t
        r["tuned"] = uar(model, ite, te)
        r["tuned_val"] = uar(model, iva, va)
        r["s2_epochs"] = len(h.epoch)
        r["fc3_change"] = float(np.linalg.norm(fc3.get_weights()[0] - state["fc.3.weight"].T)
                                / np.linalg.norm(state["fc.3.weight"]))
        rows.append(r)
        print(f"{fold.name}: UAR frozen {r['frozen']:.3f} (val {r['frozen_val']:.3f}), trained "
              f"on {r['trained_on']:.3f} (val {r['trained_on_val']:.3f}), fine-tuned "
              f"{r['tuned']:.3f} (val {r['tuned_val']:.3f}); stage 1 {s1:.0f} s, "
              f"stage 2 {r['s2_epochs']} epochs {s2:.0f} s, |dW|/|W| {r['fc3_change']:.3f}",
              flush=True)
    for k in ("frozen", "trained_on", "tuned"):
        v = np.array([r[k] for r in rows])
        vv = np.array([r[k + "_val"] for r in rows])
        print(f"{k:11s} test UAR {v.mean():.3f} ± {v.std():.3f}   validation {vv.mean():.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
