#!/usr/bin/env python3
"""Latency of live_predictions.py against the original project's prediction path.

Not a test: run it by hand on an otherwise idle machine and compare the ratios of one run.

    .venv/bin/python benchmarks/bench_live.py                 # shipped model, else a tiny one
    .venv/bin/python benchmarks/bench_live.py --model M.h5 --original-cnn

Measures, on the same ~50 real files (RAVDESS speech FLAC at 22050 Hz, TESS FLAC at 24414 Hz,
and the 48 kHz WAV originals as users download them):

* per file, load + features + inference:
  - original: ``librosa.load(f, res_type="kaiser_fast")`` (needs ``pip install resampy``),
    40-MFCC mean, ``model.predict`` on a fresh ``keras.models.load_model``;
  - this project: ``Predictor.predict_file`` (soxr loader, MFCC from one STFT, tf.function);
* per window in streaming mode: a 3 s window at 22050 Hz through the energy gate, features and
  inference (``StreamProcessor.judge``);
* inference alone, per call: model.predict, predict_on_batch, the tf.function, TFLite;
* start-up: wall time of a fresh process until the first prediction is printed.

Targets: >= 15x faster per file, <= 5 ms per window.
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import ser.audio  # noqa: E402
import ser.checkpoint  # noqa: E402
import ser.console  # noqa: E402
import ser.corpora  # noqa: E402
import ser.features  # noqa: E402
import ser.paths  # noqa: E402
import ser.predict  # noqa: E402
import ser.stream  # noqa: E402

DATA = Path(os.environ.get("SER_DATA", ROOT.parent / "shared" / "data"))


def pick_files(data: Path, n_ravdess: int = 20, n_tess: int = 20) -> list[Path]:
    rav = sorted((data / "ravdess_speech").rglob("*.flac"))
    tess = sorted((data / "tess").rglob("*.flac"))
    orig = sorted((data / "originals").rglob("*.wav"))
    step_r, step_t = max(1, len(rav) // n_ravdess), max(1, len(tess) // n_tess)
    return rav[::step_r][:n_ravdess] + tess[::step_t][:n_tess] + orig


def original_cnn(path: Path) -> Path:
    """The original project's CNN (untrained weights): realistic inference cost."""
    keras = ser.console.import_keras()
    L = keras.layers
    m = keras.Sequential([
        keras.Input((40, 1)),
        L.Conv1D(128, 5, padding="same", activation="relu"), L.Dropout(0.1),
        L.MaxPooling1D(pool_size=8),
        L.Conv1D(128, 5, padding="same", activation="relu"), L.Dropout(0.1),
        L.Flatten(), L.Dense(8, activation="softmax")])
    meta = {"labels": list(ser.corpora.EMOTIONS), "feature": "mfcc",
            "feature_params": ser.features.feature_params("mfcc"), "input_shape": [40, 1],
            "normalization": None, "adaptation": "none", "model": "original-cnn-untrained"}
    with ser.console.stderr_silenced():
        ser.checkpoint.save_model(m, path, meta)
    return path


def timed(fn, *args) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def ms(x: float) -> str:
    return f"{x * 1000:8.2f} ms"


def bench_files(model_path: Path, files: list[Path], rounds: int, res_type: str) -> dict:
    """Per-file seconds of each path: {name: (per-file median of rounds, per-file best)}."""
    import librosa
    keras = ser.console.import_keras()
    with ser.console.stderr_silenced():
        orig_model = keras.models.load_model(str(model_path), compile=False)

    def original(f):
        data, sr = librosa.load(str(f), res_type=res_type)
        mfccs = np.mean(librosa.feature.mfcc(y=data, sr=sr, n_mfcc=40).T, axis=0)
        x = np.expand_dims(np.expand_dims(mfccs, axis=1), axis=0)
        return orig_model.predict(x, verbose=0)

    pred = ser.predict.Predictor(model_path)
    paths = {"original": original, f"Predictor ({pred.backend})": pred.predict_file}
    if ser.checkpoint.read_sidecar(model_path)["feature"] != "mfcc":   # the original path needs 40 MFCCs
        del paths["original"]
    if pred.backend != "tf.function":
        paths["Predictor (tf.function)"] = ser.predict.Predictor(model_path, backend="tf").predict_file
    for fn in paths.values():                         # warm every path (JIT, tracing)
        for f in files[:3]:
            fn(f)
    times = {k: {f: [] for f in files} for k in paths}
    names = list(paths)
    for r in range(rounds):          # whole passes, as a batch run does; order rotates
        for k in names[r % len(names):] + names[:r % len(names)]:
            gc.collect()
            time.sleep(0.5)          # let TensorFlow's threads settle after model.predict
            for f in files:
                times[k][f].append(timed(paths[k], f))
    out = {k: ([statistics.median(v) for v in t.values()], [min(v) for v in t.values()])
           for k, t in times.items()}
    return {"paths": out, "predictor": pred}


def bench_windows(pred: ser.predict.Predictor, files: list[Path], n: int) -> dict:
    sr = ser.audio.SAMPLE_RATE
    audio = np.concatenate([ser.audio.load_audio(f) for f in files[:20]])
    proc = ser.stream.StreamProcessor(pred, window=3.0, hop=0.5, gate_db=-200.0)   # judge every window
    hop, win = proc.n_hop, proc.n_window
    starts = [(i * hop) % (audio.size - win) for i in range(n)]
    for s in starts[:5]:
        proc.judge(audio[s:s + win], 0.0)
    total, feat, infer = [], [], []
    for s in starts:
        w = audio[s:s + win]
        total.append(timed(proc.judge, w, 0.0))
        t0 = time.perf_counter()
        v = pred.features(w)
        t1 = time.perf_counter()
        pred.predict_vector(v)
        t2 = time.perf_counter()
        feat.append(t1 - t0)
        infer.append(t2 - t1)
    return {"total": total, "features": feat, "inference": infer, "seconds": win / sr}


def bench_inference(pred: ser.predict.Predictor, n: int) -> dict:
    import tensorflow as tf
    x = np.random.default_rng(0).standard_normal((1, *pred.input_shape)).astype(np.float32)
    out = {}

    def rep(fn, k):
        fn()
        return statistics.median(timed(fn) for _ in range(k))
    out["model.predict"] = rep(lambda: pred.model.predict(x, verbose=0), max(10, n // 20))
    out["predict_on_batch"] = rep(lambda: pred.model.predict_on_batch(x), n)
    out[f"Predictor ({pred.backend})"] = rep(lambda: pred._infer(x), n)
    try:                      # TFLite, for comparison only (tf.lite.Interpreter is deprecated)
        with ser.console.stderr_silenced(), contextlib.redirect_stdout(io.StringIO()):
            t0 = time.perf_counter()
            conv = tf.lite.TFLiteConverter.from_keras_model(pred.model)
            blob = conv.convert()
            out["(TFLite conversion, once)"] = time.perf_counter() - t0
            try:
                from ai_edge_litert.interpreter import Interpreter
            except ImportError:
                Interpreter = tf.lite.Interpreter
            it = Interpreter(model_content=blob)
            it.allocate_tensors()
        i, o = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]

        def lite():
            it.set_tensor(i, x)
            it.invoke()
            return it.get_tensor(o).copy()
        diff = float(np.abs(lite() - pred._infer(x)).max())
        out[f"TFLite (max diff {diff:.1e})"] = rep(lite, n)
    except Exception as e:
        out[f"TFLite unavailable ({type(e).__name__})"] = float("nan")
    return out


def bench_startup(model_path: Path, f: Path, res_type: str, runs: int) -> dict:
    original = (
        "import os, sys, numpy as np, librosa, keras\n"
        f"m = keras.models.load_model({str(model_path)!r}, compile=False)\n"
        f"d, sr = librosa.load({str(f)!r}, res_type={res_type!r})\n"
        "x = np.mean(librosa.feature.mfcc(y=d, sr=sr, n_mfcc=40).T, axis=0)[None, :, None]\n"
        "print(int(np.argmax(m.predict(x, verbose=0))))\n")
    cmds = {"live_predictions.py": [sys.executable, str(ROOT / "live_predictions.py"),
                                    "--model", str(model_path), str(f)]}
    if ser.checkpoint.read_sidecar(model_path)["feature"] == "mfcc":   # the original's input
        cmds = {"original": [sys.executable, "-c", original], **cmds}
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = {k: [] for k in cmds}
    for _ in range(runs):
        for k, cmd in cmds.items():
            t0 = time.perf_counter()
            r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
            out[k].append(time.perf_counter() - t0)
            if r.returncode != 0:
                raise RuntimeError(f"{k} failed: {r.stderr.strip().splitlines()[-1:]}")
    return {k: statistics.median(v) for k, v in out.items()}


def report(title: str, model_path: Path, files: list[Path], args, res_type: str) -> None:
    print(f"\n=== {title}: {model_path}")
    r = bench_files(model_path, files, args.rounds, res_type)
    p90 = lambda v: float(np.percentile(v, 90))  # noqa: E731
    print(f"per file ({len(files)} files, each the median of {args.rounds} rounds; "
          f"load + features + inference):")
    orig_med, orig_best = r["paths"].get("original", (None, None))
    for k, (med, best) in r["paths"].items():
        label = (f"original (librosa.load {res_type} + mfcc + model.predict)"
                 if k == "original" else k)
        line = f"  {label:<58} median {ms(statistics.median(med))}  p90 {ms(p90(med))}"
        if k != "original" and orig_med:
            ratio = statistics.median(orig_med) / statistics.median(med)
            line += f"  speed-up {ratio:5.1f}x"
        print(line)
    print(f"  with each file's best of {args.rounds} rounds (less noise from other load):")
    for k, (med, best) in r["paths"].items():
        line = f"  {k:<58} median {ms(statistics.median(best))}"
        if k != "original" and orig_best:
            line += f"  speed-up {statistics.median(orig_best) / statistics.median(best):5.1f}x"
        print(line)
    print("  target: >= 15x" if orig_med else
          "  (no original path: the original project had only the 40-MFCC model)")
    pred = r["predictor"]
    target = 0.005 if ser.checkpoint.read_sidecar(model_path)["feature"] == "mfcc" else 0.010
    w = bench_windows(pred, files, args.windows)
    wt = statistics.median(w["total"])
    print(f"per streaming window ({w['seconds']:.1f} s at {ser.audio.SAMPLE_RATE} Hz, {args.windows} "
          f"windows): median {ms(wt)}  p95 {ms(float(np.percentile(w['total'], 95)))}  "
          f"best {ms(min(w['total']))}   (target <= {target * 1000:.0f} ms: "
          f"{'met' if wt <= target else 'NOT met'})")
    print(f"  of which features {ms(statistics.median(w['features']))}, "
          f"inference {ms(statistics.median(w['inference']))}")
    print("inference alone, one vector per call (median):")
    for k, v in bench_inference(pred, args.windows).items():
        print(f"  {k:<34} {ms(v)}")
    if args.startup_runs:
        s = bench_startup(model_path, files[0], res_type, args.startup_runs)
        print(f"start-up to first prediction (fresh process, median of {args.startup_runs}):")
        for k, v in s.items():
            print(f"  {k:<34} {v:8.2f} s")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, help="model to use (default: the recommended model and the shipped CNN, "
                    "else a tiny model trained on a few real files)")
    ap.add_argument("--original-cnn", action="store_true",
                    help="also run with the original project's CNN architecture (untrained)")
    ap.add_argument("--rounds", type=int, default=5, help="timed passes over the files")
    ap.add_argument("--windows", type=int, default=200, help="streaming windows to time")
    ap.add_argument("--startup-runs", type=int, default=2,
                    help="fresh processes per path for the start-up time (0 skips)")
    args = ap.parse_args(argv)
    if not (DATA / "ravdess_speech").is_dir():
        print(f"error: real corpora not found at {DATA} (set SER_DATA)", file=sys.stderr)
        return 2
    try:
        import resampy  # noqa: F401
        res_type = "kaiser_fast"
    except ImportError:
        print("note: resampy is missing (pip install resampy), so the original path uses "
              "soxr_hq; its figures are then too kind to it", file=sys.stderr)
        res_type = "soxr_hq"
    files = pick_files(DATA)
    tmp = Path(tempfile.mkdtemp(prefix="bench-live-"))
    models = []
    if args.model:
        models.append(("given model", args.model))
    elif ser.paths.DEFAULT_MODEL.exists():     # the recommended model, and the original's CNN
        models.append(("recommended model (the default)", ser.paths.DEFAULT_MODEL))
        if ser.paths.CNN_MODEL.exists():
            models.append(("shipped CNN (the original's reproduction)", ser.paths.CNN_MODEL))
    else:
        from tiny_model import build_tiny_model
        with ser.console.stderr_silenced():
            models.append(("tiny test model (no shipped model yet)",
                           build_tiny_model(tmp, DATA)))
    if args.original_cnn:
        models.append(("original CNN architecture, untrained", original_cnn(tmp / "cnn.h5")))
    kinds = [("originals" if "originals" in f.parts else f.parts[-3]) for f in files]
    print(f"files: {len(files)} ({kinds.count('ravdess_speech')} RAVDESS FLAC 22050 Hz, "
          f"{kinds.count('tess')} TESS FLAC 24414 Hz, "
          f"{kinds.count('originals')} original WAV 48 kHz, some stereo/AIFF)")
    print("load average at start: " + " ".join(f"{x:.2f}" for x in os.getloadavg())
          + f" ({os.cpu_count()} cores; figures from a loaded machine are not comparable)")
    for title, path in models:
        report(title, Path(path), files, args, res_type)
    print("\nload average at end: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
