"""The four-model comparison one after the other and side by side, in one run (issue 20).

Runs ``neural_network.py --model all --protocol speaker`` with ``--jobs 1`` and with
``--jobs 2`` (or ``--jobs-list``), each in a fresh process writing to its own temporary
``--media-dir``, in alternating order over ``--rounds``; prints each wall time, the ratio to
the first ``--jobs`` value, and whether every model's accuracy and UAR came out the same (they
must: each training is seeded and alone in its process)::

    python benchmarks/bench_comparison.py [--epochs 6] [--rounds 1]

Without ``--epochs`` the comparison is the full one (early stopping, up to 150 epochs): about
11 min with ``--jobs 2`` and 15 min with ``--jobs 1`` on this machine.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINE = re.compile(r"^(\w+)\s+speaker\s+\S+\s+\S+\s+acc ([\d.]+) UAR ([\d.]+)", re.M)


def one_run(jobs: int, epochs: int | None, feature: str) -> tuple[float, dict]:
    with tempfile.TemporaryDirectory(prefix="bench_comparison_") as media:
        cmd = [sys.executable, str(ROOT / "neural_network.py"), "--model", "all",
               "--protocol", "speaker", "--feature", feature, "--jobs", str(jobs),
               "--media-dir", media, "--no-save", "--quiet"]
        if epochs:
            cmd += ["--epochs", str(epochs)]
        t = time.perf_counter()
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        seconds = time.perf_counter() - t
    if out.returncode:
        sys.exit(f"bench_comparison: {' '.join(cmd[1:])} failed ({out.returncode}):\n"
                 f"{out.stderr[-2000:]}")
    figures = {m: (acc, uar) for m, acc, uar in LINE.findall(out.stdout)}
    if len(figures) != 4:      # else two empty parses would pass as "the same figures"
        sys.exit(f"bench_comparison: expected the four models' result lines from "
                 f"{' '.join(cmd[1:])}, found {sorted(figures)}:\n{out.stdout[-2000:]}")
    return seconds, figures


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=None,
                   help="maximum epochs per training (default: the script's 150)")
    p.add_argument("--jobs-list", type=int, nargs="+", default=[1, 2], metavar="N",
                   help="the --jobs values compared (default 1 2)")
    p.add_argument("--rounds", type=int, default=1, help="repetitions, order alternating")
    p.add_argument("--feature", default="mfcc", help="feature set (default mfcc)")
    args = p.parse_args(argv)
    times: dict[int, list[float]] = {j: [] for j in args.jobs_list}
    figures: dict[int, dict] = {}
    for r in range(args.rounds):
        order = args.jobs_list if r % 2 == 0 else args.jobs_list[::-1]
        for jobs in order:
            sec, fig = one_run(jobs, args.epochs, args.feature)
            times[jobs].append(sec)
            figures.setdefault(jobs, fig)
            if fig != figures[jobs]:
                print(f"  --jobs {jobs}: figures differ between rounds", flush=True)
            print(f"round {r + 1} --jobs {jobs}: {sec:.0f} s ({sec / 60:.1f} min)  "
                  + " ".join(f"{m} UAR {u}" for m, (_, u) in fig.items()), flush=True)
    base = args.jobs_list[0]
    for jobs in args.jobs_list:
        mean = sum(times[jobs]) / len(times[jobs])
        ratio = (sum(times[base]) / len(times[base])) / mean
        print(f"--jobs {jobs}: {mean:.0f} s ({mean / 60:.1f} min) mean of {len(times[jobs])}; "
              f"{ratio:.2f}x --jobs {base}")
    same = all(figures[j] == figures[base] for j in args.jobs_list)
    print("figures (accuracy, UAR of every model): "
          + ("the same for every --jobs" if same else f"DIFFER: {figures}"))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
