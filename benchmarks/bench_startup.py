#!/usr/bin/env python3
"""Start-up to the first prediction: the prediction CLI as it is against the same command with
``--backend tf`` (the old path: TensorFlow imported, the H5 loaded by Keras), side by side in one
run (issue 20: <= 1.5 s from process start to the first JSON line for one file).

For every shipped model (``models/*.h5`` with a sidecar), each round runs both commands, in
alternating order (so that drift on a shared machine hits both alike), and times from just
before the process is started to the moment its first JSON line arrives on stdout (and to its
exit). The two JSON lines' probabilities are compared too: a fast path that says something else
is not a replacement. A model whose sidecar has no LiteRT export (``"litert"``) is marked: both
commands then take the TensorFlow path.

    python benchmarks/bench_startup.py                       # every shipped model, 5 rounds
    python benchmarks/bench_startup.py --backend litert      # the new command with --backend litert
    python benchmarks/bench_startup.py --repeat 9 --file clip.wav --model models/X.h5
    python benchmarks/bench_startup.py --new "{python} /tmp/proto.py --json --model {model} {file}"

Command templates are split like a shell line (shlex) and filled in with ``{python}`` (this
interpreter), ``{root}`` (the repository), ``{model}`` (the H5 path), ``{stem}`` (its name
without suffix) and ``{file}`` (the audio file). ``--new`` replaces the command under test
(default ``{python} {root}/live_predictions.py --json {file} --model {model}``), ``--old`` the
reference (default: the same with ``--backend tf``).

Prints one line per model with the medians (and min/max) of both commands, their ratio and
whether the 1.5 s goal is met by the new command; exit status 1 when a command fails or prints
no JSON line.
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
OLD = CURRENT + " --backend tf"
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


def has_export(model: Path) -> bool:
    try:
        side = json.loads(model.with_suffix(".json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(side, dict) and isinstance(side.get("litert"), dict)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--new", metavar="TEMPLATE", default=CURRENT,
                    help="the command under test (default: %(default)s)")
    ap.add_argument("--old", metavar="TEMPLATE", default=OLD,
                    help="the reference command (default: %(default)s)")
    ap.add_argument("--backend", metavar="B", default=None,
                    help="append --backend B to the new command (e.g. litert)")
    ap.add_argument("--model", action="append", type=Path, default=None,
                    help="a model (repeat; default: every models/*.h5 with a sidecar)")
    ap.add_argument("--file", type=Path, default=None,
                    help="the audio file (default: a 48 kHz RAVDESS WAV of ../shared/data, "
                         "or $SER_DATA)")
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
    new = args.new + (f" --backend {shlex.quote(args.backend)}" if args.backend else "")
    commands = {"new": new, "old": args.old}
    print(f"start-up to the first JSON line, {args.repeat} rounds, file {file}, "
          f"load {os.getloadavg()[0]:.2f}")
    for name, template in commands.items():
        print(f"  {name}: {template}")
    failed = False
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
            a, b = probabilities(lines["new"]), probabilities(lines["old"])
            if a and b and set(a) == set(b):
                diff = max(abs(float(a[k]) - float(b[k])) for k in a)
        parts = [f"{model.name:36s}"]
        for name in cmds:
            exit_med = _fmt(totals[name]).split(" [")[0].strip()
            parts.append(f"{name} {_fmt(times[name])} (exit {exit_med})")
        if times["new"] and times["old"]:
            med_n, med_o = statistics.median(times["new"]), statistics.median(times["old"])
            parts.append(f"{med_o / med_n:5.1f}x")
            parts.append("goal met" if med_n <= GOAL_SECONDS
                         else f"goal NOT met (> {GOAL_SECONDS} s)")
        if diff is not None:
            parts.append(f"max |dp| {diff:.1e}")
        if not has_export(model):
            parts.append("(no LiteRT export in its sidecar: python -m ser.cli.export MODEL.h5)")
        print("  ".join(parts), flush=True)
        for p in sorted(set(problems)):
            print(f"  {model.name}: {p}", file=sys.stderr)
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
