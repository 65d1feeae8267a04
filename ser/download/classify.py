"""What a file is: which corpus and recording its path names, where it goes under the
corpus's root, and whether it decodes as audio."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterable

from ser.corpora import TESS_ACTORS, TESS_SPEAKERS, corpus_of, parse_ravdess_name, parse_tess_name
from ser.download.messages import first_line, sf_reason
from ser.files import os_reason
from ser.scan import AUDIO_EXTENSIONS

# The corpora this step gets (not your own CSV corpus); the two RAVDESS ones are the two zips
# of the Zenodo record (ser.download.ravdess.ARCHIVES).
CORPORA = ("ravdess_speech", "ravdess_song", "tess")

# The 14 folders of the TESS distribution (used when a TESS file arrives without its folder).
TESS_FOLDERS = {
    ("OAF", "angry"): "OAF_angry", ("OAF", "disgust"): "OAF_disgust",
    ("OAF", "fear"): "OAF_Fear", ("OAF", "happy"): "OAF_happy",
    ("OAF", "neutral"): "OAF_neutral", ("OAF", "ps"): "OAF_Pleasant_surprise",
    ("OAF", "sad"): "OAF_Sad",
    ("YAF", "angry"): "YAF_angry", ("YAF", "disgust"): "YAF_disgust",
    ("YAF", "fear"): "YAF_fear", ("YAF", "happy"): "YAF_happy",
    ("YAF", "neutral"): "YAF_neutral", ("YAF", "ps"): "YAF_pleasant_surprised",
    ("YAF", "sad"): "YAF_sad",
}

_TESS_PREFIXES = {**{s: s for s in TESS_ACTORS}, **{s[:2]: s for s in TESS_ACTORS}}


@dataclass(frozen=True)
class Classified:
    """What a path is: ``kind`` is a corpus name, ``junk``, ``nonaudio`` or ``bad``."""
    kind: str
    rel_dest: tuple[str, str] | None = None   # (folder, file name) under the corpus root
    key: tuple | None = None                  # identity of the recording, for de-duplication
    group: str = ""                           # "Actor_XX" or the TESS folder
    reason: str = ""


def classify(parts: Iterable[str]) -> Classified:
    """Classify a file by the components of its path (folders..., file name).

    * hidden files, ``__MACOSX`` resource forks: ``junk``;
    * not an audio extension (:data:`AUDIO_EXTENSIONS`): ``nonaudio``;
    * under a folder starting with ``OAF_``/``YAF_``: TESS, kept in that folder;
    * a RAVDESS name ``MM-VV-EE-II-SS-RR-AA``: ``ravdess_speech`` or ``ravdess_song`` by the
      vocal-channel field, destination ``Actor_XX``;
    * a TESS name outside its folder (``OAF_back_angry.wav``): TESS, in its original folder;
    * anything else: ``bad`` with the reason.
    """
    parts = tuple(p for p in parts if p not in ("", "."))
    if not parts:
        return Classified("junk")
    name = parts[-1]
    if any(p.startswith(".") or p == "__MACOSX" for p in parts):
        return Classified("junk")
    if Path(name).suffix.lower() not in AUDIO_EXTENSIONS:
        return Classified("nonaudio")
    parent = parts[-2] if len(parts) > 1 else ""
    if parent.upper().startswith(("OAF_", "YAF_")):
        try:
            t = parse_tess_name(f"{parent}/{name}")
        except ValueError as e:
            return Classified("bad", reason=first_line(e))
        return Classified("tess", (parent, name), ("tess", t.speaker, t.word, t.emotion), parent)
    try:
        r = parse_ravdess_name(name)
    except ValueError as e:
        ravdess_error = first_line(e)
    else:
        return _ravdess(r, name)
    speaker = _TESS_PREFIXES.get(name.split("_")[0].upper())
    if speaker is not None:
        try:   # the folder name only lends the speaker (for "OA_bite_neutral.wav")
            t = parse_tess_name(PurePosixPath(f"{speaker}_", name))
        except ValueError as e:
            return Classified("bad", reason=first_line(e))
        folder = TESS_FOLDERS[(t.speaker, t.emotion)]
        return Classified("tess", (folder, name), ("tess", t.speaker, t.word, t.emotion), folder)
    return Classified("bad", reason=f"{ravdess_error}; not under a TESS OAF_/YAF_ folder either")


def _ravdess(r, name: str) -> Classified:
    """A file with a RAVDESS name (``r``, parsed): speech or song of its actor, or ``bad``."""
    if r.actor in TESS_SPEAKERS:
        return Classified("bad", reason=f"{name}: actor {r.actor} is a TESS file renamed by "
                          f"tess_pipeline.py; import TESS from its original folders")
    if r.modality != 3:
        return Classified("bad", reason=f"{name}: modality {r.modality:02d} is not "
                          f"audio-only (03)")
    try:
        corpus = corpus_of(r, name).name
    except ValueError as e:
        return Classified("bad", reason=first_line(e))
    actor = f"Actor_{r.actor:02d}"
    return Classified(corpus, (actor, name), ("ravdess", Path(name).stem.split(".")[0]), actor)


def audio_problem(path: Path) -> tuple[bool, str] | None:
    """None if ``path`` decodes as audio (``soundfile.info``); else ``(readable, reason)``
    where ``readable`` is False when the file cannot even be opened (the OS's reason)."""
    import soundfile as sf
    try:
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size == 0:
                return True, "empty file (0 bytes)"
            try:
                info = sf.info(f)
            except OSError:
                raise
            except Exception as e:   # libsndfile's errors are of several types
                return True, f"not readable audio ({sf_reason(e)})"
    except OSError as e:
        return False, os_reason(e)
    if info.frames <= 0:
        return True, "not readable audio (no audio samples)"
    return None
