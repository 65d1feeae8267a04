#!/usr/bin/env python
"""Benchmark feature extraction on a Dask cluster against the local joblib path.

On the same audio files (``--limit`` RAVDESS speech and song FLACs from the shared corpora,
evenly spaced over actors and names, copied into ``Actor_XX/`` folders under ``--tmp``), in one
process, with the per-file cache off (every file is computed every time):

- ``local``    ``ser.extract.extract(jobs=W)``: joblib's loky workers on this machine;
- ``cluster``  ``ser.extract.extract(scheduler=...)`` on a ``dask scheduler`` + W
               ``dask worker --nthreads 1`` processes on 127.0.0.1 (tests/dask_cluster.py);
- ``no-op``    joblib-on-Dask tasks of one call each (a path string) that do no work
               (``os.path.getsize``): what the cluster machinery alone costs per task (client,
               scheduler, worker, serialisation, round trips), the part that does not shrink
               with more workers.

Each is run ``--repeat`` times; the first (cold: worker start, imports, numba JIT) and the
fastest (warm) are reported. From the warm figures:

- per-file cost per worker ``c = W * seconds / files`` for each path (the cluster's after its
  fixed cost per run: connecting, checking the workers' code and paths), and the overhead the
  cluster adds ``c_cluster - c_local`` (ms per file);
- the estimated time for ``--clips`` clips on N workers (one core each):
  ``clips * c_cluster / N``, but never faster than the serial part: the client and the
  scheduler handle every task in turn, ``t_task`` each (no-op run), and create_features lets
  joblib's dask backend size the tasks to at least 0.2 s of work, ``0.2 / c_cluster`` files:
  ``clips * t_task / (0.2 / c_cluster)``; plus the cold start-up measured here. Not modelled:
  reading the audio from a shared file system or object store (here: local disk, page cache).

The result is a Markdown table on stdout. Keep ``W`` at the number of free cores: on a shared
machine the figures are only as good as the cores are free (the load average is printed).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
DEFAULT_DATA = Path(os.environ.get("SER_DATA", ROOT.parent / "shared" / "data"))


def pick_files(data: Path, limit: int) -> list[Path]:
    files = sorted(p for corpus in ("ravdess_speech", "ravdess_song")
                   for p in (data / corpus).glob("Actor_*/*.flac"))
    if not files:
        raise SystemExit(f"error: no RAVDESS FLACs under {data} (set SER_DATA or --data)")
    if limit and limit < len(files):
        step = len(files) / limit
        files = [files[int(i * step)] for i in range(limit)]
    return files


def timed(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def noop_run(paths: list[str]) -> None:
    """Inside ``dask_backend``: the joblib-on-Dask round trip of every path, no work."""
    import joblib
    list(joblib.Parallel(n_jobs=-1, batch_size=1, return_as="generator_unordered")(
        joblib.delayed(os.path.getsize)(p) for p in paths))


def connect(address: str, root: Path) -> None:
    """What every cluster run does before its first task: connect, check code and paths."""
    from ser.cluster import dask_backend
    with dask_backend(address, see=root):
        pass


def fmt_t(s: float) -> str:
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--limit", type=int, default=300, help="number of files")
    p.add_argument("--workers", type=int, default=2,
                   help="W: local joblib jobs and Dask workers (1 thread each)")
    p.add_argument("--feature", default="mfcc", help="feature set (create_features --feature)")
    p.add_argument("--repeat", type=int, default=2, help="runs of each path")
    p.add_argument("--clips", type=int, default=100_000, help="clips of the estimate")
    p.add_argument("--nodes", default="2,8,32", help="worker counts N of the estimate")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--tmp", type=Path, default=Path(tempfile.gettempdir()))
    args = p.parse_args(argv)

    from dask_cluster import Cluster, have_distributed
    why = have_distributed()
    if why:
        print(f"error: {why}", file=sys.stderr)
        return 1
    import ser.features

    tmp = Path(tempfile.mkdtemp(prefix="bench_dask_", dir=args.tmp))
    try:
        root = tmp / "features"
        files = pick_files(args.data, args.limit)
        for f in files:
            (root / f.parent.name).mkdir(parents=True, exist_ok=True)
            shutil.copy(f, root / f.parent.name / f.name)
        n = len(files)
        paths = [str(root / f.parent.name / f.name) for f in files]
        out = tmp / "out"
        out.mkdir()
        sets = [args.feature] if args.feature != "all" else list(ser.features.FEATURE_SETS)
        print(f"{n} files, feature {args.feature}, W = {args.workers}, "
              f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}", flush=True)

        def extract(**kw):
            r = ser.extract.extract(root, feature_sets=sets, use_cache=False, progress=False,
                           out_dir=out, **kw)
            assert r["files"] == n and not r["skipped"], r["skipped"]

        local = timed(lambda: extract(jobs=args.workers), args.repeat)
        print(f"local:   {', '.join(f'{t:.1f} s' for t in local)}", flush=True)
        t0 = time.perf_counter()
        with Cluster(tmp / "cluster", n_workers=args.workers) as c:
            up = time.perf_counter() - t0
            cluster = timed(lambda: extract(scheduler=c.address), args.repeat)
            print(f"cluster: {', '.join(f'{t:.1f} s' for t in cluster)} "
                  f"(cluster start {up:.1f} s)", flush=True)
            fixed = timed(lambda: connect(c.address, root), args.repeat)
            print(f"connect and checks: {', '.join(f'{t:.2f} s' for t in fixed)}", flush=True)
            with ser.cluster.dask_backend(c.address):
                noop = timed(lambda: noop_run(paths), args.repeat)
            print(f"no-op:   {', '.join(f'{t:.2f} s' for t in noop)}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    W = args.workers
    lw, cw, nw, fw = min(local), min(cluster), min(noop), min(fixed)
    c_local, c_cluster = W * lw / n, W * (cw - fw) / n   # seconds per file per worker
    t_task = nw / n                                       # seconds per task, not parallel
    per_task = max(1.0, 0.2 / c_cluster)                  # files per task (auto batching)
    serial = t_task / per_task                            # seconds per file, not parallel
    startup = max(cluster[0] - cw, 0.0) + up + fw
    print()
    print("| path | files/s (warm) | cold run | ms per file per worker |")
    print("|---|---|---|---|")
    print(f"| local joblib, {W} processes | {n / lw:.1f} | {local[0]:.1f} s | "
          f"{1000 * c_local:.1f} |")
    print(f"| Dask, {W} workers × 1 thread | {n / cw:.1f} | {cluster[0]:.1f} s "
          f"(+ {up:.1f} s cluster start) | {1000 * c_cluster:.1f} |")
    print(f"| Dask no-op, 1 call per task (machinery only) | {n / nw:.0f} | "
          f"{noop[0]:.2f} s | {1000 * W * nw / n:.2f} |")
    print()
    print(f"Overhead the cluster adds: {1000 * (c_cluster - c_local):+.1f} ms per file per "
          f"worker (cluster − local, after {fw:.2f} s per run to connect and check the "
          f"workers); machinery alone (no-op): {1000 * t_task:.2f} ms per task of serial "
          f"client/scheduler time, i.e. {1000 * serial:.3f} ms per file in tasks of "
          f"{per_task:.0f} files (0.2 s).")
    print()
    print(f"| workers N | estimated time for {args.clips:,} clips | bound by |")
    print("|---|---|---|")
    for N in (int(x) for x in args.nodes.split(",")):
        par, ser = args.clips * c_cluster / N, args.clips * serial
        print(f"| {N} | {fmt_t(max(par, ser) + startup)} | "
              f"{'workers' if par >= ser else 'client/scheduler'} |")
    print(f"\n(estimate: clips × {1000 * c_cluster:.1f} ms / N, at least clips × "
          f"{1000 * serial:.3f} ms, plus {startup:.0f} s start-up; audio on a local disk)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
