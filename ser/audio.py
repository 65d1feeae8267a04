"""Audio in: the one loader and resampler, signal checks and levels, the audio constants."""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from ser.errors import SerError
from ser.files import os_reason, regular_file_problem

SAMPLE_RATE = 22050
N_FFT = 2048
HOP_LENGTH = 512
MIN_SAMPLES = N_FFT            # shorter than one FFT frame cannot be judged
SILENCE_DBFS = -66.0           # speech level (speech_level_db) below which a clip is "silent":
                               # the quietest corpus file is at -56, a muted card at ~-75
MIN_RATE, MAX_RATE = 4000, 384000   # the sample rates read: a header saying 1 Hz is a lie
DEFAULT_MAX_SECONDS = 600.0    # files longer than this are refused unless the caller says
EXACT_LENGTH_FORMATS = frozenset({"WAV", "WAVEX", "W64", "RF64", "AIFF", "FLAC", "CAF"})
"""libsndfile formats whose header states the exact number of frames: only there is a file with
fewer frames than declared refused as truncated. An MP3's length is an estimate (from its first
frame's bit rate and the file size, unless a Xing/Info header states it), Ogg's comes from the
last page present: for those a short read is not evidence of a cut file."""


class AudioError(SerError, ValueError):
    """An audio file that cannot be used; the message names the file and the problem."""


class SampleTypeError(AudioError, TypeError):
    """Samples of the wrong kind (not an array, strings, integer PCM where floats are due)."""


class AudioTooLong(AudioError):
    """A file longer than the caller's limit (:func:`load_audio`'s ``max_seconds``)."""

    def __init__(self, path, seconds: float | None, limit: float):
        self.path, self.seconds, self.limit = path, seconds, limit
        length = (f"{seconds:.0f} s long, more than" if seconds is not None else
                  "longer than")
        super().__init__(f"{path}: {length} the {limit:g} s limit")


_UNKNOWN_FRAMES = 2 ** 62      # libsndfile's frame count of a stream of unknown length is 2**63-1


def _check_file_rate(path: Path, file_sr: int) -> None:
    """Refuse a header whose rate is outside [MIN_RATE, MAX_RATE]: resampling a 6 KB file
    that claims 1 Hz to 22050 Hz would make gigabytes of samples."""
    if not MIN_RATE <= file_sr <= MAX_RATE:
        raise AudioError(f"{path}: sample rate {file_sr} Hz is outside the {MIN_RATE}-"
                         f"{MAX_RATE} Hz this pipeline reads")


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
    path = Path(path)
    _check_regular_file(path)          # before any open: a FIFO named .wav would block it
    fast = _read_pcm16_wav(path, max_seconds)
    if fast is not None:              # int16 samples: finite, nothing truncated (checked)
        data, file_sr = fast
        y = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
        return _resample(y, file_sr, sr)
    check_readable_file(path)
    import soundfile as sf
    try:
        with sf.SoundFile(str(path)) as f:
            file_sr, fmt, declared = f.samplerate, f.format, f.frames
            _check_file_rate(path, file_sr)
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
    return _resample(y, file_sr, sr)


_PCM16_SCALE = np.float32(1.0 / 0x8000)


def _read_pcm16_wav(path: Path, max_seconds: float | None
                    ) -> tuple[np.ndarray, int] | None:
    """The samples of a plain 16-bit PCM WAV as :func:`load_audio`'s libsndfile read gives
    them, shape (frames, channels), float32, and the file's rate; ``None`` for anything else
    (then libsndfile reads it, with its own checks and messages).

    libsndfile turns 16-bit PCM into float32 as ``sample * (1.0f / 0x8000)``: the same
    product here, exact (a power of two), so the samples are bit-identical; reading the data
    chunk as int16 and scaling once costs a fraction of libsndfile's float read. Taken only
    for a RIFF/WAVE file whose first chunks are one 16-byte ``fmt `` chunk of format 1
    (PCM), 16 bits, consistent block size and byte rate, then even-sized chunks up to a
    ``data`` chunk that is complete, a whole number of frames, not empty and inside the
    declared RIFF size; anything else (WAVE_FORMAT_EXTENSIBLE, other widths, RF64, a cut
    file, AIFF data named .wav ...) goes the ordinary way.
    Raises :class:`AudioTooLong` as :func:`load_audio` does, from the header.
    """
    import struct
    try:
        with open(path, "rb", buffering=0) as f:   # a few system calls: read, seek, read
            head = f.read(4096)
            if len(head) < 44 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            size = os.fstat(f.fileno()).st_size
            riff_end = 8 + struct.unpack_from("<I", head, 4)[0]
            pos, fmt = 12, None
            while True:
                if pos + 8 > len(head):
                    return None
                cid, clen = struct.unpack_from("<4sI", head, pos)
                if cid == b"data":
                    break
                if cid == b"fmt ":
                    if fmt is not None or clen != 16 or pos + 24 > len(head):
                        return None
                    fmt = struct.unpack_from("<HHIIHH", head, pos + 8)
                if clen & 1:
                    return None
                pos += 8 + clen
            if fmt is None:
                return None
            tag, channels, rate, byte_rate, block, bits = fmt
            if (tag != 1 or bits != 16 or channels < 1 or rate < 1 or block != 2 * channels
                    or byte_rate != rate * block):
                return None
            start, end = pos + 8, pos + 8 + clen
            if clen == 0 or clen % block or end > size or end > riff_end:
                return None
            frames = clen // block
            _check_file_rate(path, rate)
            if max_seconds is not None and math.isfinite(max_seconds):
                limit = int(max_seconds * rate)
                if limit < frames:
                    raise AudioTooLong(path, frames / rate, max_seconds)
            pcm = np.empty(frames * channels, dtype="<i2")
            view, got = memoryview(pcm).cast("B"), 0
            f.seek(start)
            while got < clen:
                n = f.readinto(view[got:])
                if not n:
                    return None       # shorter than it was a moment ago
                got += n
    except OSError:
        return None                   # the ordinary read names the problem
    data = pcm.reshape(frames, channels).astype(np.float32)
    data *= _PCM16_SCALE
    return data, rate


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
        raise AudioError(f"{path}: cannot read the file ({os_reason(failed[0])})")
    return np.concatenate(blocks) if blocks else np.zeros((0, channels), np.float32)


def resample(y: np.ndarray, orig_sr: int, *, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Resample mono audio to ``sr`` with soxr's high quality (librosa's default ``soxr_hq``).

    The one resampling step of the project: :func:`load_audio` and live capture use it. It is
    ``librosa.resample(y, orig_sr=orig_sr, target_sr=sr, res_type="soxr_hq")`` without
    librosa (whose import costs a second or two): ``soxr.resample``, then cut or zero-padded to
    ``ceil(n * sr / orig_sr)`` samples as librosa's ``fix_length`` does (bit-identical, checked
    by tests/test_features_numpy.py).

    Returns
    -------
    y : np.ndarray, shape (n_samples_at_sr,), float32, contiguous
    """
    y = np.asarray(y, dtype=np.float32)
    if orig_sr != sr:
        if y.ndim != 1:
            raise AudioError(f"expected mono audio of shape (n,), got {y.shape}")
        if not np.all(np.isfinite(y)):
            raise AudioError("audio contains NaN or infinite samples")
    return _resample(y, orig_sr, sr)


def _resample(y: np.ndarray, orig_sr: int, sr: int) -> np.ndarray:
    """:func:`resample` of mono float32 audio known to be finite (checked by the caller)."""
    if orig_sr != sr:
        import soxr
        n = int(np.ceil(y.shape[-1] * (float(sr) / orig_sr)))
        y_hat = soxr.resample(y, orig_sr, sr, quality="soxr_hq")
        if y_hat.shape[-1] > n:
            y_hat = y_hat[:n]
        elif y_hat.shape[-1] < n:
            y_hat = np.pad(y_hat, (0, n - y_hat.shape[-1]))
        y = np.asarray(y_hat, dtype=np.float32)
    return np.ascontiguousarray(y, dtype=np.float32)


class BlockResampler:
    """Running audio resampled block by block to ``sr`` (soxr's stream, high quality), for
    files read in blocks and live capture; at equal rates blocks pass unchanged."""

    def __init__(self, orig_sr: int, *, sr: int = SAMPLE_RATE):
        self._rs = None
        if orig_sr != sr:
            import soxr
            self._rs = soxr.ResampleStream(orig_sr, sr, 1, dtype="float32", quality="HQ")

    def __call__(self, block: np.ndarray, *, last: bool = False) -> np.ndarray:
        """The next resampled samples; ``last`` flushes what the filter still holds."""
        if self._rs is None:
            return block
        return self._rs.resample_chunk(np.asarray(block, np.float32), last=last)


def check_readable_file(path: Path) -> None:
    """Refuse, naming the real reason, a path that is not a readable, non-empty regular file
    (libsndfile would only say "System error" or "Format not recognised")."""
    _check_regular_file(path)
    try:
        with open(path, "rb"):
            pass
    except OSError as e:
        raise AudioError(f"{path}: cannot read the file ({os_reason(e)})") from None


def _check_regular_file(path: Path) -> None:
    """:func:`check_readable_file`'s checks that need no open: the path is a non-empty
    regular file (:func:`ser.files.regular_file_problem`)."""
    why = regular_file_problem(path, kind="audio file")
    if why:
        raise AudioError(f"{path}: {why}")


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
    """Refuse a signal that cannot be judged: too short, non-finite (:func:`check_samples`)
    or silent: its speech level (:func:`speech_level_db`, a DC offset removed) below
    :data:`SILENCE_DBFS`, so that a muted input's offset and hiss are "no speech", not an
    emotion."""
    check_samples(y, name=name)
    level = speech_level_db(y)
    if level < SILENCE_DBFS:
        raise AudioError(f"{name}: silent (speech level {level:.0f} dBFS < {SILENCE_DBFS:.0f} "
                         f"dBFS, a DC offset not counted), no speech detected")


def mono_samples(y, *, name: str = "signal", integers: bool = False) -> np.ndarray:
    """``y`` as contiguous float32 samples of shape (n,), all finite: the one check of a signal
    handed to the library (features, encoders, the speech detector, timelines).

    ``integers``: also accept any array-like and integer dtypes (converted as they are, not
    scaled); else ``y`` must be a float numpy array. Errors name ``name`` and the broken rule:
    :class:`AudioError` (a ``ValueError``); :class:`SampleTypeError` (also a ``TypeError``) for
    the wrong kind of object or dtype.
    """
    if not isinstance(y, np.ndarray):
        if not integers:
            raise SampleTypeError(f"{name}: expected a numpy array of samples, got "
                                  f"{type(y).__name__}")
        y = np.asarray(y)
    if y.ndim != 1:
        raise AudioError(f"{name}: expected mono audio of shape (n,), got shape {y.shape}")
    if integers and not (np.issubdtype(y.dtype, np.floating)
                         or np.issubdtype(y.dtype, np.integer)):
        raise SampleTypeError(f"{name}: expected real numbers (float or integer samples), "
                              f"got dtype {y.dtype}")
    if not integers and not np.issubdtype(y.dtype, np.floating):
        raise SampleTypeError(f"{name}: expected float samples in [-1, 1], got dtype "
                              f"{y.dtype} (divide integer PCM by its full scale first)")
    y = np.ascontiguousarray(y, dtype=np.float32)
    if y.size and not math.isfinite(float(np.max(np.abs(y)))):   # NaN or inf: one pass
        raise AudioError(f"{name}: contains NaN or infinite samples")
    return y


def check_samples(y: np.ndarray, *, name: str = "signal") -> None:
    """Refuse samples that features cannot be computed from: not mono float, shorter than one
    FFT frame, NaN or infinite (:func:`mono_samples`)."""
    if getattr(y, "ndim", 1) == 1 and len(y) < MIN_SAMPLES:
        raise AudioError(f"{name}: too short ({len(y)} samples < {MIN_SAMPLES}, "
                         f"one FFT frame)")
    mono_samples(y, name=name)


DEFAULT_TRIM_DB = -60.0        # --mic: leading/trailing frames quieter than this are cut
TRIM_MARGIN_SECONDS = 0.1      # kept on each side of the trimmed speech
LEVEL_FRAME = HOP_LENGTH    # frame length (samples) for levels, trimming and the gate
LEVEL_PERCENTILE = 95          # speech level = this percentile of frame RMS in dBFS


def frame_levels_db(y: np.ndarray, frame: int = LEVEL_FRAME) -> np.ndarray:
    """RMS level in dBFS of consecutive ``frame``-sample frames (the tail is its own frame)."""
    y = np.asarray(y, dtype=np.float32)
    if y.size == 0:
        return np.full(1, -200.0)
    n = math.ceil(y.size / frame)
    padded = np.zeros(n * frame, dtype=np.float32)
    padded[:y.size] = y
    f = padded.reshape(n, frame)
    counts = np.full(n, frame, dtype=np.float64)
    counts[-1] = y.size - (n - 1) * frame
    ms = np.einsum("ij,ij->i", f, f, dtype=np.float64) / counts
    return 10.0 * np.log10(np.maximum(ms, 1e-20))


def speech_level_db(y: np.ndarray, frame: int = LEVEL_FRAME,
                    percentile: float = LEVEL_PERCENTILE) -> float:
    """A robust loudness of the active part: the ``percentile`` of frame levels (dBFS) of the
    signal's variation (its mean, a DC offset, removed: a muted input with an offset is not
    loud). The one level rule of files (:func:`check_signal`), streams and timelines (their
    gate)."""
    y = np.asarray(y, dtype=np.float32)
    if y.size:
        y = y - np.float32(np.mean(y, dtype=np.float64))
    return float(np.percentile(frame_levels_db(y, frame), percentile))


def trim_silence(y: np.ndarray, *, threshold_db: float = DEFAULT_TRIM_DB, sr: int = SAMPLE_RATE,
                 margin: float = TRIM_MARGIN_SECONDS, frame: int = LEVEL_FRAME) -> np.ndarray:
    """Cut leading and trailing frames quieter than ``threshold_db`` dBFS, keeping a margin.

    The threshold is absolute (like :data:`SILENCE_DBFS`), so a recording's
    room noise stays (the training clips contain their own pauses) and only the true silence
    before and after a sound (muted input, a device still starting) is removed. Returns ``y``
    unchanged when nothing is louder than the threshold (the caller then reports silence).
    """
    lv = frame_levels_db(y, frame)
    loud = np.flatnonzero(lv >= threshold_db)
    if loud.size == 0:
        return y
    pad = int(round(margin * sr))
    start = max(0, loud[0] * frame - pad)
    stop = min(y.size, (loud[-1] + 1) * frame + pad)
    return y[start:stop]
