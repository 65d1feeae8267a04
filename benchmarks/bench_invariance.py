#!/usr/bin/env python3
"""Invariance of the shipped models: do they hear the voice or the recording chain? (issue 26)

    .venv/bin/python benchmarks/bench_invariance.py --limit 3                 # quick check
    nice -n 10 .venv/bin/python benchmarks/bench_invariance.py --json /tmp/invariance.json
    .venv/bin/python benchmarks/bench_invariance.py --model models/emotion_mlp_stats.h5 --actors 2,6

Takes the RAVDESS speech files of ``--actors`` (default: the validation actors of the ``speaker``
protocol's folds, seed 42 as shipped, drawn by ``ser.protocols.split_speaker`` from the actors in
``--data``), changes each in one benign way, writes it to a temporary folder as a real file and
judges it with ``Predictor.predict_file`` (the path behind ``live_predictions.py``). Changes:
none (16-bit WAV, the same samples); dither (Gaussian noise at -90 dBFS RMS, about one 16-bit
step); gain-6 / gain+6 (peaks above full scale kept, not clipped); silence (1 s of digital
silence at each end, 16-bit WAV); noise (white, -60 dBFS RMS over the whole file: under the
speech and in the pauses around it); 16k (resampled with soxr, ser.audio.resample); 48k-stereo
(resampled, the same signal on two channels); mp3 (constant bit rate, ~64 kbps, by libsndfile,
else ffmpeg, sox or lame; skipped with a line saying so when none can). Files are float WAV
where not said otherwise, so that no rounding or clipping adds to the change. Noise is seeded by
a fixed seed and the file's samples (the same on every run and ``--limit``).

An adaptive model (sidecar ``adaptation: speaker``) is enrolled per speaker as ``--enrol`` does
(``Predictor.enrol``) with the files it then judges: ``--enrol changed`` (through the same
chain: a user enrolling with the microphone they use), ``unchanged`` (the speaker's original
files: another chain than the judged files), or ``both`` (default: a table each).

Per model and change: flip (share of files whose top emotion differs from the unchanged file's),
TVD (mean total-variation distance 0.5 * sum |p - q| of the probabilities), UAR (balanced accuracy
against the label in the file name), its change from ``none``, files refused ("silent", ...;
left out of the other figures), and whether the row meets the issue's goal (flip <= 0.05 and UAR
loss <= 0.03). Markdown tables on stdout; ``--json PATH`` writes the figures.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
import zlib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from ser.adaptation import ADAPTATIONS  # noqa: E402
from ser.audio import AudioError, load_audio, resample  # noqa: E402
from ser.checkpoint import sidecar_path  # noqa: E402
from ser.corpora import N_CLASSES, parse_ravdess_name  # noqa: E402
from ser.paths import MODELS_DIR  # noqa: E402
from ser.protocols import Dataset, split_speaker  # noqa: E402

DATA = Path(os.environ.get("SER_DATA", ROOT.parent / "shared" / "data"))
NOISE_SEED = 26
GOAL_FLIP, GOAL_UAR_LOSS = 0.05, 0.03
MP3_LEVEL = 0.6         # libsndfile's CBR compression level: ~64 kbps at 22.05 kHz mono
MP3_TOOLS = {"ffmpeg": "ffmpeg -loglevel error -y -i {wav} -b:a 64k {mp3}",
             "sox": "sox {wav} -C 64 {mp3}", "lame": "lame --quiet -b 64 {wav} {mp3}"}


# -- the changes: (y, sr) -> (y, sr); y of shape (n,) or (n, channels) ---------------------------
def _white(y: np.ndarray, level_db: float) -> np.ndarray:
    """White Gaussian noise of RMS ``level_db`` dBFS, seeded by NOISE_SEED and the samples."""
    rng = np.random.default_rng([NOISE_SEED, zlib.crc32(y.tobytes())])
    return (rng.standard_normal(y.shape) * 10 ** (level_db / 20)).astype(np.float32)


def unchanged(y, sr):
    return y, sr


def dither(y, sr):
    return y + _white(y, -90.0), sr


def gain_down(y, sr):
    return y * np.float32(10 ** (-6 / 20)), sr


def gain_up(y, sr):
    return y * np.float32(10 ** (6 / 20)), sr


def silence_padded(y, sr):
    pad = np.zeros(sr, np.float32)
    return np.concatenate([pad, y, pad]), sr


def noise_floor(y, sr):
    return y + _white(y, -60.0), sr


def to_16k(y, sr):
    return resample(y, sr, sr=16000), 16000


def stereo_48k(y, sr):
    y48 = resample(y, sr, sr=48000)
    return np.stack([y48, y48], axis=1), 48000


# name -> (change, how the file is written: a libsndfile WAV subtype, or "MP3")
CHANGES = {"none": (unchanged, "PCM_16"), "dither": (dither, "FLOAT"),
           "gain-6": (gain_down, "FLOAT"), "gain+6": (gain_up, "FLOAT"),
           "silence": (silence_padded, "PCM_16"), "noise": (noise_floor, "FLOAT"),
           "16k": (to_16k, "FLOAT"), "48k-stereo": (stereo_48k, "FLOAT"),
           "mp3": (unchanged, "MP3")}


def mp3_writer():
    """``(how, write(path, y, sr))`` for MP3 files: libsndfile if it can, else ffmpeg, sox or
    lame; ``(reason, None)`` when nothing here writes MP3."""
    import soundfile as sf

    def with_libsndfile(path, y, sr):
        sf.write(str(path), y, sr, format="MP3", bitrate_mode="CONSTANT",
                 compression_level=MP3_LEVEL)
    try:
        with tempfile.TemporaryDirectory() as d:
            with_libsndfile(Path(d) / "probe.mp3", np.zeros(4410, np.float32), 22050)
        return f"libsndfile {sf.__libsndfile_version__}, CBR level {MP3_LEVEL}", with_libsndfile
    except Exception:  # noqa: BLE001 - any failure means: try the tools
        pass
    for tool, cmd in MP3_TOOLS.items():
        if shutil.which(tool):
            def with_tool(path, y, sr, cmd=cmd):   # the WAV goes with the temporary folder
                sf.write(f"{path}.wav", y, sr, subtype="FLOAT")
                subprocess.run(cmd.format(wav=f"{path}.wav", mp3=path).split(), check=True)
            return f"{tool}, 64 kbps", with_tool
    return "libsndfile cannot write MP3 here and neither ffmpeg, sox nor lame is installed", None


# -- data ----------------------------------------------------------------------------------------
def validation_actors(data: Path, seed: int) -> list[int]:
    """The validation actors of the ``speaker`` protocol's folds over the actors in ``data``."""
    actors = np.array(sorted(int(p.name.split("_")[1])
                             for p in (data / "ravdess_speech").glob("Actor_*")))
    n = len(actors)
    ds = Dataset(np.zeros((n, 1), np.float32), np.zeros(n, int),
                 {"actor": actors, "corpus": np.array(["ravdess_speech"] * n)}, "none", {})
    return sorted({int(a) for f in split_speaker(ds, seed) for a in f.info["val_actors"]})


def actor_files(data: Path, actor: int, limit: int | None) -> list[Path]:
    """The actor's speech files; with ``limit``, that many evenly spread over the sorted list."""
    files = sorted((data / "ravdess_speech" / f"Actor_{actor:02d}").glob("*.flac"))
    if limit and limit < len(files):
        files = [files[i] for i in np.linspace(0, len(files) - 1, limit).round().astype(int)]
    return files


# -- figures -------------------------------------------------------------------------------------
def summarize(rows: dict[str, list], truth: np.ndarray) -> dict[str, dict]:
    """Per change: flip, TVD, UAR, its change from 'none', refused files and the goal.

    ``rows[change]`` holds, per file, its probabilities or the refusal's message. Flip and TVD
    are over the files judged both unchanged and changed; UAR over the files judged."""
    from sklearn.metrics import balanced_accuracy_score

    def stack(rs):
        ok = np.array([not isinstance(r, str) for r in rs])
        return ok, np.stack([np.zeros(N_CLASSES) if isinstance(r, str) else r
                             for r in rs])
    ok0, P0 = stack(rows["none"])
    out, uar0 = {}, None
    for name, rs in rows.items():
        ok, P = stack(rs)
        both, top = ok & ok0, P.argmax(1)
        r = {"files": len(rs), "judged": int(ok.sum()), "refused": int((~ok).sum()),
             "refusal": next((x for x in rs if isinstance(x, str)), None),
             "flip": None, "tvd": None, "uar": None, "uar_change": None}
        if both.any():
            r["flip"] = float(np.mean(top[both] != P0[both].argmax(1)))
            r["tvd"] = float(np.mean(0.5 * np.abs(P[both] - P0[both]).sum(1)))
        if ok.any():
            with warnings.catch_warnings():   # a --limit run may lack classes
                warnings.simplefilter("ignore")
                r["uar"] = float(balanced_accuracy_score(truth[ok], top[ok]))
        if name == "none":
            uar0 = r["uar"]
        elif r["flip"] is not None and r["uar"] is not None and uar0 is not None:
            r["uar_change"] = r["uar"] - uar0
            r["meets_goal"] = r["flip"] <= GOAL_FLIP and -r["uar_change"] <= GOAL_UAR_LOSS
        out[name] = r
    return out


def table(summary: dict[str, dict]) -> str:
    """A markdown table, one row per change (the 'none' row is the reference)."""
    def f(v, fmt="{:.3f}"):
        return "—" if v is None else fmt.format(v)
    lines = ["| change | flip | TVD | UAR | ΔUAR | refused | goal |",
             "|---|---|---|---|---|---|---|"]
    for name, r in summary.items():
        goal = {True: "yes", False: "**no**"}.get(r.get("meets_goal"), "—")
        lines.append(f"| {name} | {f(r['flip'] if name != 'none' else None)} | "
                     f"{f(r['tvd'] if name != 'none' else None)} | {f(r['uar'])} | "
                     f"{f(r['uar_change'], '{:+.3f}')} | {r['refused']} | {goal} |")
    return "\n".join(lines)


# -- the run -------------------------------------------------------------------------------------
def make_runs(models: list[Path], enrol: str) -> list[tuple]:
    """``(label, predictor, enrolment)`` per model, and per enrolment mode of adaptive ones."""
    from ser.predict import ModelError, Predictor
    runs = []
    for m in models:
        try:
            p = Predictor(m)
        except ModelError as e:   # e.g. features changed since it was trained: say, go on
            print(f"{m.stem}: skipped ({e})")
            continue
        if p.adaptation.name == "none":
            runs.append((m.stem, p, None))
        else:   # one predictor per mode: each holds its own speaker's statistics
            runs += [(f"{m.stem} (enrolled: {e})", p if i == 0 else copy.copy(p), e)
                     for i, e in enumerate(("changed", "unchanged") if enrol == "both"
                                           else (enrol,))]
    return runs


def enrolled(p, paths: list[Path]):
    """A fresh adaptation of ``p``, fed the speaker's ``paths`` as ``--enrol`` does."""
    p.adaptation = ADAPTATIONS[p.meta["adaptation"]](p.meta)
    p.enrol(paths)
    return p.adaptation


def judge(runs, files: dict[int, list[Path]], changes: list[str], write_mp3, tmp: Path
          ) -> dict[str, dict[str, list]]:
    """``{run label: {change: [probabilities, or the refusal's message, per file]}}``."""
    import soundfile as sf
    from tqdm import tqdm
    paths = [p for fs in files.values() for p in fs]
    # enrolment with the speakers' original files is the same for every change: done once
    originals = {(label, a): enrolled(p, fs) for label, p, e in runs if e == "unchanged"
                 for a, fs in files.items()}
    results = {label: {c: [] for c in changes} for label, _, _ in runs}
    bar = tqdm(total=len(changes) * len(runs) * len(paths), unit="file",
               disable=not sys.stderr.isatty())
    t0 = time.perf_counter()
    for c in changes:
        change, kind = CHANGES[c]
        out = tmp / c
        out.mkdir()
        written = {}
        for src in paths:
            sr = sf.info(str(src)).samplerate       # read at the file's own rate
            y, sr = change(load_audio(src, sr=sr), sr)
            written[src] = out / (src.stem + (".mp3" if kind == "MP3" else ".wav"))
            if kind == "MP3":
                write_mp3(written[src], y, sr)
            else:
                sf.write(str(written[src]), y, sr, subtype=kind)
        for label, p, e in runs:
            for a, fs in files.items():
                changed = [written[src] for src in fs]
                if e == "unchanged":
                    p.adaptation = copy.deepcopy(originals[label, a])
                elif e == "changed":
                    enrolled(p, changed)
                for path in changed:
                    try:
                        pred = p.predict_file(path)
                        results[label][c].append(np.array([pred.probabilities[k]
                                                           for k in p.labels]))
                    except AudioError as err:
                        results[label][c].append(str(err).replace(f"{out}/", ""))
                    bar.update()
        shutil.rmtree(out)
        if bar.disable:   # no terminal: one line per change instead of the bar
            print(f"{c}: done ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    bar.close()
    return results


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--model", action="append", type=Path,
                    help="a model (.h5 with its .json); repeatable (default: every shipped one)")
    ap.add_argument("--actors", help="comma-separated RAVDESS actors (default: the speaker "
                                     "protocol's validation actors)")
    ap.add_argument("--seed", type=int, default=42, help="speaker protocol's seed (42)")
    ap.add_argument("--limit", type=int, help="files per actor (default: all 60)")
    ap.add_argument("--changes", default=",".join(CHANGES),
                    help=f"comma-separated, of {', '.join(CHANGES)} (default: all)")
    ap.add_argument("--enrol", choices=("changed", "unchanged", "both"), default="both",
                    help="adaptive models: enrol each speaker with the changed files or the "
                         "originals (default both: a table each)")
    ap.add_argument("--data", type=Path, default=DATA, help=f"the shared corpora ({DATA})")
    ap.add_argument("--json", type=Path, metavar="PATH", help="also write the figures as JSON")
    args = ap.parse_args(argv)
    changes = ["none"] + [c.strip() for c in args.changes.split(",")
                          if c.strip() and c.strip() != "none"]
    if bad := [c for c in changes if c not in CHANGES]:
        ap.error(f"unknown change(s) {', '.join(bad)} (choose from {', '.join(CHANGES)})")
    if not (args.data / "ravdess_speech").is_dir():
        ap.error(f"{args.data / 'ravdess_speech'}: not found (pass --data or set SER_DATA)")
    actors = ([int(a) for a in args.actors.split(",")] if args.actors
              else validation_actors(args.data, args.seed))
    files = {a: actor_files(args.data, a, args.limit) for a in actors}
    if missing := [a for a, fs in files.items() if not fs]:
        ap.error(f"no speech files for actor(s) {missing} in {args.data / 'ravdess_speech'}")
    paths = [p for fs in files.values() for p in fs]
    truth = np.array([parse_ravdess_name(p).label for p in paths])
    how_mp3, write_mp3 = mp3_writer()
    if write_mp3 is None and "mp3" in changes:
        print(f"mp3: skipped ({how_mp3})")
        changes.remove("mp3")
    runs = make_runs(args.model or [m for m in sorted(MODELS_DIR.glob("*.h5"))
                                    if sidecar_path(m).exists()], args.enrol)
    print(f"{len(paths)} RAVDESS speech files of actors {actors}"
          f"{f' ({args.limit} per actor)' if args.limit else ''}; changes {', '.join(changes)}; "
          f"MP3: {how_mp3}")
    for name, p, _ in runs:
        if seen := sorted(set(actors) & set(p.meta.get("trained_on", {}).get("actors", []))):
            print(f"warning: {name} was trained on actors {seen}: its UAR here is optimistic "
                  f"(the flip rate is the figure that matters; neural_network.py --all-data "
                  f"--exclude-actors makes a model that never heard them)")

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_invariance_") as tmp:
        results = judge(runs, files, changes, write_mp3, Path(tmp))
    seconds = time.perf_counter() - t0
    report = {"actors": actors, "files": len(paths), "limit": args.limit, "changes": changes,
              "mp3": how_mp3, "seconds": round(seconds, 1), "noise_seed": NOISE_SEED,
              "goal": {"flip": GOAL_FLIP, "uar_loss": GOAL_UAR_LOSS}, "models": {}}
    for label, p, e in runs:
        summary = summarize(results[label], truth)
        report["models"][label] = {"model": str(p.model_path), "enrol": e, "changes": summary}
        print(f"\n### `{label}`: {len(paths)} files, actors {actors}\n")
        print(table(summary))
        for c, r in summary.items():
            if r["refused"]:
                print(f"- {c}: {r['refused']} refused, e.g. {r['refusal']}")
    print(f"\n{len(changes)} changes x {len(runs)} runs x {len(paths)} files in {seconds:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
