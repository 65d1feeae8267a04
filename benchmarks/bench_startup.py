#!/usr/bin/env python3
"""Start-up to the first prediction: the prediction CLI today against another command, side by
side in one run (issue 20: <= 1.5 s from process start to the first JSON line for one file).

For every shipped model (``models/*.h5`` with a sidecar), each round runs the current command
and the alternative one, in alternating order (so that drift on a shared machine hits both
alike), and times from just before the process is started to the moment its first JSON line
arrives on stdout (and to its exit). The two JSON lines' probabilities are compared too: an
alternative that is fast but says something else is not a replacement.

    python benchmarks/bench_startup.py                                  # the current CLI only
    python benchmarks/bench_startup.py --alt "{python} /tmp/proto.py --json --model {model} {file}"
    python benchmarks/bench_startup.py --repeat 9 --file clip.wav --model models/X.h5

Command templates are split like a shell line (shlex) and filled in with ``{python}`` (this
interpreter), ``{root}`` (the repository), ``{model}`` (the H5 path), ``{stem}`` (its name
without suffix) and ``{file}`` (the audio file). ``--current`` replaces the default current
command (``{python} {root}/live_predictions.py --json {file} --model {model}``), e.g. once the
CLI has moved into the ``ser`` package.

Prints one line per model with the medians (and min/max) of both commands, their ratio and
whether the 1.5 s goal is met; exit status 1 when a command fails or prints no JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOAL_SECONDS = 1.5
CURRENT = "{python} {root}/live_predictions.py --json {file} --model {model}"
SHARED_DATA = Path(os.environ.get("SER_DATA", ROOT.parent / "shared" / "data"))
# a users' WAV (48 kHz, resampled on load), else a FLAC of the project's copy
DEFAULT_FILES = (
    SHARED_DATA / "originals/ravdess_speech/Actor_05/03-01-05-02-01-01-05.wav",
    SHARED_DATA / "ravdess_speech/Actor_01/03-01-05-02-01-01-01.flac",
)


def shipped_models() -> list[Path]:
    return sorted(p for p in (ROOT / "models").glob("*.h5") if p.with_suffix(".json").exists())


def fill(template: str, *, model: Path, file: Path) -> list[str]:
    values = {"python": sys.executable, "root": str(ROOT), "model": str(model),
              "stem": model.stem, "file": str(file)}
    return [part.format(**values) for part in shlex.split(template)]


def run_once(cmd: list[str], env: dict) -> dict:
    """Time one process: to its first JSON line on stdout, and to its exit."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                         cwd=ROOT, text=True)
    first, line = None, None
    for raw in p.stdout:
        if raw.lstrip().startswith("{"):
            first, line = time.perf_counter() - t0, raw
            break
    rest_out = p.stdout.read()
    err = p.stderr.read()
    rc = p.wait()
    total = time.perf_counter() - t0
    result = {"first": first, "total": total, "rc": rc, "line": line,
              "stderr": err.strip().splitlines()[-1:] if err.strip() else []}
    if line is None and rest_out.strip():
        result["stderr"] = rest_out.strip().splitlines()[-1:]
    return result


def probabilities(line: str | None) -> dict | None:
    try:
        obj = json.loads(line)
    except (TypeError, ValueError):
        return None
    return obj.get("probabilities") if isinstance(obj, dict) else None


def _fmt(xs: list[float]) -> str:
    if not xs:
        return "     -      "
    return f"{statistics.median(xs):6.2f} s [{min(xs):.2f}-{max(xs):.2f}]"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--alt", metavar="TEMPLATE",
                    help="the alternative command (template, see above); without it only "
                         "the current command is timed")
    ap.add_argument("--current", metavar="TEMPLATE", default=CURRENT,
                    help="the current command (default: %(default)s)")
    ap.add_argument("--model", action="append", type=Path, default=None,
                    help="a model (repeat; default: every models/*.h5 with a sidecar)")
    ap.add_argument("--file", type=Path, default=None,
                    help="the audio file (default: a 48 kHz RAVDESS WAV of ../shared/data, or $SER_DATA)")
    ap.add_argument("--repeat", type=int, default=5, metavar="N",
                    help="rounds per model and command (default: %(default)s)")
    ap.add_argument("--no-warmup", action="store_true",
                    help="do not run each command once, untimed, before the rounds (the "
                         "warm-up loads files into the page cache and builds numba's cache)")
    args = ap.parse_args(argv)
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    models = args.model or shipped_models()
    if not models:
        print(f"{ROOT / 'models'}: no model with a sidecar", file=sys.stderr)
        return 2
    for m in models:
        if not m.exists():
            print(f"{m}: model file not found", file=sys.stderr)
            return 2
    file = args.file or next((f for f in DEFAULT_FILES if f.exists()), None)
    if file is None or not file.exists():
        print(f"{file or DEFAULT_FILES[0]}: audio file not found (pass --file)",
              file=sys.stderr)
        return 2
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
    commands = {"current": args.current}
    if args.alt:
        commands["alt"] = args.alt
    print(f"start-up to the first JSON line, {args.repeat} rounds, file {file}, "
          f"load {os.getloadavg()[0]:.2f}")
    for name, template in commands.items():
        print(f"  {name}: {template}")
    failed = False
    rows = []
    for model in models:
        cmds = {name: fill(t, model=model, file=file) for name, t in commands.items()}
        if not args.no_warmup:
            for cmd in cmds.values():
                run_once(cmd, env)
        times = {name: [] for name in cmds}
        totals = {name: [] for name in cmds}
        lines = {}
        problems = []
        for i in range(args.repeat):
            order = list(cmds) if i % 2 == 0 else list(reversed(cmds))
            for name in order:
                r = run_once(cmds[name], env)
                if r["first"] is None:
                    problems.append(f"{name}: no JSON line (exit {r['rc']}"
                                    f"{': ' + r['stderr'][0] if r['stderr'] else ''})")
                    continue
                times[name].append(r["first"])
                totals[name].append(r["total"])
                lines[name] = r["line"]
        diff = None
        if len(lines) == 2:
            a, b = probabilities(lines["current"]), probabilities(lines["alt"])
            if a and b and set(a) == set(b):
                diff = max(abs(float(a[k]) - float(b[k])) for k in a)
        row = {"model": model.name, "times": times, "totals": totals, "diff": diff,
               "problems": sorted(set(problems))}
        rows.append(row)
        parts = [f"{model.name:36s}"]
        for name in cmds:
            parts.append(f"{name} {_fmt(times[name])} (exit {_fmt(totals[name]).split(' [')[0].strip()})")
        if "alt" in cmds and times["current"] and times["alt"]:
            med_c, med_a = statistics.median(times["current"]), statistics.median(times["alt"])
            parts.append(f"{med_c / med_a:5.1f}x")
            parts.append("goal met" if med_a <= GOAL_SECONDS else f"goal NOT met (> {GOAL_SECONDS} s)")
        if diff is not None:
            parts.append(f"max |dp| {diff:.1e}")
        print("  ".join(parts), flush=True)
        for p in row["problems"]:
            print(f"  {model.name}: {p}", file=sys.stderr)
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
