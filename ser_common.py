"""Definitions shared by every script of the pipeline.

One module, imported by ``download_data.py``, ``tess_pipeline.py``, ``create_features.py``,
``neural_network.py``, ``live_predictions.py`` and ``plot_model.py``, so that paths, the label
map, file-name parsing, audio loading and feature parameters can never drift between training
and prediction.
"""
from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, NamedTuple

import numpy as np

from ser import encoder as byols_encoder   # the BYOL-S encoder's weights and feature set
from ser import numba_cache   # every librosa call goes through numba_cache.librosa()

# --------------------------------------------------------------------------------------------
# Paths
# --------------------------------------------------------------------------------------------
ROOT = Path(__file__).resolve().parent
FEATURES_DIR = ROOT / "features"          # Actor_XX audio folders and the .joblib feature files
MODELS_DIR = ROOT / "models"
MEDIA_DIR = ROOT / "media"
DATA_DIR = ROOT / "data"                  # downloads and the raw TESS tree
TESS_SOURCE_DIR = DATA_DIR / "tess"       # where download_data.py leaves TESS for tess_pipeline.py
TESS_MANIFEST = FEATURES_DIR / "tess_manifest.csv"
DEFAULT_MODEL = MODELS_DIR / "Emotion_Voice_Detection_Model.h5"

AUDIO_EXTENSIONS = (".wav", ".flac", ".aif", ".aiff", ".ogg", ".oga", ".opus", ".mp3")
"""What folder expansion takes as audio: everything libsndfile decodes that the pipeline meets,
lossless (WAV, FLAC, AIFF) and lossy (Ogg Vorbis, Opus, MP3)."""

# --------------------------------------------------------------------------------------------
# Labels
# --------------------------------------------------------------------------------------------
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

# Expected sizes of the corpora (files).
RAVDESS_SPEECH_PER_ACTOR = 60
TESS_FILES = 2800

CORPORA = ("ravdess_speech", "ravdess_song", "tess")


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
        """``tess`` for actors 25/26, else ``ravdess_speech`` or ``ravdess_song``."""
        if self.actor in TESS_SPEAKERS:
            return "tess"
        return "ravdess_speech" if self.vocal_channel == 1 else "ravdess_song"


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


def _os_reason(e: OSError) -> str:
    """An OSError's reason in words ("permission denied"), for one-line messages."""
    return (e.strerror or type(e).__name__).lower()


class AudioScan(NamedTuple):
    """What :func:`scan_audio_files` found under a folder."""
    files: list[Path]                    # audio files (by extension), sorted
    left_out: list[tuple[Path, str]]     # files and folders not taken, with the reason
    unreadable: list[tuple[Path, str]]   # folders that could not be listed, with the reason


def scan_audio_files(folder: str | os.PathLike) -> AudioScan:
    """The audio files under ``folder`` (recursively, by :data:`AUDIO_EXTENSIONS`), and every
    file or folder left out, with why.

    Left out: names starting with ``.`` (a hidden folder is named once, not searched), other
    extensions, entries that are not regular files, links to folders (not followed, as
    ``Path.rglob`` does not) and broken links. A folder that cannot be listed (permission
    denied, ...) is in ``unreadable``, never dropped without a word.
    """
    import stat
    folder = Path(folder)
    files: list[Path] = []
    left_out: list[tuple[Path, str]] = []
    unreadable: list[tuple[Path, str]] = []
    stack = [folder]
    while stack:
        d = stack.pop()
        try:
            with os.scandir(d) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            unreadable.append((d, _os_reason(e)))
            continue
        subdirs = []
        for e in entries:
            p = d / e.name
            try:
                is_link = e.is_symlink()
                mode = os.stat(p).st_mode        # follows a link
            except FileNotFoundError:
                left_out.append((p, "broken link (its target does not exist)"))
                continue
            except OSError as err:
                left_out.append((p, f"cannot look at it ({_os_reason(err)})"))
                continue
            if stat.S_ISDIR(mode):
                if e.name.startswith("."):
                    left_out.append((p, "hidden folder, not searched"))
                elif is_link:
                    left_out.append((p, f"link to the folder {os.path.realpath(p)}, "
                                        f"not followed"))
                else:
                    subdirs.append(p)
            elif e.name.startswith("."):
                left_out.append((p, "hidden file"))
            elif not stat.S_ISREG(mode):
                left_out.append((p, "not a regular file"))
            elif p.suffix.lower() not in AUDIO_EXTENSIONS:
                left_out.append((p, f"not an audio file (audio is {', '.join(AUDIO_EXTENSIONS)})"))
            else:
                files.append(p)
        stack.extend(reversed(subdirs))
    return AudioScan(sorted(files), left_out, unreadable)


def list_audio_files(folder: str | os.PathLike) -> list[Path]:
    """All audio files (by extension) under ``folder``, recursively, sorted.

    Hidden names are left out and links to folders are not followed; what is left out, and
    folders that cannot be read, are in :func:`scan_audio_files`.
    """
    return scan_audio_files(folder).files


def actor_dirs(features_dir: str | os.PathLike = FEATURES_DIR) -> list[Path]:
    """The ``Actor_XX`` folders under ``features_dir``, sorted."""
    d = Path(features_dir)
    return sorted(p for p in d.glob("Actor_*") if p.is_dir())


# --------------------------------------------------------------------------------------------
# Audio
# --------------------------------------------------------------------------------------------
SAMPLE_RATE = 22050
N_FFT = 2048
HOP_LENGTH = 512
N_MFCC = 40
N_CHROMA = 12
N_CONTRAST_BANDS = 6           # spectral contrast gives n_bands + 1 = 7 values
MIN_SAMPLES = N_FFT            # shorter than one FFT frame cannot be judged
SILENCE_PEAK_DBFS = -60.0      # a clip whose peak is below this is "silent"


EXACT_LENGTH_FORMATS = frozenset({"WAV", "WAVEX", "W64", "RF64", "AIFF", "FLAC", "CAF"})
"""libsndfile formats whose header states the exact number of frames: only there is a file with
fewer frames than declared refused as truncated. An MP3's length is an estimate (from its first
frame's bit rate and the file size, unless a Xing/Info header states it), Ogg's comes from the
last page present: for those a short read is not evidence of a cut file."""


class AudioError(ValueError):
    """An audio file that cannot be used; the message names the file and the problem."""


class AudioTooLong(AudioError):
    """A file longer than the caller's limit (:func:`load_audio`'s ``max_seconds``)."""

    def __init__(self, path, seconds: float | None, limit: float):
        self.path, self.seconds, self.limit = path, seconds, limit
        length = (f"{seconds:.0f} s long, more than" if seconds is not None else
                  "longer than")
        super().__init__(f"{path}: {length} the {limit:g} s limit")


_UNKNOWN_FRAMES = 2 ** 62      # libsndfile's frame count of a stream of unknown length is 2**63-1


def load_audio(path: str | os.PathLike, *, sr: int = SAMPLE_RATE,
               max_seconds: float | None = None) -> np.ndarray:
    """Read any libsndfile format, mix to mono and resample with soxr (librosa's default).

    This is the single loader of the project: training features and live predictions go
    through it, so they cannot differ by resampler.

    Parameters
    ----------
    path : path-like
        WAV, FLAC, AIFF (also AIFF data named ``.wav``), Ogg Vorbis, Opus, MP3; any rate,
        any channel count. A file is refused as truncated only where its container states an
        exact length (:data:`EXACT_LENGTH_FORMATS`); an MP3 is decoded to the end of its
        stream whatever length its header suggests (:func:`_read_mpeg`).
    sr : int, keyword-only
        Target sample rate.
    max_seconds : float, optional, keyword-only
        Refuse a longer file (:class:`AudioTooLong`), judged from its header before anything
        is decoded wherever the header states the length (all but an MP3 without a Xing/Info
        header, whose length libsndfile only estimates); never more than this is decoded.

    Returns
    -------
    y : np.ndarray, shape (n_samples,), float32
    """
    import soundfile as sf
    path = Path(path)
    _check_readable_file(path)
    try:
        with sf.SoundFile(str(path)) as f:
            file_sr, fmt, declared = f.samplerate, f.format, f.frames
            limit = None                      # frames: at most limit + 1 are decoded
            if max_seconds is not None and math.isfinite(max_seconds):
                limit = int(max_seconds * file_sr)
            data = _read_mpeg(path, f.channels, limit) if fmt == "MP3" else None
            if data is None:                  # the header states the length: judge it first
                if limit is not None and limit < declared < _UNKNOWN_FRAMES:
                    raise AudioTooLong(path, declared / file_sr, max_seconds)
                data = f.read(-1 if limit is None else limit + 1, dtype="float32",
                              always_2d=True)
            if limit is not None and data.shape[0] > limit:
                raise AudioTooLong(path, None, max_seconds)
    except AudioError:
        raise
    except Exception as e:  # libsndfile's own errors are of several types
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise AudioError(f"{path}: not readable audio ({msg})") from None
    if data.shape[0] == 0:
        raise AudioError(f"{path}: no audio samples")
    if fmt in EXACT_LENGTH_FORMATS and declared > 0 and data.shape[0] < declared:
        raise AudioError(f"{path}: truncated ({data.shape[0]} of {declared} frames)")
    missing = _wav_missing_bytes(path)
    if missing:
        raise AudioError(f"{path}: truncated WAV ({missing} bytes of its data chunk are missing)")
    y = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if not np.all(np.isfinite(y)):
        raise AudioError(f"{path}: contains NaN or infinite samples")
    return resample(y, file_sr, sr=sr)


def _read_mpeg(path: Path, channels: int, max_frames: int | None = None
               ) -> np.ndarray | None:
    """An MP3 decoded to the end of its stream, shape (n, channels); None when libsndfile
    knows its exact length (a Xing/Info header states it), to be read the ordinary way.

    Without such a header libsndfile estimates an MP3's length from the first frame's bit rate
    and the file size, and never reads past the estimate: a VBR stream was cut to 40 % of its
    audio without a word, and one that starts quietly was refused as "truncated (98496 of
    376947 frames)". From a pipe, libsndfile cannot estimate and decodes until the stream ends.
    At most ``max_frames + 1`` frames are decoded.
    """
    import threading

    import soundfile as sf
    r, w = os.pipe()
    failed: list[OSError] = []

    def feed() -> None:
        try:
            with open(w, "wb") as dst, open(path, "rb") as src:
                while chunk := src.read(1 << 16):
                    dst.write(chunk)
        except BrokenPipeError:
            pass                    # the reader has what it needs
        except OSError as e:
            failed.append(e)

    writer = threading.Thread(target=feed, name="mp3-feed", daemon=True)
    writer.start()
    blocks, n = [], 0
    try:
        with sf.SoundFile(r, closefd=False) as f:
            if f.seekable():        # the length is known: read the file itself
                return None
            while max_frames is None or n <= max_frames:
                b = f.read(1 << 16, dtype="float32", always_2d=True)
                if not len(b):
                    break
                blocks.append(b)
                n += len(b)
    finally:
        os.close(r)
        writer.join()
    if failed:
        raise AudioError(f"{path}: cannot read the file ({_os_reason(failed[0])})")
    return np.concatenate(blocks) if blocks else np.zeros((0, channels), np.float32)


def resample(y: np.ndarray, orig_sr: int, *, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Resample mono audio to ``sr`` with soxr (librosa's default ``soxr_hq``).

    The one resampling step of the project: :func:`load_audio` and live capture use it.

    Returns
    -------
    y : np.ndarray, shape (n_samples_at_sr,), float32, contiguous
    """
    y = np.asarray(y, dtype=np.float32)
    if orig_sr != sr:
        librosa = numba_cache.librosa()
        y = librosa.resample(y, orig_sr=orig_sr, target_sr=sr, res_type="soxr_hq")
    return np.ascontiguousarray(y, dtype=np.float32)


def _check_readable_file(path: Path) -> None:
    """Refuse, naming the real reason, a path that is not a readable, non-empty regular file
    (libsndfile would only say "System error" or "Format not recognised")."""
    import stat
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        raise AudioError(f"{path}: file not found") from None
    except PermissionError:
        raise AudioError(f"{path}: cannot read the file (permission denied on a folder "
                         f"above it)") from None
    except OSError as e:
        raise AudioError(f"{path}: cannot read the file ({_os_reason(e)})") from None
    if stat.S_ISDIR(st.st_mode):
        raise AudioError(f"{path}: a folder, not an audio file")
    if not stat.S_ISREG(st.st_mode):
        raise AudioError(f"{path}: not a regular file")
    if st.st_size == 0:
        raise AudioError(f"{path}: empty file (0 bytes)")
    try:
        with open(path, "rb"):
            pass
    except OSError as e:
        raise AudioError(f"{path}: cannot read the file ({_os_reason(e)})") from None


def _wav_missing_bytes(path: Path) -> int:
    """For a RIFF/WAVE file, how many bytes of the declared data chunk are not in the file.

    libsndfile silently reads what is there; a cut download should not pass as a short clip.
    """
    import struct
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return 0
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            cid, clen = struct.unpack("<4sI", f.read(8))
            if cid == b"data":
                if clen in (0, 0xFFFFFFFF):      # streaming writers leave it unset
                    return 0
                return max(0, pos + 8 + clen - size)
            pos += 8 + clen + (clen & 1)
    return 0


def check_signal(y: np.ndarray, *, name: str = "signal") -> None:
    """Refuse a signal that cannot be judged: too short, non-finite or silent."""
    if y.ndim != 1:
        raise AudioError(f"{name}: expected mono audio of shape (n,), got {y.shape}")
    if y.shape[0] < MIN_SAMPLES:
        raise AudioError(f"{name}: too short ({y.shape[0]} samples < {MIN_SAMPLES}, "
                         f"one FFT frame)")
    if not np.all(np.isfinite(y)):
        raise AudioError(f"{name}: contains NaN or infinite samples")
    peak = float(np.max(np.abs(y)))
    if peak <= 10 ** (SILENCE_PEAK_DBFS / 20):
        raise AudioError(f"{name}: silent (peak {20 * np.log10(max(peak, 1e-12)):.0f} dBFS "
                         f"< {SILENCE_PEAK_DBFS:.0f} dBFS), no speech detected")


# --------------------------------------------------------------------------------------------
# Features
# --------------------------------------------------------------------------------------------
CACHED_FEATURES = ("mfcc", "chroma", "contrast", "stats", "byols")  # computed and cached per file
# Composite sets: the concatenation of cached sets, in this order, built from the parts'
# cached vectors (never computed again). One entry per composite.
COMPOSITE_SETS = {"combined": ("mfcc", "chroma", "contrast"),
                  "stats_byols": ("stats", "byols")}
BASE_FEATURES = COMPOSITE_SETS["combined"]          # the parts of "combined"
FEATURE_SETS = ("mfcc", "chroma", "contrast", "combined", "stats", "byols", "stats_byols")
# "stats": pooled statistics of frame features over the utterance with its silence trimmed
# (TRIM_TOP_DB): MFCC 40 + deltas + delta-deltas, chroma 12, contrast 7, RMS, ZCR, spectral
# centroid, bandwidth, roll-off, flatness; for each, STATS over frames.
# "byols": the BYOL-S encoder's frames pooled over the utterance (ser/encoder.py; its weights
# in models/byols_default512.npz).
TRIM_TOP_DB = 30
STATS = ("mean", "std", "min", "max", "p10", "p50", "p90")
STATS_FRAME_DIM = 3 * N_MFCC + N_CHROMA + (N_CONTRAST_BANDS + 1) + 6
_CACHED_DIMS = {"mfcc": N_MFCC, "chroma": N_CHROMA, "contrast": N_CONTRAST_BANDS + 1,
                "stats": STATS_FRAME_DIM * len(STATS), "byols": byols_encoder.DIM}
FEATURE_DIMS = {**_CACHED_DIMS, **{name: sum(_CACHED_DIMS[p] for p in parts)
                                   for name, parts in COMPOSITE_SETS.items()}}
FEATURE_PARAMS = {"sample_rate": SAMPLE_RATE, "n_fft": N_FFT, "hop_length": HOP_LENGTH,
                  "n_mfcc": N_MFCC, "n_chroma": N_CHROMA, "n_contrast_bands": N_CONTRAST_BANDS,
                  "resampler": "soxr_hq", "pooling": "mean"}
# the parameters of the cached sets that are not computed with FEATURE_PARAMS
SET_PARAMS = {"byols": byols_encoder.feature_params()}
# bump a set's version when the extraction code changes what it computes for that set
FEATURE_VERSIONS = {"mfcc": 1, "chroma": 1, "contrast": 1, "combined": 1, "stats": 5,
                    "byols": byols_encoder.VERSION, "stats_byols": 1}


def parts_of(feature: str) -> tuple[str, ...]:
    """The cached sets a feature set is made of: its parts if composite, else itself."""
    return COMPOSITE_SETS.get(feature, (feature,))


def needs_encoder(feature: str) -> bool:
    """Whether the set needs the BYOL-S encoder's weights (ser/encoder.py)."""
    return "byols" in parts_of(feature)


def feature_params(feature: str) -> dict:
    """Parameters that define a feature set (stored in caches and model sidecars).

    A composite set whose parts share their parameters (``combined``) has them flat, as a
    cached set; one whose parts differ (``stats_byols``) lists each part's under ``parts``.
    """
    if feature not in FEATURE_SETS:
        raise ValueError(f"unknown feature set {feature!r} (choose from {', '.join(FEATURE_SETS)})")
    head = {"feature": feature, "dim": FEATURE_DIMS[feature], "version": FEATURE_VERSIONS[feature]}
    parts = parts_of(feature)
    own = [SET_PARAMS.get(p, FEATURE_PARAMS) for p in parts]
    if all(o == own[0] for o in own):
        return {**head, **own[0]}
    return {**head, "parts": {p: feature_params(p) for p in parts}}


def params_hash(params: dict) -> str:
    return hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]


@functools.lru_cache(maxsize=None)
def _mel_basis(sr: int) -> np.ndarray:
    """librosa.filters.mel for N_FFT, built once per rate (~1 ms per call otherwise)."""
    librosa = numba_cache.librosa()
    basis = librosa.filters.mel(sr=sr, n_fft=N_FFT)
    basis.flags.writeable = False
    return basis


def _log_mel(power: np.ndarray, sr: int) -> np.ndarray:
    """= power_to_db(librosa.feature.melspectrogram(S=power, sr=sr)), cached filterbank."""
    librosa = numba_cache.librosa()
    return librosa.power_to_db(np.einsum("...ft,mf->...mt", power, _mel_basis(sr),
                                         optimize=True))


def extract_features(y: np.ndarray, *, sr: int = SAMPLE_RATE,
                     sets: tuple[str, ...] = ("mfcc",)) -> dict[str, np.ndarray]:
    """Feature vectors of one utterance, computing the STFT once.

    Parameters
    ----------
    y : np.ndarray, shape (n_samples,)
        Mono audio at ``sr`` (from :func:`load_audio`).
    sr : int, keyword-only
    sets : tuple of str, keyword-only
        Any of :data:`FEATURE_SETS`: ``mfcc`` (40), ``chroma`` (12), ``contrast`` (7) means
        over time, ``stats`` (pooled statistics), ``byols`` (the BYOL-S encoder's frames,
        pooled), and the composite sets of :data:`COMPOSITE_SETS` (their parts concatenated
        in order: ``combined`` 59, ``stats_byols``).

    Returns
    -------
    dict
        name -> np.ndarray of shape (FEATURE_DIMS[name],), float32, all finite.
    """
    librosa = numba_cache.librosa()
    unknown = [s for s in sets if s not in FEATURE_SETS]
    if unknown:
        raise ValueError(f"unknown feature set(s) {unknown} (choose from {FEATURE_SETS})")
    check_signal(y)
    need = set()
    for s in sets:
        need |= set(parts_of(s))
    y = np.asarray(y, dtype=np.float32)
    out: dict[str, np.ndarray] = {}
    if need & {"mfcc", "chroma", "contrast"}:
        S = np.abs(librosa.stft(y, n_fft=N_FFT, hop_length=HOP_LENGTH))
    if "mfcc" in need:
        m = librosa.feature.mfcc(S=_log_mel(S ** 2, sr), n_mfcc=N_MFCC)
        out["mfcc"] = m.mean(axis=1)
    if "chroma" in need:
        out["chroma"] = librosa.feature.chroma_stft(S=S, sr=sr, n_chroma=N_CHROMA).mean(axis=1)
    if "contrast" in need:
        out["contrast"] = librosa.feature.spectral_contrast(
            S=S, sr=sr, n_bands=N_CONTRAST_BANDS).mean(axis=1)
    if "stats" in need:
        out["stats"] = _pooled_stats(y, sr)
    if "byols" in need:
        out["byols"] = byols_encoder.vector(y, sr)
    for name, parts in COMPOSITE_SETS.items():
        if name in sets:
            out[name] = np.concatenate([out[p] for p in parts])
    result = {}
    for s in sets:
        v = np.asarray(out[s], dtype=np.float32)
        if not np.all(np.isfinite(v)):
            raise AudioError("features are not finite")
        result[s] = v
    return result


def _pooled_stats(y: np.ndarray, sr: int) -> np.ndarray:
    """Pooled statistics of frame features, shape (FEATURE_DIMS["stats"],).

    Written for speed (live streaming): the mel filterbank is cached and the simple spectral
    descriptors are computed directly from the magnitude spectrogram.
    """
    librosa = numba_cache.librosa()
    yt, _ = librosa.effects.trim(y, top_db=TRIM_TOP_DB, frame_length=N_FFT,
                                 hop_length=HOP_LENGTH)
    if len(yt) >= MIN_SAMPLES:
        y = yt
    S = np.abs(librosa.stft(y, n_fft=N_FFT, hop_length=HOP_LENGTH))
    power = S ** 2
    mfcc = librosa.feature.mfcc(S=_log_mel(power, sr), n_mfcc=N_MFCC)
    d1 = librosa.feature.delta(mfcc, width=9, mode="nearest")
    d2 = librosa.feature.delta(mfcc, width=9, order=2, mode="nearest")
    # chroma with the clip's own tuning estimated (librosa's default): ~7 ms of a 3 s window,
    # but measured +0.04 restricted UAR across corpora over a fixed A440 grid
    chroma = librosa.feature.chroma_stft(S=S, sr=sr, n_chroma=N_CHROMA)
    freqs = np.fft.rfftfreq(N_FFT, 1.0 / sr)[:, None]
    mag_sum = np.maximum(S.sum(axis=0, keepdims=True), 1e-10)
    centroid = (freqs * S).sum(axis=0, keepdims=True) / mag_sum
    bandwidth = np.sqrt((S / mag_sum * (freqs - centroid) ** 2).sum(axis=0, keepdims=True))
    cum = np.cumsum(power, axis=0)
    rolloff = freqs[np.argmax(cum >= 0.85 * cum[-1:], axis=0), 0][None, :]
    rms = np.sqrt(power.mean(axis=0, keepdims=True) * 2 / N_FFT)
    flatness = np.exp(np.log(power + 1e-10).mean(axis=0, keepdims=True)) / \
        (power.mean(axis=0, keepdims=True) + 1e-10)
    padded = np.pad(y, N_FFT // 2, mode="edge")
    frames = librosa.util.frame(padded, frame_length=N_FFT, hop_length=HOP_LENGTH)
    zcr = np.mean(np.signbit(frames[1:]) != np.signbit(frames[:-1]), axis=0, keepdims=True)
    n = min(S.shape[1], zcr.shape[1])
    contrast = librosa.feature.spectral_contrast(S=S, sr=sr, n_bands=N_CONTRAST_BANDS)
    frames = np.vstack([f[:, :n] for f in (
        mfcc, d1, d2, chroma, contrast, rms, zcr, np.log1p(centroid),
        np.log1p(bandwidth), np.log1p(rolloff), np.log10(flatness + 1e-10))])
    p10, p50, p90 = np.percentile(frames, [10, 50, 90], axis=1)
    return np.concatenate([frames.mean(axis=1), frames.std(axis=1), frames.min(axis=1),
                           frames.max(axis=1), p10, p50, p90]).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Safe writing
# --------------------------------------------------------------------------------------------
@contextmanager
def atomic_path(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; rename it onto ``dest`` only on success."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    # the writer's pid in the name: clean_stale_tmp removes what a killed process left
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.{os.getpid()}.", suffix=".tmp" + dest.suffix,
                               dir=dest.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)      # mkstemp makes 0600; outputs are ordinary files
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:     # alive, another user's
        return True
    return True


def clean_stale_tmp(folder: str | os.PathLike, *, recursive: bool = False) -> int:
    """Remove the temporary files of :func:`atomic_path` whose writer is no longer running
    (a killed run's leftovers); returns how many were removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    n = 0
    for p in (folder.rglob(".*.tmp*") if recursive else folder.glob(".*.tmp*")):
        m = re.match(r"\..+\.(\d+)\.[a-z0-9_]{8}\.tmp", p.name)   # see atomic_path
        pid = int(m.group(1)) if m else None
        if pid is not None and pid != os.getpid() and not _pid_alive(pid):
            try:
                p.unlink()
                n += 1
            except OSError:
                pass
    return n


def write_json(path: str | os.PathLike, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


# --------------------------------------------------------------------------------------------
# Models and their sidecar (the checkpoint carries its config, so prediction cannot drift)
# --------------------------------------------------------------------------------------------
SIDECAR_FORMAT = 1
SIDECAR_KEYS = ("format", "model", "labels", "feature", "feature_params", "input_shape",
                "normalization", "adaptation")


def sidecar_path(model_path: str | os.PathLike) -> Path:
    """``models/X.h5`` -> ``models/X.json``."""
    return Path(model_path).with_suffix(".json")


def quiet_tensorflow() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@contextmanager
def stderr_silenced() -> Iterator[None]:
    """Silence file descriptor 2 (TensorFlow's C++ start-up lines ignore TF_CPP_MIN_LOG_LEVEL)."""
    import sys
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def import_keras():
    """Import Keras (and TensorFlow) without their start-up chatter on stderr."""
    import sys
    if "keras" in sys.modules:
        return sys.modules["keras"]
    quiet_tensorflow()
    with stderr_silenced():
        import keras
        import tensorflow as tf
        tf.get_logger().setLevel("ERROR")
    return keras


def save_model(model, path: str | os.PathLike, sidecar: dict) -> Path | None:
    """Save a Keras model as H5 plus its JSON sidecar, both written atomically.

    ``sidecar`` must hold at least :data:`SIDECAR_KEYS` (``format`` is filled in). A model
    already at ``path`` is kept (with its sidecar) under ``previous/`` beside it; returns that
    copy's path, or ``None`` if nothing was replaced.
    """
    from ser.files import keep_previous
    import warnings
    sidecar = {"format": SIDECAR_FORMAT, **sidecar}
    missing = [k for k in SIDECAR_KEYS if k not in sidecar]
    if missing:
        raise ValueError(f"sidecar for {path} lacks {missing}")
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.unlink()   # h5py wants to create it
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Keras 3 calls H5 "legacy"
            model.save(str(tmp))
        kept = keep_previous(path)     # only once the new model is written
    write_json(sidecar_path(path), sidecar)
    return kept


SIDECAR_MAX_BYTES = 64 * 2 ** 20   # the shipped sidecars are < 100 kB


def _json_kind(v) -> str:
    text = json.dumps(v) if not isinstance(v, (dict, list)) else ""
    kind = {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(v), "a number")
    return f"{kind} {text}" if text and len(text) <= 40 else kind


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _sidecar_type_problem(meta: dict) -> str | None:
    """What is of the wrong type in a parsed sidecar (None: nothing)."""
    def numbers(v) -> bool:
        return isinstance(v, list) and all(_is_number(x) for x in v)
    expect = {
        "format": ("a whole number", lambda v: isinstance(v, int) and not isinstance(v, bool)),
        "model": ("a string", lambda v: isinstance(v, str)),
        "labels": ("a list of strings",
                   lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v)),
        "feature": ("a string", lambda v: isinstance(v, str)),
        "feature_params": ("an object", lambda v: isinstance(v, dict)),
        "input_shape": ("a list of positive whole numbers",
                        lambda v: isinstance(v, list) and bool(v) and all(
                            isinstance(x, int) and not isinstance(x, bool) and x > 0
                            for x in v)),
        "normalization": ('null or {"mean": [numbers], "std": [numbers]}',
                          lambda v: v is None or (isinstance(v, dict) and numbers(v.get("mean"))
                                                  and numbers(v.get("std")))),
        "adaptation": ("a string", lambda v: isinstance(v, str)),
        "speaker_prior_weight": ("a number >= 0",
                                 lambda v: _is_number(v) and math.isfinite(v) and v >= 0),
    }
    for key, (want, ok) in expect.items():
        if key in meta and not ok(meta[key]):
            return f"{key} is {_json_kind(meta[key])}, expected {want}"
    return None


def read_sidecar(model_path: str | os.PathLike) -> dict:
    """Read and check the sidecar of ``model_path``; errors name the file and the problem.

    Raises
    ------
    FileNotFoundError
        No sidecar beside the model.
    ValueError
        One line naming the sidecar: it cannot be read, is not UTF-8, not JSON, nested too
        deeply to parse, larger than :data:`SIDECAR_MAX_BYTES`, not an object, lacks a key of
        :data:`SIDECAR_KEYS`, has a key of the wrong type, is of a newer format, or its labels
        or feature parameters are not this version's.
    """
    sp = sidecar_path(model_path)
    try:
        size = sp.stat().st_size
    except (FileNotFoundError, NotADirectoryError):
        raise FileNotFoundError(f"{sp}: model sidecar not found (needed beside "
                                f"{model_path})") from None
    except OSError as e:
        raise ValueError(f"{sp}: cannot read the sidecar ({_os_reason(e)})") from None
    if size > SIDECAR_MAX_BYTES:
        raise ValueError(f"{sp}: malformed sidecar: {size} bytes, more than "
                         f"{SIDECAR_MAX_BYTES} (a sidecar is a few kB)")
    try:
        raw = sp.read_bytes()
    except OSError as e:
        raise ValueError(f"{sp}: cannot read the sidecar ({_os_reason(e)})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{sp}: malformed sidecar: not UTF-8 text (byte {e.start} is "
                         f"0x{raw[e.start]:02x})") from None
    try:
        meta = json.loads(text)
    except RecursionError:
        raise ValueError(f"{sp}: malformed sidecar: nested too deeply to read") from None
    except ValueError as e:          # JSONDecodeError, or an integer too long to convert
        raise ValueError(f"{sp}: not valid JSON ({str(e).splitlines()[0]})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{sp}: malformed sidecar: {_json_kind(meta)} at the top, expected "
                         f"an object")
    missing = [k for k in SIDECAR_KEYS if k not in meta]
    if missing:
        raise ValueError(f"{sp}: sidecar lacks {', '.join(missing)}")
    problem = _sidecar_type_problem(meta)
    if problem:
        raise ValueError(f"{sp}: malformed sidecar: {problem}")
    if not 1 <= meta["format"] <= SIDECAR_FORMAT:
        raise ValueError(f"{sp}: sidecar format {meta['format']} is "
                         f"{'newer than' if meta['format'] > SIDECAR_FORMAT else 'not'} the "
                         f"one this version reads ({SIDECAR_FORMAT}); update the code or "
                         f"retrain the model")
    if list(meta["labels"]) != list(EMOTIONS):
        raise ValueError(f"{sp}: label map {meta['labels']} differs from this version's "
                         f"{list(EMOTIONS)}")
    fp = meta["feature_params"]
    if meta["feature"] in FEATURE_SETS and fp != feature_params(meta["feature"]):
        raise ValueError(f"{sp}: model was trained with feature parameters {fp}, this version "
                         f"computes {feature_params(meta['feature'])}; retrain it")
    return meta


def load_model(model_path: str | os.PathLike = DEFAULT_MODEL):
    """Load a saved model and its sidecar; refuse a model whose input does not match.

    Returns
    -------
    model : keras.Model
        Uncompiled (Keras 3 cannot continue training an H5 model compiled on load; compile it
        again to train).
    meta : dict
        The sidecar.
    """
    model_path = Path(model_path)
    if not model_path.exists():
        raise FileNotFoundError(f"{model_path}: model file not found (train one with "
                                f"neural_network.py, or pass --model)")
    check_model_encoder(model_path)
    meta = read_sidecar(model_path)
    quiet_tensorflow()
    import keras
    try:
        model = keras.models.load_model(str(model_path), compile=False)
    except Exception as e:
        raise ValueError(f"{model_path}: cannot load model ({str(e).splitlines()[0]})") from None
    want = tuple(meta["input_shape"])
    have = tuple(model.input_shape[1:])
    if have != want:
        raise ValueError(f"{model_path}: model input {have} does not match its sidecar's "
                         f"{want} (feature set {meta['feature']})")
    if meta["feature"] in FEATURE_DIMS and want[0] != FEATURE_DIMS[meta["feature"]]:
        raise ValueError(f"{model_path}: input size {want[0]} does not fit feature set "
                         f"{meta['feature']} ({FEATURE_DIMS[meta['feature']]} values)")
    return model, meta


def check_model_encoder(model_path: str | os.PathLike, meta: dict | None = None) -> None:
    """Refuse (one line naming the file) a model trained on encoder features whose encoder
    weights are missing here or are not the ones its sidecar names (ser/encoder.py)."""
    byols_encoder.check_model_encoder(model_path, meta)


def normalize(X: np.ndarray, meta: dict) -> np.ndarray:
    """Apply the sidecar's normalisation (``None`` or ``{"mean": [...], "std": [...]}``)."""
    norm = meta.get("normalization")
    X = np.asarray(X, dtype=np.float32)
    if not norm:
        return X
    return (X - np.asarray(norm["mean"], np.float32)) / np.asarray(norm["std"], np.float32)


def model_input(vectors: np.ndarray, meta: dict) -> np.ndarray:
    """Feature vectors (n, d) -> the model's input (n, *input_shape), normalised."""
    X = normalize(np.atleast_2d(vectors), meta)
    return X.reshape((X.shape[0], *meta["input_shape"]))


SPEAKER_PRIOR = 10.0   # pseudo-utterances of the population statistics in a speaker's estimate


def speaker_stats(X: np.ndarray, prior: dict | None = None, *,
                  prior_weight: float = SPEAKER_PRIOR) -> dict:
    """Mean/std of one speaker's feature vectors, shrunk towards ``prior`` when few.

    Parameters
    ----------
    X : np.ndarray, shape (n_utterances, dim)
    prior : dict, optional
        Population ``{"mean", "std"}``; with it, the estimate is a weighted blend
        (``prior_weight`` pseudo-utterances), so that a speaker with 3 utterances gets mostly
        the population's std while one with 100 gets their own.
    """
    X = np.asarray(X, dtype=np.float64)
    n = X.shape[0]
    if n == 0:
        raise ValueError("speaker statistics need at least one utterance")
    return shrunk_stats(n, X.mean(axis=0), X.var(axis=0), prior, prior_weight=prior_weight)


def shrunk_stats(n: int, mean: np.ndarray, var: np.ndarray, prior: dict | None = None, *,
                 prior_weight: float = SPEAKER_PRIOR) -> dict:
    """:func:`speaker_stats` from the moments of ``n`` utterances (for running estimates)."""
    mean = np.asarray(mean, dtype=np.float64)
    var = np.maximum(np.asarray(var, dtype=np.float64), 0.0)
    if prior is not None:
        pm, ps = np.asarray(prior["mean"], float), np.asarray(prior["std"], float)
        w = n / (n + prior_weight)
        # shrink the variance strongly, the mean lightly (a mean is reliable much sooner)
        mean = (n * mean + 1.0 * pm) / (n + 1.0)
        var = w * var + (1 - w) * ps ** 2
    std = np.sqrt(var)
    std[std < 1e-6] = 1.0
    return {"mean": mean.astype(np.float32).tolist(), "std": std.astype(np.float32).tolist(),
            "n": int(n)}


def speaker_normalize(X: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Z-score the rows of each group (speaker) with that group's own statistics."""
    X = np.asarray(X, dtype=np.float32)
    out = np.empty_like(X)
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        st = speaker_stats(X[idx])
        out[idx] = (X[idx] - np.asarray(st["mean"], np.float32)) / np.asarray(st["std"],
                                                                              np.float32)
    return out


def library_versions() -> dict:
    import importlib.metadata as md
    out = {}
    for pkg in ("tensorflow-cpu", "tensorflow", "keras", "librosa", "numpy", "scikit-learn",
                "soxr"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out
