"""The corpora: labels, file-name parsing, speakers, and the table of corpora.

Every audio file of the pipeline lives under ``features/Actor_XX/`` with a RAVDESS-style name
(``MM-VV-EE-II-SS-RR-AA``: the emotion and the actor are in the name). Which corpus a file
belongs to is decided by :data:`CORPUS_TABLE`, one entry per corpus: adding a corpus is one
entry there (its actor numbers, its classes, how the protocols treat it) plus the step that
renames its files into ``features/`` (as ``tess_pipeline.py`` does for TESS).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple

from ser.files import read_regular
from ser.paths import FEATURES_DIR, TESS_MANIFEST

EMOTIONS = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")
"""Label ``i`` is ``EMOTIONS[i]``; the RAVDESS emotion code is ``i + 1``."""
LABEL_MAP = {i: name for i, name in enumerate(EMOTIONS)}
N_CLASSES = len(EMOTIONS)


# TESS emotion word -> RAVDESS emotion code; TESS speaker -> actor number in features/.
TESS_EMOTION_CODES = {"neutral": 1, "happy": 3, "sad": 4, "angry": 5, "fear": 6,
                      "disgust": 7, "ps": 8}

TESS_FOLDER_EMOTIONS = {"pleasant_surprise": "ps", "pleasant_surprised": "ps"}
TESS_ACTORS = {"YAF": 25, "OAF": 26}
TESS_SPEAKERS = {v: k for k, v in TESS_ACTORS.items()}


CSV_FIRST_ACTOR = 1000         # the first speaker of a CSV corpus (read_csv_corpus)

# Expected sizes of the corpora (files).
RAVDESS_SPEECH_PER_ACTOR = 60
TESS_FILES = 2800


class RavdessName(NamedTuple):
    """Fields of a RAVDESS file name ``MM-VV-EE-II-SS-RR-AA``."""
    modality: int
    vocal_channel: int     # 1 speech, 2 song
    emotion: int           # RAVDESS code 1..8
    intensity: int         # 1 normal, 2 strong
    statement: int
    repetition: int
    actor: int

    @property
    def label(self) -> int:
        """Class index 0..7 (emotion code - 1)."""
        return self.emotion - 1

    @property
    def corpus(self) -> str:
        """The corpus of :data:`CORPUS_TABLE` that owns the file (:func:`corpus_of`)."""
        return corpus_of(self).name


def parse_ravdess_name(path: str | os.PathLike) -> RavdessName:
    """Parse a RAVDESS-style file name (also the renamed TESS files).

    Raises
    ------
    ValueError
        Naming the file and the broken rule.
    """
    stem = Path(path).name.split(".")[0]
    parts = stem.split("-")
    if len(parts) != 7 or not all(len(p) == 2 and p.isdigit() for p in parts):
        raise ValueError(f"{path}: not a RAVDESS-style name (expected 7 two-digit fields "
                         f"MM-VV-EE-II-SS-RR-AA, got {stem!r})")
    f = RavdessName(*(int(p) for p in parts))
    if not 1 <= f.emotion <= N_CLASSES:
        raise ValueError(f"{path}: emotion code {f.emotion:02d} is not in 01..08")
    if f.vocal_channel not in (1, 2):
        raise ValueError(f"{path}: vocal channel {f.vocal_channel:02d} is not 01 or 02")
    if f.intensity not in (1, 2):
        raise ValueError(f"{path}: intensity {f.intensity:02d} is not 01 or 02")
    if f.actor < 1:
        raise ValueError(f"{path}: actor {f.actor:02d} is not >= 01")
    return f


@dataclass(frozen=True)
class Corpus:
    """One entry of :data:`CORPUS_TABLE`.

    ``name`` is the ``corpus`` column of the feature files; ``subset`` its word in
    ``neural_network.py --subset``; ``family`` the unit of the ``corpus`` protocol (train on one
    family, test on another: RAVDESS speech and song are one family); ``emotions`` the classes
    it has (a family's test rows are restricted to the classes its training family has);
    ``speaker_folds`` whether the ``speaker`` protocol holds its speakers out (TESS, with two
    speakers, always trains); ``owns`` says from a parsed file name whether a file is its.
    """
    name: str
    subset: str
    family: str
    emotions: tuple[str, ...]
    speaker_folds: bool
    owns: Callable[[RavdessName], bool]


CORPUS_TABLE: tuple[Corpus, ...] = (
    Corpus("ravdess_speech", "speech", "ravdess", EMOTIONS, True,
           lambda f: f.actor <= 24 and f.vocal_channel == 1),
    Corpus("ravdess_song", "song", "ravdess", EMOTIONS[:6], True,
           lambda f: f.actor <= 24 and f.vocal_channel == 2),
    Corpus("tess", "tess", "tess", tuple(e for e in EMOTIONS if e != "calm"), False,
           lambda f: f.actor in TESS_SPEAKERS),
    # your own recordings, listed in a CSV (read_csv_corpus): their speakers are actors 1000+
    Corpus("csv", "csv", "csv", EMOTIONS, True, lambda f: f.actor >= CSV_FIRST_ACTOR),
)
"""Every corpus the pipeline knows, in order; a file belongs to the first that owns it."""
CORPORA = tuple(c.name for c in CORPUS_TABLE)
SUBSET_CORPORA = {c.subset: c.name for c in CORPUS_TABLE}
FAMILIES = tuple(dict.fromkeys(c.family for c in CORPUS_TABLE))


def corpus_of(f: RavdessName, path: str | os.PathLike | None = None) -> Corpus:
    """The corpus a parsed file name belongs to; ValueError (naming ``path``) if none."""
    for c in CORPUS_TABLE:
        if c.owns(f):
            return c
    where = f"{path}: " if path is not None else ""
    raise ValueError(f"{where}actor {f.actor:02d} belongs to no corpus the pipeline knows "
                     f"({', '.join(CORPORA)}; corpora are listed in ser/corpora.py)")


def families_of(corpora: list[str]) -> list[str]:
    """The families of these corpora (names of the table), in the table's order."""
    have = {corpus(c).family for c in corpora}
    return [f for f in FAMILIES if f in have]


def corpus(name: str) -> Corpus:
    """The table's entry called ``name``."""
    for c in CORPUS_TABLE:
        if c.name == name:
            return c
    raise ValueError(f"unknown corpus {name!r} (known: {', '.join(CORPORA)})")


def family_emotions(family: str) -> tuple[str, ...]:
    """The classes a corpus family has (the union of its corpora's), in label order."""
    have = {e for c in CORPUS_TABLE if c.family == family for e in c.emotions}
    return tuple(e for e in EMOTIONS if e in have)


class TessName(NamedTuple):
    speaker: str   # "YAF" or "OAF"
    word: str
    emotion: str   # key of TESS_EMOTION_CODES


def parse_tess_name(path: str | os.PathLike) -> TessName:
    """Parse an original TESS path ``<FOLDER>/<SPEAKER>_<word>_<emotion>.wav``.

    The speaker is taken from the folder when the file's own prefix is not a TESS speaker
    (the real corpus has ``OAF_neutral/OA_bite_neutral.wav``); the emotion from the file name,
    else from the folder.
    """
    p = Path(path)
    stem = p.name.split(".")[0]
    parts = stem.split("_")
    if len(parts) < 3:
        raise ValueError(f"{path}: not a TESS name (expected SPEAKER_word_emotion)")
    folder = p.parent.name
    folder_speaker = folder.split("_")[0].upper()
    speaker = parts[0].upper()
    if speaker not in TESS_ACTORS:
        if folder_speaker in TESS_ACTORS:
            speaker = folder_speaker
        else:
            raise ValueError(f"{path}: unknown TESS speaker {parts[0]!r} (expected YAF or OAF, "
                             f"from the name or the folder)")
    emotion = parts[-1].lower()
    if emotion not in TESS_EMOTION_CODES:
        folder_emotion = "_".join(folder.split("_")[1:]).lower()
        folder_emotion = TESS_FOLDER_EMOTIONS.get(folder_emotion, folder_emotion)
        if folder_emotion in TESS_EMOTION_CODES:
            emotion = folder_emotion
        else:
            raise ValueError(f"{path}: unknown TESS emotion {parts[-1]!r} "
                             f"(expected one of {', '.join(TESS_EMOTION_CODES)})")
    word = "_".join(parts[1:-1]).lower()
    return TessName(speaker, word, emotion)


TESS_WORDS_PER_STATEMENT = 99


def tess_word_code(index: int) -> tuple[int, int]:
    """Word number (0-based) -> (statement, repetition) fields of a renamed TESS file."""
    if not 0 <= index < 99 * TESS_WORDS_PER_STATEMENT:
        raise ValueError(f"TESS word index {index} out of range")
    return index // TESS_WORDS_PER_STATEMENT + 1, index % TESS_WORDS_PER_STATEMENT + 1


def tess_word_index(statement: int, repetition: int) -> int:
    """Inverse of :func:`tess_word_code`."""
    return (statement - 1) * TESS_WORDS_PER_STATEMENT + (repetition - 1)


TESS_MANIFEST_FIELDS = ("name", "actor", "speaker", "emotion", "word", "word_index", "source")


def read_tess_manifest(path: str | os.PathLike = TESS_MANIFEST) -> dict[str, dict]:
    """The manifest written by tess_pipeline.py: renamed file name -> its row."""
    import csv
    path = Path(path)
    if not path.exists():
        return {}
    with open(path, newline="") as f:
        return {row["name"]: row for row in csv.DictReader(f)}


def parse_renamed_tess(path: str | os.PathLike, manifest: dict[str, dict]) -> TessName:
    """(speaker, word, emotion) of a file renamed by tess_pipeline.py, from its name alone
    for speaker and emotion and from the manifest's word numbering for the word."""
    f = parse_ravdess_name(path)
    if f.actor not in TESS_SPEAKERS:
        raise ValueError(f"{path}: actor {f.actor} is not a TESS speaker (25 YAF, 26 OAF)")
    code_to_emotion = {v: k for k, v in TESS_EMOTION_CODES.items()}
    if f.emotion not in code_to_emotion:
        raise ValueError(f"{path}: emotion code {f.emotion} does not occur in TESS")
    index = tess_word_index(f.statement, f.repetition)
    words = {int(r["word_index"]): r["word"] for r in manifest.values()}
    if index not in words:
        raise ValueError(f"{path}: word number {index} is not in the TESS manifest")
    return TessName(TESS_SPEAKERS[f.actor], words[index], code_to_emotion[f.emotion])


def actor_dirs(features_dir: str | os.PathLike = FEATURES_DIR) -> list[Path]:
    """The ``Actor_XX`` folders under ``features_dir``, sorted."""
    d = Path(features_dir)
    return sorted(p for p in d.glob("Actor_*") if p.is_dir())




def parse_subset(subset: str) -> list[str]:
    """``song+tess`` -> ``["ravdess_song", "tess"]``; errors name the bad part."""
    parts = [p.strip().lower() for p in subset.split("+") if p.strip()]
    bad = [p for p in parts if p not in SUBSET_CORPORA]
    if not parts or bad:
        raise ValueError(f"subset {subset!r}: unknown part(s) {bad or subset!r}; join any of "
                         f"{', '.join(SUBSET_CORPORA)} with '+', e.g. song+tess")
    return [SUBSET_CORPORA[p] for p in dict.fromkeys(parts)]


# --------------------------------------------------------------------------------------------
# Your own data: a corpus defined by a CSV
# --------------------------------------------------------------------------------------------
CSV_COLUMNS = ("path", "emotion", "speaker")
EMOTION_ALIASES = {"fear": "fearful", "afraid": "fearful", "surprise": "surprised",
                   "disgusted": "disgust", "happiness": "happy", "joy": "happy",
                   "sadness": "sad", "anger": "angry", "ps": "surprised"}


class CsvRow(NamedTuple):
    path: Path                 # the audio file
    rel: str                   # as the CSV names it (the row's key in caches and outputs)
    name: RavdessName          # emotion and speaker in the pipeline's terms (actor 1000+)
    speaker: str               # the CSV's speaker


CSV_MAX_BYTES = 256 * 2 ** 20   # a CSV corpus of a million rows is ~100 MB


def read_csv_corpus(csv_path: str | os.PathLike) -> tuple[list[CsvRow], list[str]]:
    """The rows of a CSV corpus (columns ``path``, ``emotion``, ``speaker``; others ignored),
    and a one-line problem for every row left out.

    Paths are relative to the CSV's folder (or absolute); emotions are the pipeline's eight
    names (or a common alias: fear, surprise, anger, ...), case-insensitive; each distinct
    speaker becomes an actor number from :data:`CSV_FIRST_ACTOR` (in order of first
    appearance), so that the ``speaker`` protocol holds whole speakers out.

    Raises
    ------
    ValueError
        The CSV cannot be read or lacks a required column (one line naming it).
    """
    import csv
    import io
    csv_path = Path(csv_path)
    try:    # a regular file, read with a bound: never a FIFO, a device or gigabytes
        text = read_regular(csv_path, max_bytes=CSV_MAX_BYTES, kind="CSV file"
                            ).decode("utf-8-sig")
        reader = csv.DictReader(io.StringIO(text, newline=""))
        fields = [c.strip().lower() for c in reader.fieldnames or []]
        lines = list(reader)
    except FileNotFoundError:
        raise ValueError(f"{csv_path}: cannot read the CSV (file not found)") from None
    except (UnicodeDecodeError, csv.Error) as e:
        raise ValueError(f"{csv_path}: cannot read the CSV ({str(e).splitlines()[0]})"
                         ) from None
    missing = [c for c in CSV_COLUMNS if c not in fields]
    if missing:
        raise ValueError(f"{csv_path}: the CSV lacks the column(s) {', '.join(missing)} "
                         f"(needed: {', '.join(CSV_COLUMNS)}; found: {', '.join(fields) or 'none'})")
    rows, problems = [], []
    seen: dict[str, int] = {}          # resolved path -> its first CSV line
    lines_of: dict[int, int] = {}      # row index -> CSV line
    for i, raw in enumerate(lines, start=2):          # line 1 is the header
        row = {k.strip().lower(): (v or "").strip() for k, v in raw.items() if k}
        where = f"{csv_path}:{i}"
        emotion = EMOTION_ALIASES.get(row["emotion"].lower(), row["emotion"].lower())
        if emotion not in EMOTIONS:
            problems.append(f"{where}: unknown emotion {row['emotion']!r} (known: "
                            f"{', '.join(EMOTIONS)})")
            continue
        if not row["path"] or not row["speaker"]:
            problems.append(f"{where}: empty {'path' if not row['path'] else 'speaker'}")
            continue
        path = Path(row["path"])
        path = path if path.is_absolute() else csv_path.parent / path
        same = seen.setdefault(os.path.realpath(path), i)
        if same != i:
            problems.append(f"{where}: the same file as line {same}; left out (one recording "
                            f"is one row: listed twice it would be tested on itself)")
            continue
        lines_of[len(rows)] = i
        name = RavdessName(3, 1, EMOTIONS.index(emotion) + 1, 1, 1, 1, 0)   # actor: below
        rows.append(CsvRow(path, row["path"], name, row["speaker"]))
    dropped = _same_content(rows, lines_of, csv_path)
    problems += [msg for _, msg in sorted(dropped.items())]
    # each speaker an actor number, in order of first appearance among the rows kept
    kept = [r for k, r in enumerate(rows) if k not in dropped]
    speakers: dict[str, int] = {}
    for k, r in enumerate(kept):
        actor = speakers.setdefault(r.speaker, CSV_FIRST_ACTOR + len(speakers))
        kept[k] = r._replace(name=r.name._replace(actor=actor))
    return kept, problems


def _same_content(rows: list, lines_of: dict[int, int], csv_path: Path) -> dict[int, str]:
    """Rows (index -> one-line message) whose file has the same bytes as an earlier row's:
    copies of one recording under two names. Only files of equal size are hashed, and only
    regular files (what cannot be read is the extraction's to report)."""
    import hashlib
    import stat
    by_size: dict[int, list[int]] = {}
    for k, r in enumerate(rows):
        try:
            st = os.stat(r.path)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and st.st_size > 0:
            by_size.setdefault(st.st_size, []).append(k)
    dropped: dict[int, str] = {}
    for group in by_size.values():
        if len(group) < 2:
            continue
        first: dict[str, int] = {}
        for k in group:
            h = hashlib.sha256()
            try:
                with open(rows[k].path, "rb") as fh:
                    for block in iter(lambda: fh.read(1 << 20), b""):
                        h.update(block)
            except OSError:
                continue
            j = first.setdefault(h.hexdigest(), k)
            if j != k:
                dropped[k] = (f"{csv_path}:{lines_of[k]}: the same audio as line {lines_of[j]} "
                              f"(identical bytes); left out (one recording is one row: "
                              f"listed twice it would be tested on itself)")
    return dropped
