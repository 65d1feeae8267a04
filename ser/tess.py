"""TESS renamed into RAVDESS-style actor folders (tess_pipeline.py).

Every TESS file ``<FOLDER>/<SPEAKER>_<word>_<emotion>.wav`` becomes
``features/Actor_25`` (YAF) or ``features/Actor_26`` (OAF) ``/03-01-EE-01-SS-RR-AA.<ext>``:
EE the RAVDESS emotion code, SS-RR a deterministic number of the word (see
``ser.corpora.tess_word_code``), AA the actor. A manifest CSV maps every new name to its original
path, speaker and word. Re-running is a no-op; nothing is overwritten with different content.

Only what is inside the source folder is read: a symbolic link that leads out of it (or
nowhere), or to a folder, is not followed. A file is copied only if it decodes as audio, and
never with wider permissions than its source. Folders and files that cannot be read, like
every other file that cannot be placed, are named with the reason and counted."""
from __future__ import annotations

import csv
import filecmp
import os
import shutil
import stat
from pathlib import Path

from tqdm import tqdm

from ser.errors import SerError
from ser.corpora import (
    TESS_ACTORS,
    TESS_EMOTION_CODES,
    TESS_MANIFEST_FIELDS,
    parse_tess_name,
    read_tess_manifest,
    tess_word_code,
)
from ser.files import atomic_path, os_reason
from ser.paths import TESS_MANIFEST
from ser.scan import AUDIO_EXTENSIONS


class TessError(SerError):
    """A failure with a one-line message for the user (the CLI prints it and exits 1)."""


def find_audio(source: Path, problems: list[str]) -> list[Path]:
    """The audio files (by extension) under ``source``, recursively, sorted; hidden names
    are left out.

    Symbolic links to files inside ``source`` are taken; links out of ``source``, to nothing
    or to folders are not followed, and folders that cannot be read are not skipped silently:
    each is one line in ``problems``.
    """
    source = Path(source)
    real_src = os.path.realpath(source)
    found: list[Path] = []

    def unreadable(e: OSError) -> None:
        problems.append(f"{e.filename}: cannot read this folder ({os_reason(e)}); skipped")

    for dirpath, dirnames, filenames in os.walk(source, onerror=unreadable):
        d = Path(dirpath)
        keep = []
        for name in sorted(dirnames):
            if name.startswith("."):
                continue
            if (d / name).is_symlink():
                problems.append(f"{d / name}: a symbolic link to the folder "
                                f"{os.path.realpath(d / name)}; not followed")
                continue
            keep.append(name)
        dirnames[:] = keep
        for name in filenames:
            if name.startswith(".") or Path(name).suffix.lower() not in AUDIO_EXTENSIONS:
                continue
            p = d / name
            if p.is_symlink():
                target = os.path.realpath(p)
                if os.path.commonpath([real_src, target]) != real_src:
                    problems.append(f"{p}: a symbolic link to {target}, outside {source}; "
                                    f"not followed")
                    continue
                if not os.path.isfile(target):
                    problems.append(f"{p}: a symbolic link to {os.readlink(p)}, which is not "
                                    f"a file; skipped")
                    continue
            elif not p.is_file():     # a FIFO, socket or device: never opened
                problems.append(f"{p}: not a regular file; skipped")
                continue
            found.append(p)
    return sorted(found)


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
        One row per placeable file (keys of ``TESS_MANIFEST_FIELDS`` plus ``src``).
    problems : list of str
        One line per file (or folder) that could not be placed.
    """
    words = dict(known_words or {})
    problems: list[str] = []
    parsed = []
    for path in find_audio(source, problems):
        try:
            t = parse_tess_name(path)
        except ValueError as e:
            problems.append(str(e))
            continue
        parsed.append((path, t))
    for w in sorted({t.word for _, t in parsed} - set(words)):
        words[w] = max(words.values(), default=-1) + 1
    plan, seen = [], {}
    for path, t in parsed:
        actor = TESS_ACTORS[t.speaker]
        ss, rr = tess_word_code(words[t.word])
        name = (f"03-01-{TESS_EMOTION_CODES[t.emotion]:02d}-01-{ss:02d}-{rr:02d}-"
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
    """None if ``path`` decodes as audio (``soundfile.info``), else the problem's line."""
    import soundfile as sf
    try:
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size == 0:
                return f"{path}: empty file (0 bytes); skipped"
            try:
                info = sf.info(f)
            except OSError:
                raise
            except Exception as e:   # libsndfile's errors are of several types
                why = getattr(e, "error_string", None) or str(e).splitlines()[0]
                return f"{path}: not readable audio ({str(why).strip().rstrip('.')}); skipped"
    except OSError as e:
        return f"{path}: {os_reason(e)}; skipped"
    if info.frames <= 0:
        return f"{path}: not readable audio (no audio samples); skipped"
    return None


def _copy(src: Path, dest: Path) -> None:
    """Copy ``src`` onto ``dest`` (atomically), never with wider permissions than ``src``."""
    umask = os.umask(0o022)
    os.umask(umask)
    with open(src, "rb") as f:
        mode = stat.S_IMODE(os.fstat(f.fileno()).st_mode)
        with atomic_path(dest) as tmp:
            with open(tmp, "wb") as out:
                shutil.copyfileobj(f, out, 1 << 20)
            os.chmod(tmp, 0o666 & ~umask & mode)


def run(source: Path, out: Path, *, manifest: Path | None = None,
        progress: bool = True) -> dict:
    """Copy TESS into ``out/Actor_25`` and ``out/Actor_26``; returns counts and problems.

    The manifest is written only when at least one file is copied or already in place
    (``"manifest_written"``). Raises :class:`TessError` for a source without audio files.
    """
    source, out = Path(source), Path(out)
    if not source.is_dir():
        raise FileNotFoundError(f"{source}: TESS folder not found (run download_data.py, or "
                                f"pass --source)")
    manifest = Path(manifest) if manifest else out / TESS_MANIFEST.name
    old = read_tess_manifest(manifest)
    known = {r["word"]: int(r["word_index"]) for r in old.values()}
    plan, problems = plan_tess(source, known_words=known)
    if not plan and not problems:
        raise TessError(f"{source}: the TESS folder is empty (no audio files); nothing copied, "
                        f"no manifest written")
    counts = {"copied": 0, "unchanged": 0, "skipped": 0}
    rows = dict(old)
    for item in tqdm(plan, desc="TESS", unit="file", disable=not progress):
        src: Path = item["src"]
        dest = out / f"Actor_{item['actor']:02d}" / item["name"]
        bad = _readable(src)
        if bad:
            problems.append(bad)
            continue
        if dest.exists():
            if filecmp.cmp(src, dest, shallow=False):
                counts["unchanged"] += 1
                rows[item["name"]] = {k: item[k] for k in TESS_MANIFEST_FIELDS}
                continue
            problems.append(f"{src}: {dest} exists with different content; not overwritten")
            continue
        _copy(src, dest)
        counts["copied"] += 1
        rows[item["name"]] = {k: item[k] for k in TESS_MANIFEST_FIELDS}
    counts["skipped"] = len(problems)
    written = bool(counts["copied"] or counts["unchanged"])
    if written:
        new_text = _manifest_text(rows)
        if not manifest.exists() or manifest.read_text() != new_text:
            with atomic_path(manifest) as tmp:
                tmp.write_text(new_text)
    return {**counts, "problems": problems, "manifest": manifest, "manifest_written": written}


def _manifest_text(rows: dict[str, dict]) -> str:
    import io
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=TESS_MANIFEST_FIELDS, lineterminator="\n")
    w.writeheader()
    for name in sorted(rows, key=lambda n: (int(rows[n]["actor"]), n)):
        w.writerow(rows[name])
    return buf.getvalue()
