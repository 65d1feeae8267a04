#!/usr/bin/env python
"""Step 1: copy the TESS corpus into RAVDESS-style actor folders.

Every TESS file ``<FOLDER>/<SPEAKER>_<word>_<emotion>.wav`` becomes
``features/Actor_25`` (YAF) or ``features/Actor_26`` (OAF) ``/03-01-EE-01-SS-RR-AA.<ext>``:
EE the RAVDESS emotion code, SS-RR a deterministic number of the word (see
``ser_common.tess_word_code``), AA the actor. A manifest CSV maps every new name to its original
path, speaker and word. Re-running is a no-op; nothing is overwritten with different content.
"""
from __future__ import annotations

import argparse
import csv
import filecmp
import shutil
import sys
import time
from pathlib import Path

from tqdm import tqdm

import ser_common as C


def plan_tess(source: Path, *, known_words: dict[str, int] | None = None):
    """Work out the new name of every TESS file under ``source``.

    Parameters
    ----------
    source : Path
        The TESS tree (14 folders such as ``OAF_angry``), WAV or FLAC.
    known_words : dict, optional
        word -> number from an earlier manifest, kept so that names stay stable.

    Returns
    -------
    plan : list of dict
        One row per placeable file (keys of ``ser_common.TESS_MANIFEST_FIELDS`` plus ``src``).
    problems : list of str
        One line per file that could not be placed.
    """
    words = dict(known_words or {})
    problems: list[str] = []
    parsed = []
    for path in C.list_audio_files(source):
        try:
            t = C.parse_tess_name(path)
        except ValueError as e:
            problems.append(str(e))
            continue
        parsed.append((path, t))
    for w in sorted({t.word for _, t in parsed} - set(words)):
        words[w] = max(words.values(), default=-1) + 1
    plan, seen = [], {}
    for path, t in parsed:
        actor = C.TESS_ACTORS[t.speaker]
        ss, rr = C.tess_word_code(words[t.word])
        name = (f"03-01-{C.TESS_EMOTION_CODES[t.emotion]:02d}-01-{ss:02d}-{rr:02d}-"
                f"{actor:02d}{path.suffix.lower()}")
        key = (t.speaker, t.word, t.emotion)
        if key in seen:
            problems.append(f"{path}: same speaker, word and emotion as {seen[key]}; skipped")
            continue
        seen[key] = path
        plan.append({"name": name, "actor": actor, "speaker": t.speaker, "emotion": t.emotion,
                     "word": t.word, "word_index": words[t.word],
                     "source": str(path.relative_to(source)), "src": path})
    return plan, problems


def _readable(path: Path) -> str | None:
    import soundfile as sf
    if path.stat().st_size == 0:
        return f"{path}: empty file (0 bytes); skipped"
    try:
        sf.info(str(path))
    except Exception as e:
        return f"{path}: not readable audio ({str(e).splitlines()[0]}); skipped"
    return None


def run(source: Path, out: Path, *, manifest: Path | None = None,
        progress: bool = True) -> dict:
    """Copy TESS into ``out/Actor_25`` and ``out/Actor_26``; returns counts and problems."""
    source, out = Path(source), Path(out)
    if not source.is_dir():
        raise FileNotFoundError(f"{source}: TESS folder not found (run download_data.py, or "
                                f"pass --source)")
    manifest = Path(manifest) if manifest else out / C.TESS_MANIFEST.name
    old = C.read_tess_manifest(manifest)
    known = {r["word"]: int(r["word_index"]) for r in old.values()}
    plan, problems = plan_tess(source, known_words=known)
    counts = {"copied": 0, "unchanged": 0, "skipped": 0}
    rows = dict(old)
    for item in tqdm(plan, desc="TESS", unit="file", disable=not progress):
        src: Path = item["src"]
        dest = out / f"Actor_{item['actor']:02d}" / item["name"]
        if dest.exists():
            if filecmp.cmp(src, dest, shallow=False):
                counts["unchanged"] += 1
                rows[item["name"]] = {k: item[k] for k in C.TESS_MANIFEST_FIELDS}
                continue
            problems.append(f"{src}: {dest} exists with different content; not overwritten")
            continue
        bad = _readable(src)
        if bad:
            problems.append(bad)
            continue
        with C.atomic_path(dest) as tmp:
            shutil.copyfile(src, tmp)
        counts["copied"] += 1
        rows[item["name"]] = {k: item[k] for k in C.TESS_MANIFEST_FIELDS}
    counts["skipped"] = len(problems)
    new_text = _manifest_text(rows)
    if not manifest.exists() or manifest.read_text() != new_text:
        with C.atomic_path(manifest) as tmp:
            tmp.write_text(new_text)
    return {**counts, "problems": problems, "manifest": manifest}


def _manifest_text(rows: dict[str, dict]) -> str:
    import io
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=C.TESS_MANIFEST_FIELDS, lineterminator="\n")
    w.writeheader()
    for name in sorted(rows, key=lambda n: (int(rows[n]["actor"]), n)):
        w.writerow(rows[name])
    return buf.getvalue()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--source", type=Path, default=C.TESS_SOURCE_DIR,
                   help="the TESS tree (its 14 folders, WAV or FLAC)")
    p.add_argument("--out", type=Path, default=C.FEATURES_DIR,
                   help="folder that receives Actor_25 (YAF) and Actor_26 (OAF)")
    p.add_argument("--manifest", type=Path, default=None,
                   help="manifest CSV (default: OUT/tess_manifest.csv)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    t0 = time.perf_counter()
    try:
        r = run(args.source, args.out, manifest=args.manifest, progress=not args.quiet)
    except (FileNotFoundError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for line in r["problems"]:
        print(f"skipped: {line}", file=sys.stderr)
    print(f"TESS: {r['copied']} copied, {r['unchanged']} already in place, {r['skipped']} "
          f"skipped; manifest {r['manifest']} ({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
