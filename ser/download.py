"""Getting the RAVDESS and TESS corpora into the layout the pipeline reads (download_data.py).

Two ways in:

``download(...)`` (``python download_data.py``)
    Downloads RAVDESS audio-only (Zenodo record 1188976: ``Audio_Speech_Actors_01-24.zip``,
    ``Audio_Song_Actors_01-24.zip``) and TESS (Borealis Dataverse, doi:10.5683/SP2/E8H2MF, one
    request per file through the Dataverse native API). Every download is checked against the
    checksum the repository lists; a cut connection resumes with an HTTP ``Range`` request from
    the kept ``.part`` file (also on the next run).

``import_local(DIR)`` (``python download_data.py --from DIR``)
    Imports local copies: the official zips, a TESS zip, unpacked folders, or the project's
    shared layout (``ravdess_speech/Actor_XX``, ``ravdess_song/Actor_XX``, ``tess/<FOLDER>``).
    Every audio file under ``DIR`` (and inside any zip there) is classified by its name.

Where files go (names are never changed, files are never modified):

* RAVDESS speech and song of actor ``XX`` -> ``features/Actor_XX/`` (``--features-dir``);
* TESS -> ``data/tess/<original folder>/<original name>`` (``--tess-dir``), read by
  ``tess_pipeline.py``.

Safety: archives are extracted into a temporary folder beside the destination and moved into
place only once every member has been read and checked; single files are copied under a
temporary name and renamed. Counts of audio files are checked before anything is placed
(RAVDESS: 60 speech and 44 song files per actor present, 1440 and 1012 in the official zips;
TESS: 2800). A second run changes nothing: files that are already in place (same size and
time stamp, or same content) are left alone, and a completed download is remembered in the
cache folder so a re-run does not even contact the servers.

Hostile or broken input:

* every destination goes through one resolver (:func:`resolve_inside`): a name from a
  listing (Dataverse ``label``, each folder of ``directoryLabel``) or an archive member with a
  path separator, ``..``, an absolute path, a drive letter, NUL or another control character
  is refused on one line naming the entry, and the resolved destination (symbolic links
  followed) must lie inside ``--features-dir`` / ``--tess-dir``;
* a file becomes corpus audio only if ``soundfile.info`` reads it (downloads: after the
  download); of two files of the same recording in one source the readable one is taken;
* a symbolic link in a ``--from`` folder that leads out of that folder (or nowhere) is not
  followed; a placed file never has wider permissions than its source (and is never
  executable);
* a file in place that differs from the incoming one is kept, and said so, unless
  ``--force``: then it is replaced and the old one kept under
  ``<destination>/.previous/<date-time>/`` (a hidden folder the pipeline does not read);
* folders and files that cannot be read are named with the reason (e.g. permission denied).

Unsafe names and unreadable folders or files are fatal in the default strict mode (nothing is
placed); with ``--allow-incomplete`` they are skipped, and the summary counts them. An empty
source, or one where every file was skipped, is an error (exit 1)."""
from __future__ import annotations

import errno
import json
import os
import re
import shutil
import stat
import sys
import tempfile
import threading
import time
import zipfile
import zlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterable, Mapping
from urllib.parse import urljoin

from tqdm import tqdm

from ser.errors import SerError
from ser.corpora import (
    RAVDESS_SPEECH_PER_ACTOR,
    TESS_ACTORS,
    TESS_FILES,
    TESS_SPEAKERS,
    corpus_of,
    parse_ravdess_name,
    parse_tess_name,
)
from ser.files import atomic_path, os_reason, write_json
from ser.paths import DATA_DIR, FEATURES_DIR, TESS_SOURCE_DIR
from ser.scan import AUDIO_EXTENSIONS

PROG = "download_data.py"
ZENODO_URL = "https://zenodo.org"
ZENODO_RECORD = 1188976
DATAVERSE_URL = "https://borealisdata.ca"
TESS_DOI = "doi:10.5683/SP2/E8H2MF"
DOWNLOAD_DIR = DATA_DIR / "downloads"
ENV_BASE_URL = "SER_BASE_URL"
ENV_ZENODO_URL = "SER_ZENODO_URL"
ENV_DATAVERSE_URL = "SER_DATAVERSE_URL"

ARCHIVES = {"ravdess_speech": "Audio_Speech_Actors_01-24.zip",
            "ravdess_song": "Audio_Song_Actors_01-24.zip"}


# The 14 folders of the TESS distribution (used when a TESS file arrives without its folder).
CORPORA = (*ARCHIVES, "tess")   # the corpora this step gets (not your own CSV corpus)
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


# Expected numbers of audio files. ``total``: the whole corpus; ``per_actor``: every RAVDESS
# actor present (actor 18 has no song, so song actors simply number 23 in the official zip).
DOWNLOAD_EXPECTED = {"ravdess_speech": {"total": 1440, "per_actor": 60},
                     "ravdess_song": {"total": 1012, "per_actor": 44},
                     "tess": {"total": TESS_FILES}}


# Local copies may lack whole actors (the shared copy has actors 01-20 only).
LOCAL_EXPECTED = {"ravdess_speech": {"per_actor": RAVDESS_SPEECH_PER_ACTOR},
                  "ravdess_song": {"per_actor": 44},
                  "tess": {"total": TESS_FILES}}

OTHER = "other"   # summary bucket for files that belong to no corpus
STAGING_PREFIX = "download_data-"
PREVIOUS_DIR = ".previous"   # under a destination: files replaced by --force
USER_AGENT = "ser-download_data/1 (python-requests)"


class DownloadError(SerError, RuntimeError):
    """A failure with a one-line message for the user (the CLI prints it and exits 1)."""


class UnsafeName(DownloadError):
    """A name from a listing or an archive that is not one plain name inside its destination."""


@dataclass
class Stats:
    placed: int = 0
    present: int = 0
    replaced: int = 0          # of ``placed``: an existing, differing file was replaced
    skipped: Counter = field(default_factory=Counter)   # reason -> count
    note: str = ""
    backup: str = ""           # where the replaced files were kept

    def line(self, name: str) -> str:
        n_skip = sum(self.skipped.values())
        if name == OTHER:
            s = f"other files: {n_skip} skipped"
        else:
            s = (f"{name}: {self.placed} placed, {self.present} already present, "
                 f"{n_skip} skipped")
        if n_skip:
            s += " (" + ", ".join(f"{n} {why}" for why, n in self.skipped.most_common()) + ")"
        if self.replaced:
            s += f", {self.replaced} replaced a differing file (the previous kept in " \
                 f"{self.backup})"
        if self.note:
            s += f" [{self.note}]"
        return s


class Summary:
    """Per-corpus counts of files placed / already present / skipped (with reasons)."""

    def __init__(self) -> None:
        self.stats: dict[str, Stats] = {c: Stats() for c in (*CORPORA, OTHER)}

    def __getitem__(self, name: str) -> Stats:
        return self.stats[name]

    def line(self) -> str:
        parts = [st.line(name) for name, st in self.stats.items()
                 if name != OTHER or st.placed or st.present or st.skipped]
        return "Summary: " + "; ".join(parts)


def _warn(msg: str) -> None:
    tqdm.write(f"{PROG}: warning: {msg}", file=sys.stderr)


def _info(msg: str) -> None:
    tqdm.write(msg, file=sys.stdout)


_DRIVE = re.compile(r"^[A-Za-z]:")
_SEPARATORS = re.compile(r"[/\\]")


def _shown(s: object) -> str:
    """``s`` for a one-line message (control characters escaped)."""
    s = str(s)
    return s if s.isprintable() else repr(s)[1:-1]


def name_problem(name: object) -> str | None:
    """Why ``name`` cannot be used as one file or folder name (None: it can)."""
    if not isinstance(name, str):
        return f"not a string but {type(name).__name__}"
    if not name:
        return "empty"
    if "\0" in name:
        return "contains a NUL character"
    if name.startswith(("/", "\\")):
        return "an absolute path"
    if _DRIVE.match(name):
        return "starts with a drive letter"
    if ".." in _SEPARATORS.split(name):
        return "contains '..'"
    if _SEPARATORS.search(name):
        return "contains a path separator"
    if name == ".":
        return "is '.'"
    if not name.isprintable():
        return "contains a control character"
    return None


def check_name(name: object, where: str, what: str = "name") -> str:
    """``name`` if it is one plain file or folder name, else :class:`UnsafeName`."""
    why = name_problem(name)
    if why:
        raise UnsafeName(f"{where}: unsafe {what} '{_shown(name)}' ({why}); refused")
    return name   # type: ignore[return-value]


def path_problem(path: str) -> str | None:
    """Why a relative path of ``/``-separated names (an archive member, a Dataverse
    ``directoryLabel``) cannot be used: absolute, a drive letter, ``..``, NUL, control
    characters. Empty and ``.`` components are allowed (they name nothing)."""
    if not isinstance(path, str):
        return f"not a string but {type(path).__name__}"
    if path.startswith(("/", "\\")):
        return "an absolute path"
    for part in _SEPARATORS.split(path):
        if part in ("", "."):
            continue
        why = name_problem(part)
        if why:
            return why
    return None


def resolve_inside(root: str | os.PathLike, parts: Iterable[str], where: str) -> Path:
    """The destination ``root/parts...`` of an entry, checked: every part one plain name
    (:func:`name_problem`), and the resolved path (symbolic links followed) inside the
    resolved ``root``. The one resolver of every destination (folders, archives, listings).

    Raises :class:`UnsafeName` with a line naming ``where`` (the entry).
    """
    parts = tuple(parts)
    for part in parts:
        check_name(part, where)
    root = Path(root)
    dest = root.joinpath(*parts)
    real_root, real = os.path.realpath(root), os.path.realpath(dest)
    if real == real_root or os.path.commonpath([real_root, real]) != real_root:
        raise UnsafeName(f"{where}: destination {dest} resolves to {real}, outside {root}; "
                         f"refused")
    return dest


def _sf_reason(e: BaseException) -> str:
    why = getattr(e, "error_string", None) or _short(e)
    return str(why).strip().rstrip(".")


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
                return True, f"not readable audio ({_sf_reason(e)})"
    except OSError as e:
        return False, os_reason(e)
    if info.frames <= 0:
        return True, "not readable audio (no audio samples)"
    return None


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
            return Classified("bad", reason=_short(e))
        return Classified("tess", (parent, name), ("tess", t.speaker, t.word, t.emotion), parent)
    try:
        r = parse_ravdess_name(name)
    except ValueError as e:
        ravdess_error = _short(e)
    else:
        if r.actor in TESS_SPEAKERS:
            return Classified("bad", reason=f"{name}: actor {r.actor} is a TESS file renamed by "
                              f"tess_pipeline.py; import TESS from its original folders")
        if r.modality != 3:
            return Classified("bad", reason=f"{name}: modality {r.modality:02d} is not "
                              f"audio-only (03)")
        try:
            corpus = corpus_of(r, name).name
        except ValueError as e:
            return Classified("bad", reason=_short(e))
        actor = f"Actor_{r.actor:02d}"
        return Classified(corpus, (actor, name), ("ravdess", Path(name).stem.split(".")[0]),
                          actor)
    speaker = _TESS_PREFIXES.get(name.split("_")[0].upper())
    if speaker is not None:
        try:   # the folder name only lends the speaker (for "OA_bite_neutral.wav")
            t = parse_tess_name(PurePosixPath(f"{speaker}_", name))
        except ValueError as e:
            return Classified("bad", reason=_short(e))
        folder = TESS_FOLDERS[(t.speaker, t.emotion)]
        return Classified("tess", (folder, name), ("tess", t.speaker, t.word, t.emotion), folder)
    return Classified("bad", reason=f"{ravdess_error}; not under a TESS OAF_/YAF_ folder either")


_TESS_PREFIXES = {**{s: s for s in TESS_ACTORS}, **{s[:2]: s for s in TESS_ACTORS}}


def _short(e: BaseException) -> str:
    s = str(e).strip()
    return s.splitlines()[0] if s else type(e).__name__


@dataclass
class Item:
    corpus: str
    dest: Path
    key: tuple
    group: str
    label: str                                # where it comes from, for messages
    src: Path | None = None                   # a file on disk ...
    zsrc: "ZipSource | None" = None           # ... or a zip member
    member: zipfile.ZipInfo | None = None
    move: bool = False                        # src is our own staging copy: rename it
    known_hash: str | None = None             # for downloads: the repository's checksum
    remote: "RemoteFile | None" = None        # for downloads: where it comes from
    status: str | None = None                 # "new", "present", "other-format", "replace",
    #                                           "kept" (differs, not replaced without force)
    existing: Path | None = None              # the file that makes it present
    root: Path | None = None                  # the destination folder dest lies in


class ZipSource:
    """An open zip archive (one handle, reused for all its members)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            self.zf = zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, OSError) as e:
            raise DownloadError(f"{self.path}: not a valid zip archive ({_short(e)})") from None
        self.lock = threading.Lock()

    def members(self) -> list[zipfile.ZipInfo]:
        return [m for m in self.zf.infolist() if not m.is_dir()]

    def corrupt(self, m: zipfile.ZipInfo, e: BaseException) -> DownloadError:
        return DownloadError(f"{self.path}: corrupt archive, cannot extract {_shown(m.filename)} "
                             f"({_short(e)}); nothing was placed")

    def audio_problem(self, m: zipfile.ZipInfo) -> str | None:
        """None if member ``m`` decodes as audio (``soundfile.info``), else the reason.

        The member is read whole first (into memory, or a temporary file when large), so a
        damaged member is a :class:`DownloadError` (corrupt archive), not "not audio"."""
        import soundfile as sf
        if m.file_size == 0:
            return "empty file (0 bytes)"
        with tempfile.SpooledTemporaryFile(max_size=64 << 20) as buf:
            try:
                with self.lock, self.zf.open(m) as f:
                    shutil.copyfileobj(f, buf, 1 << 20)
            except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as e:
                raise self.corrupt(m, e) from None
            buf.seek(0)
            try:
                info = sf.info(buf)
            except Exception as e:   # libsndfile's errors are of several types
                return f"not readable audio ({_sf_reason(e)})"
        return None if info.frames > 0 else "not readable audio (no audio samples)"

    def close(self) -> None:
        self.zf.close()


def _zip_mtime(m: zipfile.ZipInfo) -> float:
    try:
        return time.mktime((*m.date_time, 0, 0, -1))
    except (OverflowError, ValueError):
        return 0.0


class Planner:
    """Collects items from folders, zips or download listings; de-duplicates; counts.

    Problems with single entries (unsafe names, unreadable folders and files) are fatal when
    ``strict`` (a :class:`DownloadError` before anything is placed); otherwise the entry is
    skipped, named in a warning and counted in the summary (``problems`` counts them).
    """

    def __init__(self, *, features_dir: Path, tess_dir: Path, corpora: Iterable[str],
                 summary: Summary, strict: bool = True):
        self.roots = {"ravdess_speech": Path(features_dir), "ravdess_song": Path(features_dir),
                      "tess": Path(tess_dir)}
        self.corpora = tuple(corpora)
        self.summary = summary
        self.strict = strict
        self.items: list[Item] = []
        self.seen: dict[tuple, Item] = {}
        self.duplicate_example = ""
        self.zips: list[ZipSource] = []
        self.entries = 0          # files and zip members looked at
        self.problems = 0         # entries skipped for a problem (see refuse)

    def refuse(self, kind: str, reason: str, msg: str, *, fatal: bool | None = None) -> None:
        """One entry cannot be used: fatal (``fatal``, by default ``strict``), or skipped,
        named in a warning and counted under ``reason``."""
        if self.strict if fatal is None else fatal:
            raise DownloadError(f"{msg}; nothing was placed (--allow-incomplete skips it)")
        _warn(f"skipped {msg}")
        self.summary[kind].skipped[reason] += 1
        self.problems += 1

    def add(self, c: Classified, label: str, **source) -> Item | None:
        if c.kind == "junk":
            self.summary[OTHER].skipped["hidden or system files"] += 1
            return None
        if c.kind == "nonaudio":
            self.summary[OTHER].skipped["not audio"] += 1
            return None
        if c.kind == "bad":
            self.summary[OTHER].skipped["bad name"] += 1
            _warn(f"skipped {label}: {c.reason}")
            return None
        if c.kind not in self.corpora:
            self.summary[c.kind].skipped["not selected"] += 1
            return None
        assert c.rel_dest is not None
        root = self.roots[c.kind]
        try:
            dest = resolve_inside(root, c.rel_dest, label)
        except UnsafeName as e:
            self.refuse(c.kind, "unsafe name", str(e))
            return None
        if c.key in self.seen:    # the one seen is readable audio: it is preferred
            self.summary[c.kind].skipped["duplicate"] += 1
            if not self.duplicate_example:
                self.duplicate_example = f"{label} duplicates {self.seen[c.key].label}"
            return None
        if source.get("member") is not None:      # downloads are checked once downloaded
            why = source["zsrc"].audio_problem(source["member"])
            if why:
                self.refuse(c.kind, "not readable audio", f"{label}: {why}", fatal=False)
                return None
        elif source.get("src") is not None and not source.get("move"):
            problem = audio_problem(source["src"])
            if problem is not None:
                readable, why = problem
                self.refuse(c.kind, "not readable audio" if readable else "unreadable file",
                            f"{label}: {why}", fatal=None if not readable else False)
                return None
        item = Item(c.kind, dest, c.key, c.group, label, root=root, **source)
        self.seen[c.key] = item
        self.items.append(item)
        return item

    # ---- sources ---------------------------------------------------------------------------
    def add_tree(self, src: Path) -> None:
        """Walk ``src``: audio files and zip archives (an ``originals/`` folder is ignored).

        Symbolic links are followed only when they lead to a file inside ``src`` (links to
        folders are not followed; links out of ``src`` or to nothing are reported and
        counted); folders that cannot be read are named and counted (fatal when strict).
        """
        src = Path(src)
        if src.is_file():       # named by the user: taken even if it is a link
            self.entries += 1
            if src.suffix.lower() == ".zip":
                self.add_zip(src)
            else:
                self.add(classify(src.resolve().parts[-2:]), str(src), src=src)
            return
        real_src = os.path.realpath(src)
        # The root's own name counts as a parent folder (``--from .../OAF_angry``).
        top = tuple(n for n in Path(real_src).parts[-1:] if not n.startswith("."))

        def unreadable(e: OSError) -> None:
            self.refuse(OTHER, "unreadable folder",
                        f"{_shown(e.filename)}: cannot read this folder ({os_reason(e)})")

        for dirpath, dirnames, filenames in os.walk(src, onerror=unreadable):
            d = Path(dirpath)
            rel = d.relative_to(src)
            keep = []
            for name in sorted(dirnames):
                if name.startswith(".") or name == "__MACOSX":
                    continue
                if (d / name).is_symlink():
                    self._link(d / name, real_src, src)
                    continue
                if rel == Path(".") and name == "originals":
                    n = sum(1 for p in (d / name).rglob("*")
                            if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
                    if n:
                        self.summary[OTHER].skipped["in originals/ (ignored: duplicates; "
                                                    "--from DIR/originals imports them)"] += n
                    continue
                keep.append(name)
            dirnames[:] = keep
            for name in sorted(filenames):
                p = d / name
                self.entries += 1
                if p.is_symlink():
                    if not self._link(p, real_src, src):
                        continue
                elif not p.is_file():     # a FIFO, socket or device: never opened
                    self.summary[OTHER].skipped["not a regular file"] += 1
                    _warn(f"skipped {_shown(p)}: not a regular file")
                    continue
                if name.lower().endswith(".zip") and not name.startswith("."):
                    self.add_zip(p)
                    continue
                self.add(classify((*top, *rel.parts, name)), _shown(p), src=p)

    def _link(self, p: Path, real_src: str, src: Path) -> bool:
        """Is the symbolic link ``p`` one to follow (to a file inside ``src``)? Else it is
        reported and counted."""
        target = os.path.realpath(p)
        if os.path.commonpath([real_src, target]) != real_src:
            kind, why = ("symbolic link leaving the source folder",
                         f"a symbolic link to {_shown(target)}, outside {src}; not followed")
        elif not os.path.exists(target):
            kind, why = ("broken symbolic link", f"a symbolic link to "
                         f"{_shown(os.readlink(p))}, which does not exist")
        elif os.path.isdir(target):
            kind, why = ("symbolic link to a folder (not followed)",
                         f"a symbolic link to the folder {_shown(target)} (links to folders "
                         f"are not followed)")
        elif not os.path.isfile(target):
            kind, why = ("not a regular file",
                         f"a symbolic link to {_shown(target)}, not a regular file")
        else:
            return True
        self.summary[OTHER].skipped[kind] += 1
        _warn(f"skipped {_shown(p)}: {why}")
        return False

    def add_zip(self, path: Path, *, only: str | None = None) -> None:
        """Every member of a zip; with ``only``, members of other corpora are refused.

        A member whose path is absolute, has a drive letter, ``..`` or a control character is
        refused (fatal when strict)."""
        z = ZipSource(path)
        self.zips.append(z)
        for m in z.members():
            self.entries += 1
            inner = m.filename.replace("\\", "/")
            label = f"{path.name}:{_shown(inner)}"
            why = path_problem(inner)
            if why:
                self.refuse(OTHER, "unsafe name", f"{label}: unsafe member name ({why}); "
                                                  f"refused")
                continue
            c = classify(PurePosixPath(inner).parts)
            if only and c.kind in CORPORA and c.kind != only:
                self.summary[c.kind].skipped[f"unexpected in {path.name}"] += 1
                continue
            self.add(c, label, zsrc=z, member=m)

    def close(self) -> None:
        for z in self.zips:
            z.close()
        self.zips.clear()

    def report_duplicates(self) -> None:
        n = sum(self.summary[c].skipped["duplicate"] for c in CORPORA)
        if n:
            _info(f"skipped {n} duplicate file(s) (same recording as an earlier file, e.g. "
                  f"{self.duplicate_example})")


def check_counts(items: list[Item], expected: Mapping[str, Mapping[str, int | None]], *,
                 strict: bool, corpora: Iterable[str],
                 consequence: str = "nothing was placed") -> bool:
    """Compare the numbers of files per corpus (and per actor) with ``expected``.

    Raises :class:`DownloadError` listing the differences (and ``consequence``) when
    ``strict``; otherwise warns. Returns True when the counts are as expected.
    """
    problems = []
    for corpus in corpora:
        exp = expected.get(corpus) or {}
        mine = [it for it in items if it.corpus == corpus]
        if not mine:
            continue
        total = exp.get("total")
        if total is not None and len(mine) != total:
            problems.append(f"{corpus} has {len(mine)} audio files, expected {total}")
        per_actor = exp.get("per_actor")
        if per_actor is not None:
            groups = Counter(it.group for it in mine)
            for g, n in sorted(groups.items()):
                if n != per_actor:
                    problems.append(f"{corpus} {g} has {n} files, expected {per_actor}")
    if not problems:
        return True
    shown = "; ".join(problems[:4]) + (f"; and {len(problems) - 4} more" if len(problems) > 4
                                       else "")
    if strict:
        raise DownloadError(f"file counts are not as expected: {shown}; {consequence} "
                            f"(--allow-incomplete imports them anyway)")
    _warn(f"file counts are not as expected (importing anyway): {shown}")
    return False


_UMASK: int | None = None


def _file_mode() -> int:
    global _UMASK
    if _UMASK is None:
        _UMASK = os.umask(0o022)
        os.umask(_UMASK)
    return 0o666 & ~_UMASK


def _same_content(a: Path, b: Path) -> bool:
    import filecmp
    return filecmp.cmp(a, b, shallow=False)


def _crc32(path: Path) -> int:
    crc = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            crc = zlib.crc32(block, crc)
    return crc


def _is_present(item: Item, dest_stat: os.stat_result) -> bool:
    """Is ``item.dest`` (which exists) already the same file as the source?"""
    if item.member is not None:
        m = item.member
        if dest_stat.st_size != m.file_size:
            return False
        if int(dest_stat.st_mtime) == int(_zip_mtime(m)):
            return True
        return _crc32(item.dest) == m.CRC
    if item.known_hash is not None:
        import pooch
        return pooch.file_hash(str(item.dest), alg=item.known_hash.split(":")[0]) \
            == item.known_hash.split(":")[-1].lower()
    assert item.src is not None
    s = item.src.stat()
    if s.st_size != dest_stat.st_size:
        return False
    return s.st_mtime_ns == dest_stat.st_mtime_ns or _same_content(item.src, item.dest)


class _DirIndex:
    """Lower-cased stems of the files already in destination folders (listed once each)."""

    def __init__(self) -> None:
        self.cache: dict[Path, dict[str, str]] = {}

    def other_format(self, dest: Path) -> Path | None:
        folder = dest.parent
        if folder not in self.cache:
            idx: dict[str, str] = {}
            if folder.is_dir():
                for p in folder.iterdir():
                    if p.suffix.lower() in AUDIO_EXTENSIONS and not p.name.startswith("."):
                        idx.setdefault(p.name.split(".")[0].lower(), p.name)
            self.cache[folder] = idx
        have = self.cache[folder].get(dest.name.split(".")[0].lower())
        if have is not None and have != dest.name:
            return folder / have
        return None


def resolve_status(items: list[Item], summary: Summary) -> None:
    """Mark each item ``present``, ``other-format`` (skipped), ``replace`` or ``new``."""
    index = _DirIndex()
    for it in items:
        if it.status is not None:
            continue
        it.status = "new"
        try:
            st = it.dest.stat()
        except FileNotFoundError:
            st = None
        if st is not None:
            if _is_present(it, st):
                it.status, it.existing = "present", it.dest
            else:
                it.status = "replace"
            continue
        other = index.other_format(it.dest)
        if other is not None:
            it.status, it.existing = "other-format", other


KEPT = "differs from the file in place (kept; --force replaces it)"


class _Backups:
    """Where ``--force`` keeps the files it replaces: ``<root>/.previous/<date-time>/``,
    one folder per run and destination, the file's path below the root unchanged."""

    def __init__(self) -> None:
        self.dirs: dict[Path, Path] = {}

    def keep(self, it: Item) -> Path:
        """Keep the file at ``it.dest``; returns the folder of this run's kept files."""
        root = it.root if it.root is not None else it.dest.parent.parent
        if root not in self.dirs:
            base = root / PREVIOUS_DIR / time.strftime("%Y%m%d-%H%M%S")
            d, n = base, 1
            while d.exists():
                n += 1
                d = base.with_name(f"{base.name}-{n}")
            self.dirs[root] = d
        kept = self.dirs[root] / it.dest.relative_to(root)
        kept.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(it.dest, kept)        # the old file stays whole: the name is replaced
        except OSError:
            shutil.copy2(it.dest, kept)
        return self.dirs[root]


def place(items: list[Item], summary: Summary, *, force: bool = False, progress: bool = True,
          desc: str = "placing") -> None:
    """Put every item in place; zip members go through a staging folder first.

    Nothing from a zip reaches its destination unless every needed member of every zip was
    read back with a correct CRC. Single files are copied under a temporary name and renamed.
    A file in place that differs is kept (status ``kept``, reported) unless ``force``; then
    the old one is kept under ``<root>/.previous/<date-time>/`` before it is replaced.
    """
    resolve_status(items, summary)
    todo = []
    for it in items:
        st = summary[it.corpus]
        if it.status == "present":
            st.present += 1
        elif it.status == "other-format":
            st.skipped["already present in another format"] += 1
        elif it.status in ("replace", "kept") and not force:
            it.status = "kept"
            st.skipped[KEPT] += 1
            _warn(f"kept {it.dest}: it differs from {it.label}; --force replaces it (and keeps "
                  f"this one under {(it.root or it.dest.parent.parent) / PREVIOUS_DIR})")
        else:
            todo.append(it)
    if not todo:
        return
    staged: dict[int, Path] = {}
    staging_dirs: list[Path] = []
    backups = _Backups()
    try:
        zipped = [it for it in todo if it.member is not None]
        if zipped:
            roots: dict[Path, Path] = {}
            for it in tqdm(zipped, desc="extracting", unit="file", disable=not progress,
                           file=sys.stderr):
                root = it.dest.parent.parent       # features_dir or tess_dir
                if root not in roots:             # staging folder beside it
                    root.parent.mkdir(parents=True, exist_ok=True)
                    roots[root] = Path(tempfile.mkdtemp(prefix=f".{root.name}{STAGING_PREFIX}",
                                                        suffix=".tmp", dir=root.parent))
                    staging_dirs.append(roots[root])
                tmp = roots[root] / it.dest.parent.name / it.dest.name
                tmp.parent.mkdir(exist_ok=True)
                _extract(it, tmp)
                staged[id(it)] = tmp
        for it in tqdm(todo, desc=desc, unit="file", disable=not progress, file=sys.stderr):
            it.dest.parent.mkdir(parents=True, exist_ok=True)
            st = summary[it.corpus]
            if it.status in ("replace", "kept") and it.dest.exists():
                st.backup = str(backups.keep(it))
            if id(it) in staged:
                _move_into_place(staged[id(it)], it.dest, _member_mode(it.member))
            elif it.move:
                _move_into_place(it.src, it.dest, _file_mode())
            else:
                _copy_into_place(it.src, it.dest)
            st.placed += 1
            if it.status in ("replace", "kept"):
                st.replaced += 1
            it.status, it.existing = "placed", it.dest
    finally:
        for d in staging_dirs:
            shutil.rmtree(d, ignore_errors=True)


def _member_mode(m: zipfile.ZipInfo | None) -> int:
    """Permissions for an extracted member: ours, narrowed by the member's Unix mode."""
    mode = _file_mode()
    if m is not None and m.create_system == 3:
        unix = (m.external_attr >> 16) & 0o777
        if unix:
            mode &= unix
    return mode


def _extract(it: Item, tmp: Path) -> None:
    m = it.member
    try:
        with it.zsrc.lock, it.zsrc.zf.open(m) as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as e:
        raise it.zsrc.corrupt(m, e) from None
    t = _zip_mtime(m)
    if t:
        os.utime(tmp, (t, t))


def _copy_into_place(src: Path, dest: Path) -> None:
    """Copy ``src`` (followed if a link) onto ``dest``; never with wider permissions."""
    with open(src, "rb") as f:
        s = os.fstat(f.fileno())
        with atomic_path(dest) as tmp:
            with open(tmp, "wb") as out:
                shutil.copyfileobj(f, out, 1 << 20)
            os.chmod(tmp, _file_mode() & stat.S_IMODE(s.st_mode))
            os.utime(tmp, ns=(s.st_atime_ns, s.st_mtime_ns))


def _move_into_place(src: Path, dest: Path, mode: int) -> None:
    os.chmod(src, mode)
    try:
        os.replace(src, dest)
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
        _copy_into_place(src, dest)
        src.unlink()


def import_local(src: str | os.PathLike, *, features_dir: str | os.PathLike = FEATURES_DIR,
                 tess_dir: str | os.PathLike = TESS_SOURCE_DIR,
                 corpora: Iterable[str] = CORPORA,
                 expected: Mapping[str, Mapping[str, int | None]] | None = None,
                 strict: bool = True, force: bool = False, progress: bool = True) -> Summary:
    """Import the corpora from a local folder (or a single zip).

    Parameters
    ----------
    src : path-like
        A folder holding the official zips, a TESS zip, unpacked folders or the shared layout
        (its top-level ``originals/`` is ignored: it duplicates files), or one zip file.
    features_dir, tess_dir : path-like, keyword-only
        Destinations of RAVDESS (``Actor_XX`` folders) and TESS (its original folders).
    corpora : iterable of str, keyword-only
        Subset of :data:`CORPORA`.
    expected : mapping, keyword-only
        Per corpus ``{"total": n, "per_actor": n}`` (``None`` or absent: not checked);
        replaces the defaults (:data:`LOCAL_EXPECTED`) for the corpora it names.
    strict : bool, keyword-only
        Count differences, unsafe archive member names and unreadable folders or files are
        errors (nothing is placed) unless False (then they are skipped and counted).
    force : bool, keyword-only
        Replace files in place that differ (the old ones are kept under
        ``<destination>/.previous/<date-time>/``); without it they are kept and reported.

    Returns
    -------
    Summary

    Raises
    ------
    DownloadError
        Unreadable zip, corrupt member, wrong counts, an empty source, nothing to import.
    """
    src = Path(src)
    if not src.exists():
        raise DownloadError(f"{src}: no such file or folder")
    corpora = _check_corpora(corpora)
    summary = Summary()
    planner = Planner(features_dir=Path(features_dir), tess_dir=Path(tess_dir),
                      corpora=corpora, summary=summary, strict=strict)
    try:
        planner.add_tree(src)
        planner.report_duplicates()
        found = Counter(it.corpus for it in planner.items)
        if not planner.items:
            _nothing_to_import(src, planner, summary)
        for c in corpora:
            if not found[c]:
                summary[c].note = f"none found in {src}"
        exp = {**LOCAL_EXPECTED, **(expected or {})}
        check_counts(planner.items, exp, strict=strict, corpora=corpora)
        place(planner.items, summary, force=force, progress=progress, desc="copying")
    finally:
        planner.close()
    return summary


def _nothing_to_import(src: Path, planner: Planner, summary: Summary) -> None:
    """Raise the error that says why ``src`` gave nothing to import."""
    what = "archive" if src.is_file() else "folder"
    if planner.entries == 0 and not planner.problems:
        raise DownloadError(f"{src}: the {what} is empty; nothing to import")
    why = Counter()
    for st in summary.stats.values():
        why.update(st.skipped)
    skipped = ", ".join(f"{n} {w}" for w, n in why.most_common())
    if not any(summary[c].skipped for c in CORPORA) and not planner.problems:
        raise DownloadError(f"{src}: nothing to import: no RAVDESS or TESS audio files found "
                            f"(looked for MM-VV-EE-II-SS-RR-AA names and OAF_/YAF_ folders, "
                            f"also in zips; skipped: {skipped or 'nothing'})")
    raise DownloadError(f"{src}: nothing to import, every file was skipped ({skipped})")


def _check_corpora(corpora: Iterable[str]) -> tuple[str, ...]:
    corpora = tuple(dict.fromkeys(corpora))
    unknown = [c for c in corpora if c not in CORPORA]
    if unknown:
        raise DownloadError(f"unknown corpus {', '.join(unknown)} (choose from "
                            f"{', '.join(CORPORA)})")
    return corpora


_local = threading.local()


def _session():
    """One ``requests.Session`` per thread."""
    import requests
    s = getattr(_local, "session", None)
    if s is None:
        s = requests.Session()
        s.headers["User-Agent"] = USER_AGENT
        _local.session = s
    return s


def _get_json(url: str, *, params: dict | None = None, timeout: float, what: str) -> dict:
    import requests
    try:
        r = _session().get(url, params=params, timeout=(min(timeout, 30), timeout))
        r.raise_for_status()
        return r.json()
    except requests.HTTPError as e:
        raise DownloadError(f"cannot get {what} from {url}: HTTP {e.response.status_code} "
                            f"{e.response.reason}") from None
    except requests.RequestException as e:
        raise DownloadError(f"cannot get {what} from {url}: {_short(e)}") from None
    except ValueError:
        raise DownloadError(f"cannot get {what} from {url}: the answer is not JSON") from None


_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


def parse_content_range(value: str | None) -> tuple[int, int, int | None] | None:
    """``"bytes 100-199/1000"`` -> ``(100, 199, 1000)``; anything else -> None."""
    m = _CONTENT_RANGE.match(value or "")
    if not m:
        return None
    return int(m.group(1)), int(m.group(2)), None if m.group(3) == "*" else int(m.group(3))


class _Incomplete(SerError):
    pass


class ResumableDownloader:
    """A pooch downloader that keeps a ``.part`` file and continues it with HTTP ``Range``.

    ``downloader(url, output_file, pooch)`` fills ``part_path`` (resuming what is there),
    retrying cut connections up to ``retries`` times in a row without progress, then renames
    the complete ``.part`` onto pooch's temporary ``output_file``; pooch then checks the hash
    and moves it under the final name. If the connection cannot be recovered the ``.part``
    stays, so the next run resumes it. (What arrived after the last complete chunk of a cut
    connection is lost, so a resume starts at a multiple of ``chunk_size``.)
    """

    chunk_size = 1 << 16

    def __init__(self, part_path: str | os.PathLike, *, size: int | None = None,
                 retries: int = 5, retry_wait: float = 1.0, timeout: float = 60.0,
                 progress: bool = True, desc: str | None = None):
        self.part = Path(part_path)
        self.size = size
        self.retries = retries
        self.retry_wait = retry_wait
        self.timeout = timeout
        self.progress = progress
        self.desc = desc or self.part.name.removesuffix(".part")
        self.called = False
        self.resumed = False

    def __call__(self, url: str, output_file, pooch=None, check_only: bool = False):
        import requests
        if check_only:
            r = _session().head(url, timeout=self.timeout, allow_redirects=True)
            return r.status_code == 200
        self.called = True
        self.part.parent.mkdir(parents=True, exist_ok=True)
        total = self.size
        failures = 0
        bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=self.desc,
                   disable=not self.progress, file=sys.stderr, leave=False)
        try:
            while True:
                have = self.part.stat().st_size if self.part.exists() else 0
                if total is not None and have > total:
                    self.part.unlink()
                    have = 0
                if total is not None and have == total and have > 0:
                    break
                got = 0
                try:
                    headers = {"Accept-Encoding": "identity"}
                    if have:
                        headers["Range"] = f"bytes={have}-"
                    with _session().get(url, headers=headers, stream=True,
                                        timeout=(min(self.timeout, 30), self.timeout)) as r:
                        if r.status_code == 416 and have:
                            m = re.search(r"/(\d+)\s*$", r.headers.get("Content-Range", ""))
                            if m and int(m.group(1)) == have:
                                total = have   # the part was complete
                                break
                            self.part.unlink()  # longer than the file: start over
                            continue
                        if r.status_code >= 500 or r.status_code == 429:
                            raise _Incomplete(f"HTTP {r.status_code} {r.reason}")
                        if r.status_code >= 400:
                            raise DownloadError(f"{self.desc}: HTTP {r.status_code} {r.reason} "
                                                f"for {url}")
                        if have and r.status_code == 206:
                            cr = parse_content_range(r.headers.get("Content-Range"))
                            if cr is None or cr[0] != have:
                                self.part.unlink()  # another range came back: start over
                                continue
                            mode = "ab"
                            total = cr[2] if cr[2] is not None else total
                            self.resumed = True
                        else:
                            mode, have = "wb", 0
                            n = r.headers.get("Content-Length")
                            if n is not None and n.isdigit():
                                total = int(n)
                        bar.reset(total=total)
                        bar.update(have)
                        with open(self.part, mode) as f:
                            for chunk in r.iter_content(chunk_size=self.chunk_size):
                                f.write(chunk)
                                got += len(chunk)
                                bar.update(len(chunk))
                    size = self.part.stat().st_size
                    if total is not None and size < total:
                        raise _Incomplete(f"connection closed at {size} of {total} bytes")
                    break
                except (requests.ConnectionError, requests.Timeout,
                        requests.exceptions.ChunkedEncodingError, _Incomplete) as e:
                    failures = 1 if got else failures + 1
                    have = self.part.stat().st_size if self.part.exists() else 0
                    if failures > self.retries:
                        where = f"{have} of {total} bytes" if total else f"{have} bytes"
                        raise DownloadError(
                            f"{self.desc}: download interrupted after {where} ({_short(e)}); "
                            f"the partial file {self.part} is kept, run again to resume"
                        ) from None
                    time.sleep(min(self.retry_wait * 2 ** (failures - 1), 30))
                except requests.RequestException as e:
                    raise DownloadError(f"{self.desc}: {_short(e)} ({url})") from None
        finally:
            bar.close()
        os.replace(self.part, output_file)


@dataclass
class RemoteFile:
    name: str
    url: str
    known_hash: str
    size: int | None = None
    folder: str | None = None   # Dataverse directoryLabel as listed (unchecked)


def fetch(rf: RemoteFile, dest_dir: Path, *, fname: str | None = None, retries: int,
          retry_wait: float, timeout: float, progress: bool) -> tuple[Path, bool]:
    """Download ``rf`` into ``dest_dir`` with pooch (verified); reuse a verified copy.

    ``fname`` (default ``rf.name``) is the file name in ``dest_dir``: one plain name, else
    :class:`UnsafeName`. Returns ``(path, downloaded)``.
    """
    import pooch
    pooch.get_logger().setLevel("WARNING")
    fname = check_name(rf.name if fname is None else fname, rf.url, "file name")
    for attempt in (1, 2):
        dl = ResumableDownloader(dest_dir / f"{fname}.part", size=rf.size, retries=retries,
                                 retry_wait=retry_wait, timeout=timeout, progress=progress,
                                 desc=fname)
        try:
            path = pooch.retrieve(rf.url, rf.known_hash, fname=fname, path=dest_dir,
                                  downloader=dl)
            return Path(path), dl.called
        except ValueError as e:
            msg = str(e)
            if "hash" not in msg.lower():
                raise DownloadError(f"{rf.name}: {_short(e)}") from None
            if attempt == 1 and dl.resumed:
                _warn(f"{rf.name}: checksum mismatch after resuming; downloading it again "
                      f"from the start")
                continue
            got = re.search(r"but got (\w+)", msg)
            raise DownloadError(
                f"{rf.name}: checksum mismatch (expected {rf.known_hash}"
                f"{', got ' + got.group(1) if got else ''}); the corrupt download was deleted "
                f"and nothing was placed") from None
    raise AssertionError("unreachable")


def _human(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    return f"{n / 1024:.1f} KiB" if n < 2 ** 20 else f"{n / 2 ** 20:.1f} MiB"


def rebase(link: str, base: str, default: str) -> str:
    """Point a link of the API's answer at ``base`` when a mirror replaces ``default``.

    Relative links are joined to ``base``; absolute links to the default host are moved to
    ``base``; links to any other host are kept.
    """
    base = base.rstrip("/")
    default = default.rstrip("/")
    if "://" not in link:
        return urljoin(base + "/", link.lstrip("/"))
    if base != default and (link == default or link.startswith(default + "/")):
        return base + link[len(default):]
    return link


def resolve_urls(zenodo_url: str | None = None, dataverse_url: str | None = None,
                 base_url: str | None = None, env: Mapping[str, str] | None = None
                 ) -> tuple[str, str]:
    """Server base URLs ``(zenodo, dataverse)``.

    Arguments win over the environment, a specific URL over the common mirror: ``zenodo_url``,
    ``base_url``, ``$SER_ZENODO_URL``, ``$SER_BASE_URL``, then https://zenodo.org (the same
    for Dataverse).
    """
    env = os.environ if env is None else env
    z = (zenodo_url or base_url or env.get(ENV_ZENODO_URL) or env.get(ENV_BASE_URL)
         or ZENODO_URL)
    d = (dataverse_url or base_url or env.get(ENV_DATAVERSE_URL) or env.get(ENV_BASE_URL)
         or DATAVERSE_URL)
    return z.rstrip("/"), d.rstrip("/")


def _hash_name(kind: str) -> str:
    k = kind.lower().replace("-", "")
    if k not in ("md5", "sha1", "sha256", "sha512"):
        raise DownloadError(f"unsupported checksum type {kind!r} in the repository listing")
    return k


def zenodo_files(zenodo_url: str, *, timeout: float) -> dict[str, RemoteFile]:
    """The files of Zenodo record 1188976 (legacy and InvenioRDM answer shapes)."""
    api = f"{zenodo_url}/api/records/{ZENODO_RECORD}"
    data = _get_json(api, timeout=timeout, what=f"the file list of Zenodo record "
                                                 f"{ZENODO_RECORD}")
    files = data.get("files")
    if isinstance(files, dict):            # {"entries": {name: {...}}} variant
        files = list((files.get("entries") or {}).values())
    if not isinstance(files, list):
        raise DownloadError(f"{api}: the answer lists no files")
    out = {}
    for f in files:
        name = f.get("key") or f.get("filename")
        checksum = f.get("checksum")
        if not name or not checksum:
            continue
        if ":" not in checksum:
            checksum = f"md5:{checksum}"
        links = f.get("links") or {}
        link = (links.get("content") or links.get("self") or links.get("download")
                or f"/records/{ZENODO_RECORD}/files/{name}?download=1")
        if link.rstrip("/").endswith(f"/api/records/{ZENODO_RECORD}/files/{name}"):
            link = link.rstrip("/") + "/content"   # InvenioRDM: that one is the metadata
        size = f.get("size", f.get("filesize"))
        out[name] = RemoteFile(name, rebase(link, zenodo_url, ZENODO_URL), checksum,
                               int(size) if size is not None else None)
    return out


def dataverse_files(dataverse_url: str, *, timeout: float) -> list[RemoteFile]:
    """The files of the TESS dataset, with their folder (``directoryLabel``) and checksum.

    Names are returned as listed; :func:`_download_tess` checks them before any use."""
    api = f"{dataverse_url}/api/datasets/:persistentId/"
    data = _get_json(api, params={"persistentId": TESS_DOI}, timeout=timeout,
                     what=f"the file list of {TESS_DOI}")
    try:
        files = data["data"]["latestVersion"]["files"]
    except (KeyError, TypeError):
        raise DownloadError(f"{api}?persistentId={TESS_DOI}: the answer has no "
                            f"data.latestVersion.files") from None
    out = []
    for f in files:
        df = f.get("dataFile") or {}
        name = f.get("label") or df.get("filename")
        fid = df.get("id")
        if not name or fid is None:
            continue
        cs = df.get("checksum") or {}
        if cs.get("type") and cs.get("value"):
            known = f"{_hash_name(cs['type'])}:{cs['value']}"
        elif df.get("md5"):
            known = f"md5:{df['md5']}"
        else:
            raise DownloadError(f"{api}: {name} has no checksum in the listing")
        out.append(RemoteFile(name, f"{dataverse_url}/api/access/datafile/{fid}", known,
                              df.get("filesize"), f.get("directoryLabel") or None))
    return out


def _marker_path(cache_dir: Path, corpus: str) -> Path:
    return cache_dir / f"{corpus}.complete.json"


def _write_marker(cache_dir: Path, corpus: str, root: Path, items: list[Item],
                  source: str, verified: bool) -> None:
    files = {}
    for it in items:
        p = it.existing or it.dest
        s = p.stat()
        files[p.relative_to(root).as_posix()] = [s.st_size, s.st_mtime_ns]
    write_json(_marker_path(cache_dir, corpus),
                          {"corpus": corpus, "source": source, "dest": str(root.resolve()),
                           "counts_verified": verified, "files": files})


def _marker_ok(cache_dir: Path, corpus: str, root: Path, *, strict: bool) -> int:
    """Number of files if the marker of ``corpus`` still matches ``root``, else 0.

    A marker written by a run that accepted wrong counts is not trusted by a ``strict`` run.
    """
    p = _marker_path(cache_dir, corpus)
    try:
        m = json.loads(p.read_text())
        if m.get("dest") != str(root.resolve()) or not m.get("files"):
            return 0
        if strict and not m.get("counts_verified"):
            return 0
        for rel, (size, mtime_ns) in m["files"].items():
            s = (root / rel).stat()
            if s.st_size != size or s.st_mtime_ns != mtime_ns:
                return 0
        return len(m["files"])
    except (OSError, ValueError, TypeError, KeyError):
        return 0


def download(*, features_dir: str | os.PathLike = FEATURES_DIR,
             tess_dir: str | os.PathLike = TESS_SOURCE_DIR,
             cache_dir: str | os.PathLike = DOWNLOAD_DIR,
             corpora: Iterable[str] = CORPORA,
             zenodo_url: str | None = None, dataverse_url: str | None = None,
             base_url: str | None = None,
             expected: Mapping[str, Mapping[str, int | None]] | None = None,
             strict: bool = True, retries: int = 5, retry_wait: float = 1.0,
             timeout: float = 60.0, jobs: int = 4, progress: bool = True,
             remove_archives: bool = False, force: bool = False) -> Summary:
    """Download the corpora from Zenodo and Dataverse (or a mirror) and place them.

    Parameters
    ----------
    features_dir, tess_dir : path-like, keyword-only
        Destinations (RAVDESS ``Actor_XX`` folders; TESS original folders).
    cache_dir : path-like, keyword-only
        Where the zips (and their ``.part`` files) and the completion markers are kept.
    corpora : iterable of str, keyword-only
        Subset of :data:`CORPORA`.
    zenodo_url, dataverse_url, base_url : str, keyword-only
        Server base URLs (see :func:`resolve_urls`; the environment variables apply too).
    expected, strict : keyword-only
        As in :func:`import_local`; defaults are :data:`DOWNLOAD_EXPECTED`.
    retries, retry_wait, timeout : keyword-only
        Cut connections are resumed up to ``retries`` times in a row, waiting ``retry_wait``
        seconds (doubling); ``timeout`` is the read timeout in seconds.
    jobs : int, keyword-only
        Parallel downloads of the TESS files.
    remove_archives : bool, keyword-only
        Delete each zip once its files are in place.
    force : bool, keyword-only
        As in :func:`import_local`.

    Returns
    -------
    Summary

    Raises
    ------
    DownloadError
        With a one-line message; the destinations hold only complete, verified files.
    """
    corpora = _check_corpora(corpora)
    features_dir, tess_dir, cache_dir = Path(features_dir), Path(tess_dir), Path(cache_dir)
    zen, dv = resolve_urls(zenodo_url, dataverse_url, base_url)
    exp = {**DOWNLOAD_EXPECTED, **(expected or {})}
    summary = Summary()
    zen_listing: dict[str, RemoteFile] | None = None
    for corpus in corpora:
        root = tess_dir if corpus == "tess" else features_dir
        n = _marker_ok(cache_dir, corpus, root, strict=strict)
        if n:
            summary[corpus].present += n
            summary[corpus].note = "complete, skipped"
            _info(f"{corpus}: complete in {root} ({n} files, as recorded in "
                  f"{_marker_path(cache_dir, corpus)}), skipped")
            continue
        if corpus == "tess":
            _download_tess(dv, tess_dir=tess_dir, cache_dir=cache_dir, summary=summary,
                           expected=exp, strict=strict, retries=retries,
                           retry_wait=retry_wait, timeout=timeout, jobs=jobs,
                           progress=progress, force=force)
            continue
        if zen_listing is None:
            zen_listing = zenodo_files(zen, timeout=timeout)
        name = ARCHIVES[corpus]
        rf = zen_listing.get(name)
        if rf is None:
            raise DownloadError(f"{name} is not listed in Zenodo record {ZENODO_RECORD} at "
                                f"{zen} (listed: {', '.join(sorted(zen_listing)) or 'nothing'})")
        size = f" ({_human(rf.size)})" if rf.size else ""
        cached = (cache_dir / name).exists()
        if not cached:
            _info(f"{corpus}: downloading {name}{size} from {rf.url}")
        path, downloaded = fetch(rf, cache_dir, retries=retries, retry_wait=retry_wait,
                                 timeout=timeout, progress=progress)
        if cached and not downloaded:
            _info(f"{corpus}: reusing {path} (checksum verified, no download)")
        elif cached:
            _info(f"{corpus}: {path} did not match its checksum; downloaded it again")
        planner = Planner(features_dir=features_dir, tess_dir=tess_dir, corpora=(corpus,),
                          summary=summary, strict=strict)
        try:
            planner.add_zip(path, only=corpus)
            planner.report_duplicates()
            verified = check_counts(planner.items, exp, strict=strict, corpora=(corpus,),
                                    consequence=f"{corpus} was not placed")
            if not planner.items:
                raise DownloadError(f"{path}: no {corpus} audio files in the archive")
            place(planner.items, summary, force=force, progress=progress,
                  desc=f"placing {corpus}")
        finally:
            planner.close()
        if _complete(planner, planner.items):
            _write_marker(cache_dir, corpus, features_dir, planner.items, rf.url, verified)
        if remove_archives:
            path.unlink()
    return summary


def _complete(planner: Planner, items: list[Item]) -> bool:
    """Is every entry of the source in place (so a completion record may be written)?"""
    return not planner.problems and not any(it.status == "kept" for it in items)


def _download_tess(dv: str, *, tess_dir: Path, cache_dir: Path, summary: Summary,
                   expected: Mapping, strict: bool, retries: int, retry_wait: float,
                   timeout: float, jobs: int, progress: bool, force: bool = False) -> None:
    """TESS file by file into a staging folder beside ``tess_dir``, then into place.

    Every name of the listing is checked (:func:`check_name`, :func:`path_problem`,
    :func:`resolve_inside`) before anything is downloaded; every download is checked to be
    audio before anything is placed.
    """
    listing = dataverse_files(dv, timeout=timeout)
    planner = Planner(features_dir=tess_dir, tess_dir=tess_dir, corpora=("tess",),
                      summary=summary, strict=strict)
    staging = tess_dir.parent / f".{tess_dir.name}.download.tmp"
    items: list[Item] = []
    for rf in listing:
        where = f"{TESS_DOI} listing entry {rf.url}"
        try:
            check_name(rf.name, where, "label")
            why = path_problem(rf.folder) if rf.folder is not None else None
            if why:
                raise UnsafeName(f"{where}: unsafe directoryLabel '{_shown(rf.folder)}' "
                                 f"({why}); refused")
        except UnsafeName as e:
            planner.refuse("tess", "unsafe name", str(e))
            continue
        folders = [f for f in _SEPARATORS.split(rf.folder or "") if f not in ("", ".")]
        parts = (folders[-1], rf.name) if folders else (rf.name,)
        c = classify(parts)
        if c.kind in ("ravdess_speech", "ravdess_song"):
            c = Classified("bad", reason=f"{rf.name}: not a TESS file")
        it = planner.add(c, f"{TESS_DOI}:{'/'.join(parts)} ({rf.url})",
                         known_hash=rf.known_hash)
        if it is not None:
            it.src = resolve_inside(staging, it.dest.relative_to(tess_dir).parts, where)
            it.move = True
            items.append(it)
            it.remote = rf
    planner.report_duplicates()
    if not items:
        raise DownloadError(f"{dv}: the dataset {TESS_DOI} lists no TESS audio files")
    verified = check_counts(items, expected, strict=strict, corpora=("tess",),
                            consequence="tess was not downloaded")
    # Which files are needed at all (already in place: no download; differing: only with
    # force).
    resolve_status(items, summary)
    need = [it for it in items if it.status == "new" or (force and it.status == "replace")]
    if need:
        _info(f"tess: downloading {len(need)} of {len(items)} files from {dv} "
              f"({TESS_DOI}) into {staging}")
        errors: list[str] = []
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            futures = {pool.submit(fetch, it.remote, it.src.parent, fname=it.src.name,
                                   retries=retries, retry_wait=retry_wait, timeout=timeout,
                                   progress=False): it
                       for it in need}
            with tqdm(total=len(futures), desc="tess", unit="file", disable=not progress,
                      file=sys.stderr) as bar:
                for fut in as_completed(futures):
                    try:
                        fut.result()
                    except DownloadError as e:
                        errors.append(str(e))
                        for f in futures:
                            f.cancel()
                    bar.update(1)
        if errors:
            more = f" (and {len(errors) - 1} more failures)" if len(errors) > 1 else ""
            raise DownloadError(f"tess: {errors[0]}{more}; files downloaded so far are kept "
                                f"in {staging}, nothing was placed in {tess_dir}")
        for it in need:      # the checksum is the server's word; audio is checked here
            problem = audio_problem(it.src)
            if problem is None:
                continue
            it.src.unlink(missing_ok=True)
            if strict:
                raise DownloadError(f"tess: {it.label}: downloaded, but {problem[1]}; nothing "
                                    f"was placed in {tess_dir} (--allow-incomplete skips it)")
            planner.refuse("tess", "not readable audio", f"{it.label}: {problem[1]}")
            items.remove(it)
    elif all(it.status == "present" for it in items):
        _info(f"tess: all {len(items)} files are already in {tess_dir} (checksums verified), "
              f"no download")
    place(items, summary, force=force, progress=progress, desc="placing tess")
    shutil.rmtree(staging, ignore_errors=True)
    if _complete(planner, items):
        _write_marker(cache_dir, "tess", tess_dir, items, f"{dv} {TESS_DOI}", verified)
