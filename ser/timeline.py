"""Emotion over time: a recording of any length as a timeline of judged speech segments.

The pipeline, in bounded memory (an hour of audio stays far below 500 MB):

1. :func:`read_blocks` reads the file in blocks with soundfile, mixes each to mono and
   resamples it to the analysis rate with a streaming soxr resampler (the same ``soxr_hq``
   filter as the project's loader, so the samples equal those of a whole-file load);
2. :class:`ser.vad.SpeechDetector` finds speech in the blocks as they come;
3. :func:`segments` turns the speech regions into utterance-sized segments (short gaps merged,
   long stretches split into equal parts, crumbs dropped);
4. each segment is cut from a small buffer of recent audio and judged by a predictor, an
   object with ``predict_signal(y, sr, *, name=..., adapt=False)`` returning something with
   ``.emotion``, ``.confidence`` and ``.probabilities`` (``live_predictions.Predictor``);
5. :func:`timeline` yields one :class:`Segment` per judged segment; :func:`format_table`
   (the terminal's table) and :func:`plot_timeline` (a PNG, written atomically) present them,
   and :mod:`ser.writers` writes them as a result file (CSV, JSON lines, text).

One speaker at a time: nothing here separates several voices.
"""
from __future__ import annotations

import math
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from numbers import Real
from pathlib import Path
from typing import Iterable, Iterator, Mapping

import numpy as np

from ser.errors import SerError
from ser import files, vad
from ser.audio import SAMPLE_RATE, AudioError, BlockResampler, check_readable_file
from ser.console import printable
from ser.corpora import EMOTIONS

DEFAULT_BLOCK_SECONDS = 30.0     # read and judged per block (~2.6 MB at 22050 Hz)
DEFAULT_MERGE_GAP = 0.5          # s: speech regions this close become one segment
DEFAULT_MAX_LEN = 8.0            # s: longer segments are split into equal parts
DEFAULT_MIN_LEN = 0.5            # s: shorter segments are not judged
PENDING_FACTOR = 8               # a run of merged speech longer than this x max_len is cut
DIGITS = 6
"""Decimals of every confidence and probability in the results (JSON lines, CSV): a file's
(:meth:`ser.predict.Prediction.as_dict`) and a timeline's segments (:meth:`Segment.as_dict`)
alike."""
COLOURS = {"neutral": "#7f7f7f", "calm": "#17becf", "happy": "#ffbf00", "sad": "#1f77b4",
           "angry": "#d62728", "fearful": "#9467bd", "disgust": "#2ca02c",
           "surprised": "#ff7f0e"}
_UNKNOWN_FRAMES = 2 ** 62        # libsndfile's frame count of a stream of unknown length


class TimelineError(SerError, ValueError):
    """Audio or an output that the timeline cannot use; the message is one line naming it."""


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Segment:
    """One judged stretch of speech.

    ``emotion``/``confidence`` are None and ``probabilities`` empty when the predictor refused
    the segment; ``error`` then says why (one line).
    """
    start: float
    end: float
    emotion: str | None
    confidence: float | None
    probabilities: dict[str, float] = field(default_factory=dict)
    error: str | None = None

    @property
    def duration(self) -> float:
        return self.end - self.start

    def as_dict(self, digits: int = DIGITS) -> dict:
        """The segment as the JSON and CSV outputs hold it: times in ms (3 decimals), the
        confidence and probabilities rounded to ``digits`` (:data:`DIGITS`)."""
        return {"start": round(float(self.start), 3), "end": round(float(self.end), 3),
                "emotion": self.emotion,
                "confidence": None if self.confidence is None else round(self.confidence, digits),
                "probabilities": {k: round(v, digits) for k, v in self.probabilities.items()},
                "error": self.error}


def _record(r, i: int) -> Segment:
    """A :class:`Segment` from a Segment or a mapping with the same keys (checked)."""
    if isinstance(r, Segment):
        return r
    if not isinstance(r, Mapping):
        raise TypeError(f"record {i}: expected a Segment or a mapping, got {type(r).__name__}")
    missing = [k for k in ("start", "end", "emotion", "confidence", "probabilities")
               if k not in r]
    if missing:
        raise ValueError(f"record {i}: missing key(s) {', '.join(missing)}")
    start, end = _check_time(f"record {i} start", r["start"]), _check_time(f"record {i} end",
                                                                            r["end"])
    if end < start:
        raise ValueError(f"record {i}: end {end} is before start {start}")
    probs = r["probabilities"] or {}
    if not isinstance(probs, Mapping):
        raise TypeError(f"record {i}: probabilities must be a mapping label -> probability")
    return Segment(start, end, r["emotion"], r["confidence"],
                   {str(k): float(v) for k, v in probs.items()}, r.get("error"))


def check_records(records) -> list[Segment]:
    """The records as a list of :class:`Segment` (mappings with the same keys, such as
    :func:`ser.output.read_timeline` returns, are converted and checked)."""
    if isinstance(records, (str, bytes, Mapping, Segment)) or not isinstance(records, Iterable):
        raise TypeError(f"records must be an iterable of Segment records, got "
                        f"{type(records).__name__}")
    return [_record(r, i) for i, r in enumerate(records)]


def label_order(probabilities: Iterable[Mapping | None]) -> list[str]:
    """The labels in the predictor's order: the keys of the first non-empty mapping of
    probabilities (a segment's, a file's), else :data:`ser.corpora.EMOTIONS`; the columns of a
    result file and the bands of a picture."""
    for probs in probabilities:
        if probs:
            return list(probs)
    return list(EMOTIONS)


def top_emotions(probabilities: Mapping[str, float], top: int = 3, *, skip: int = 0) -> str:
    """The ``top`` most likely emotions as text, best first: ``angry 0.71, happy 0.19,
    sad 0.05``, leaving out the first ``skip`` (``skip=1``: those after the answer). The
    wording of "the top emotions" in the text outputs: a timeline row (:func:`format_row`),
    and a file's line (:meth:`ser.predict.Prediction.text`: ``angry 0.71  (<skip=1>)``)."""
    best = sorted(probabilities.items(), key=lambda kv: -kv[1])[:top]
    return ", ".join(f"{k} {v:.2f}" for k, v in best[skip:])


# --------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------
def _check_time(name: str, v) -> float:
    if isinstance(v, bool) or not isinstance(v, Real) or not math.isfinite(float(v)) or v < 0:
        raise ValueError(f"{name} must be a finite number of seconds >= 0, got {v!r}")
    return float(v)


def _check_positive(name: str, v, *, allow_zero: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, Real) or not math.isfinite(float(v)) or \
            (v < 0 if allow_zero else v <= 0):
        rule = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {rule}, got {v!r}")
    return float(v)


def _check_segment_params(merge_gap, max_len, min_len) -> tuple[float, float, float]:
    merge_gap = _check_positive("merge_gap", merge_gap, allow_zero=True)
    max_len = _check_positive("max_len", max_len)
    min_len = _check_positive("min_len", min_len, allow_zero=True)
    if max_len < 2 * min_len:
        raise ValueError(f"max_len ({max_len:g} s) must be at least twice min_len "
                         f"({min_len:g} s), so that the parts of a split segment are kept")
    return merge_gap, max_len, min_len


def _check_regions(regions, *, name: str = "regions") -> list[tuple[float, float]]:
    if isinstance(regions, (str, bytes)) or not isinstance(regions, Iterable):
        raise TypeError(f"{name} must be a list of (start, end) pairs in seconds, got "
                        f"{type(regions).__name__}")
    out: list[tuple[float, float]] = []
    for i, r in enumerate(regions):
        try:
            a, b = r
        except (TypeError, ValueError):
            raise TypeError(f"{name}[{i}] must be a (start, end) pair, got {r!r}") from None
        a, b = _check_time(f"{name}[{i}] start", a), _check_time(f"{name}[{i}] end", b)
        if b <= a:
            raise ValueError(f"{name}[{i}]: end {b:g} must be after start {a:g}")
        if out and a < out[-1][1]:
            raise ValueError(f"{name}[{i}] starts at {a:g} s, before {name}[{i - 1}] ends "
                             f"({out[-1][1]:g} s): regions must be sorted and not overlap")
        out.append((a, b))
    return out


def _check_source_path(path) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a file path, got {type(path).__name__}")
    p = Path(path)
    try:   # the one loader's checks and wording (a FIFO is refused before any open)
        check_readable_file(p)
    except AudioError as e:
        raise TimelineError(str(e)) from None
    return p


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------

def read_blocks(path: str | os.PathLike, *, block_seconds: float = DEFAULT_BLOCK_SECONDS,
                sr: int = SAMPLE_RATE) -> Iterator[np.ndarray]:
    """Read an audio file of any length in blocks, as mono at ``sr``.

    Parameters
    ----------
    path : path-like
        Any format libsndfile reads (WAV, FLAC, AIFF, OGG, MP3, ...), any rate and channel
        count.
    block_seconds : float > 0, keyword-only
        Length of a block, in seconds of the file (the last one may be shorter; a resampled
        block may differ by a few samples, the total does not).
    sr : int, keyword-only
        Output rate; the streaming resampler is soxr's HQ filter, as the project's loader uses.

    Yields
    ------
    np.ndarray, shape (n,), float32
        Consecutive blocks: concatenated, they equal the whole file loaded and resampled at
        once (the project's loader), sample for sample; the streaming resampler may end one
        sample earlier.

    Raises
    ------
    TimelineError
        One line naming the file: missing, unreadable, no samples, non-finite samples (with the
        time), truncated.
    """
    p = _check_source_path(path)
    block_seconds = _check_positive("block_seconds", block_seconds)
    sr = vad.check_rate(sr)
    import soundfile as sf
    try:
        f = sf.SoundFile(str(p))
    except Exception as e:   # libsndfile's own errors come in several types
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise TimelineError(f"{p}: not readable audio ({msg})") from None
    with f:
        file_sr, declared = f.samplerate, f.frames
        try:
            vad.check_rate(file_sr, name="the file's sample rate")
        except ValueError as e:
            raise TimelineError(f"{p}: {e}") from None
        rs = BlockResampler(file_sr, sr=sr)
        frames = max(1, int(round(block_seconds * file_sr)))
        done = 0
        while True:
            try:
                data = f.read(frames, dtype="float32", always_2d=True)
            except Exception as e:
                msg = str(e).splitlines()[0] if str(e) else type(e).__name__
                raise TimelineError(f"{p}: decoding failed at {done / file_sr:.1f} s "
                                    f"({msg})") from None
            last = data.shape[0] < frames
            if data.shape[0]:
                y = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
                if not np.all(np.isfinite(y)):
                    bad = done + int(np.argmax(~np.isfinite(y)))
                    raise TimelineError(f"{p}: NaN or infinite samples at {bad / file_sr:.2f} s")
                done += data.shape[0]
                y = np.ascontiguousarray(y, dtype=np.float32)
                out = rs(y, last=last)
            else:                         # the file ended on a block boundary
                out = rs(np.zeros(0, np.float32), last=True)
            if out.size:
                yield out
            if last:
                break
        if done == 0:
            raise TimelineError(f"{p}: no audio samples")
        if 0 < declared < _UNKNOWN_FRAMES and done < declared and f.format != "MP3":
            raise TimelineError(f"{p}: truncated ({done} of {declared} frames)")


def _array_blocks(y: np.ndarray, input_sr: int, *, block_seconds: float,
                  sr: int) -> Iterator[np.ndarray]:
    """An in-memory signal as :func:`read_blocks` would deliver it."""
    rs = BlockResampler(input_sr, sr=sr)
    n = max(1, int(round(block_seconds * input_sr)))
    for i in range(0, y.shape[0], n):
        x = y[i:i + n]
        last = i + n >= y.shape[0]
        out = rs(x, last=last)
        if out.size:
            yield out


def _stream_blocks(blocks: Iterator[np.ndarray], input_sr: int, *, sr: int,
                   name: str) -> Iterator[np.ndarray]:
    """Blocks from a live source (a microphone), checked and resampled as they come."""
    rs = BlockResampler(input_sr, sr=sr)
    for i, x in enumerate(blocks):
        x = vad.check_mono(x, name=f"{name}: block {i}")
        out = rs(x)
        if out.size:
            yield out
    tail = rs(np.zeros(0, np.float32), last=True)
    if tail.size:
        yield tail


# --------------------------------------------------------------------------------------------
# Segments
# --------------------------------------------------------------------------------------------
def segments(regions: Iterable[tuple[float, float]], *, merge_gap: float = DEFAULT_MERGE_GAP,
             max_len: float = DEFAULT_MAX_LEN,
             min_len: float = DEFAULT_MIN_LEN) -> list[tuple[float, float]]:
    """Utterance-sized segments from speech regions.

    Parameters
    ----------
    regions : sequence of (start, end)
        Seconds, sorted, not overlapping (as :func:`ser.vad.speech_regions` returns them).
    merge_gap : float >= 0, keyword-only
        Neighbours separated by at most this many seconds are merged into one segment.
    max_len : float > 0, keyword-only
        A merged segment longer than this is split into ``ceil(length / max_len)`` equal parts.
    min_len : float >= 0, keyword-only
        Segments shorter than this are dropped (after merging and splitting). Must satisfy
        ``max_len >= 2 * min_len``, so that the parts of a split segment are always kept.

    Returns
    -------
    list of (start, end)
        Seconds, sorted, not overlapping, each of length in ``[min_len, max_len]``.
    """
    merge_gap, max_len, min_len = _check_segment_params(merge_gap, max_len, min_len)
    regions = _check_regions(regions)
    merged: list[list[float]] = []
    for a, b in regions:
        if merged and a - merged[-1][1] <= merge_gap + 1e-9:
            merged[-1][1] = b
        else:
            merged.append([a, b])
    out: list[tuple[float, float]] = []
    for a, b in merged:
        k = max(1, math.ceil((b - a) / max_len - 1e-9))
        step = (b - a) / k
        for j in range(k):
            s, e = a + j * step, (b if j == k - 1 else a + (j + 1) * step)
            if e - s >= min_len - 1e-9:
                out.append((round(s, 6), round(e, 6)))
    return out


# --------------------------------------------------------------------------------------------
# The timeline
# --------------------------------------------------------------------------------------------
class Timeline:
    """Iterate to judge a recording segment by segment; see :func:`timeline`.

    Attributes (filled while iterating)
    ----------
    regions : list of (start, end)
        The detector's speech regions so far (seconds).
    duration : float
        Seconds of audio read so far (the whole recording once iteration has ended).
    vad_seconds, predict_seconds, read_seconds : float
        Wall-clock time spent in speech detection, in the predictor, and reading/resampling.
    """

    def __init__(self, source, predictor, *, input_sr: int | None = None,
                 sr: int = SAMPLE_RATE, name: str | None = None,
                 block_seconds: float = DEFAULT_BLOCK_SECONDS,
                 threshold: float = vad.DEFAULT_THRESHOLD,
                 min_speech: float = vad.DEFAULT_MIN_SPEECH,
                 min_silence: float = vad.DEFAULT_MIN_SILENCE, pad: float = vad.DEFAULT_PAD,
                 merge_gap: float = DEFAULT_MERGE_GAP, max_len: float = DEFAULT_MAX_LEN,
                 min_len: float = DEFAULT_MIN_LEN, adapt: bool = False):
        if not callable(getattr(predictor, "predict_signal", None)):
            raise TypeError(f"predictor must have a method predict_signal(y, sr, *, name, "
                            f"adapt) (e.g. live_predictions.Predictor), got "
                            f"{type(predictor).__name__}")
        self.sr = vad.check_rate(sr)
        self.block_seconds = _check_positive("block_seconds", block_seconds)
        self.merge_gap, self.max_len, self.min_len = _check_segment_params(merge_gap, max_len,
                                                                           min_len)
        self.path = self._array = self._stream = self.input_sr = None
        if isinstance(source, (str, os.PathLike)):
            if input_sr is not None:
                raise ValueError("input_sr is only for an array or a stream of blocks; a file "
                                 "states its own rate")
            self.path = _check_source_path(source)
            self.name = name or str(self.path)
        elif isinstance(source, np.ndarray) or isinstance(source, Iterable):
            what = "an array of samples" if isinstance(source, np.ndarray) else \
                "a stream of blocks"
            if input_sr is None:
                raise ValueError(f"input_sr is required when the source is {what}")
            self.input_sr = vad.check_rate(input_sr, name="input_sr")
            self.name = name or ("signal" if isinstance(source, np.ndarray) else "stream")
            if isinstance(source, np.ndarray):
                self._array = vad.check_mono(source, name=self.name)
                if self._array.shape[0] == 0:
                    raise ValueError(f"{self.name}: no audio samples")
            else:
                self._stream = iter(source)
        else:
            raise TypeError(f"source must be a file path, a mono array or an iterable of "
                            f"mono blocks, got {type(source).__name__}")
        self.adapt = bool(adapt)
        self.predictor = predictor
        # the detector checks its own parameters now, before any work
        self._detector = vad.SpeechDetector(sr=self.sr, threshold=threshold,
                                            min_speech=min_speech, min_silence=min_silence,
                                            pad=pad, max_speech=self.max_len)
        self.regions: list[tuple[float, float]] = []
        self.duration = 0.0
        self.vad_seconds = self.predict_seconds = self.read_seconds = 0.0
        self._started = False

    def _blocks(self) -> Iterator[np.ndarray]:
        if self._stream is not None:
            return _stream_blocks(self._stream, self.input_sr, sr=self.sr, name=self.name)
        if self._array is not None:
            return _array_blocks(self._array, self.input_sr, block_seconds=self.block_seconds,
                                 sr=self.sr)
        return read_blocks(self.path, block_seconds=self.block_seconds, sr=self.sr)

    def __iter__(self) -> Iterator[Segment]:
        if self._started:
            raise RuntimeError(f"{self.name}: a Timeline can be iterated once; make a new one")
        self._started = True
        det, sr = self._detector, self.sr
        buf: list[tuple[int, np.ndarray]] = []     # (first sample, block) of recent audio
        n = 0                                      # samples read so far
        pending: list[tuple[float, float]] = []    # regions not yet turned into segments
        blocks = self._blocks()
        while True:
            t0 = time.perf_counter()
            block = next(blocks, None)
            self.read_seconds += time.perf_counter() - t0
            if block is None:
                break
            buf.append((n, block))
            n += block.shape[0]
            self.duration = n / sr
            t0 = time.perf_counter()
            new = det.feed(block)
            self.vad_seconds += time.perf_counter() - t0
            self.regions.extend(new)
            pending.extend(new)
            yield from self._judge_ready(pending, buf, horizon=det.horizon(), final=False)
            keep_from = det.horizon() if not pending else min(pending[0][0], det.horizon())
            keep = int(keep_from * sr) - 1
            while buf and buf[0][0] + buf[0][1].shape[0] < keep:
                buf.pop(0)
        t0 = time.perf_counter()
        new = det.flush()
        self.vad_seconds += time.perf_counter() - t0
        self.regions.extend(new)
        pending.extend(new)
        yield from self._judge_ready(pending, buf, horizon=math.inf, final=True)

    def _judge_ready(self, pending: list, buf: list, *, horizon: float,
                     final: bool) -> Iterator[Segment]:
        """Judge the runs of pending regions that nothing later can join; remove them."""
        while pending:
            j = 1                                  # the first run: pending[:j]
            while j < len(pending) and pending[j][0] - pending[j - 1][1] <= self.merge_gap:
                j += 1
            complete = (j < len(pending) or final
                        or horizon - pending[j - 1][1] > self.merge_gap
                        or pending[j - 1][1] - pending[0][0] > PENDING_FACTOR * self.max_len)
            if not complete:
                return
            run = pending[:j]
            del pending[:j]
            for s, e in segments(run, merge_gap=self.merge_gap, max_len=self.max_len,
                                 min_len=self.min_len):
                yield self._judge(s, e, buf)

    def _judge(self, s: float, e: float, buf: list) -> Segment:
        a, b = int(round(s * self.sr)), int(round(e * self.sr))
        parts = [blk[max(0, a - off):max(0, b - off)] for off, blk in buf
                 if off < b and off + blk.shape[0] > a]
        y = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        name = f"{self.name} {s:.2f}-{e:.2f} s"
        t0 = time.perf_counter()
        try:
            p = self.predictor.predict_signal(y, self.sr, name=name, adapt=self.adapt)
        except ValueError as e_:   # the predictor's AudioError: too short, silent, ...
            msg = str(e_).splitlines()[0] if str(e_) else type(e_).__name__
            return Segment(s, e, None, None, {}, msg)
        finally:
            self.predict_seconds += time.perf_counter() - t0
        return Segment(s, e, str(p.emotion), float(p.confidence),
                       {str(k): float(v) for k, v in p.probabilities.items()})


def timeline(source, predictor, **options) -> Timeline:
    """Judge a recording segment by segment, in bounded memory.

    Parameters
    ----------
    source : path-like, np.ndarray of shape (n,), or iterable of np.ndarray of shape (n,)
        An audio file of any length (read in blocks by :func:`read_blocks`), mono float
        samples at ``input_sr``, or a live source: any iterable of mono float blocks at
        ``input_sr`` (e.g. a microphone's), judged as they come; each segment is yielded
        about ``min_silence + merge_gap`` after its speech ends (use ``merge_gap=0`` live).
    predictor : object
        Has ``predict_signal(y, sr, *, name=..., adapt=False)`` returning an object with
        ``.emotion``, ``.confidence``, ``.probabilities`` (``live_predictions.Predictor``).
    input_sr : int, keyword-only
        Rate of an array or a stream of blocks (required for them, refused for a file).
    sr : int, keyword-only
        Analysis rate (default :data:`ser.audio.SAMPLE_RATE`, the models' rate); segments
        reach the predictor at it.
    name : str, keyword-only
        Used in the predictor's error messages (default: the path).
    block_seconds : float, keyword-only
        Read block length (default 30 s).
    threshold, min_speech, min_silence, pad : keyword-only
        The detector's (:class:`ser.vad.SpeechDetector`).
    merge_gap, max_len, min_len : keyword-only
        As for :func:`segments`.
    adapt : bool, keyword-only
        Pass each segment to the model's speaker adaptation before judging it.

    Returns
    -------
    Timeline
        Iterate it once to get the :class:`Segment` records in order; afterwards its
        ``regions`` and ``duration`` describe the whole recording (for :func:`plot_timeline`).
    """
    return Timeline(source, predictor, **options)


# --------------------------------------------------------------------------------------------
# Presentation: the terminal's table, the picture
# --------------------------------------------------------------------------------------------
@contextmanager
def _atomic(path) -> Iterator[Path]:
    """:func:`ser.files.atomic_output` (a temporary file beside ``path``, renamed onto it only
    on success), its one line as this module's :class:`TimelineError`."""
    try:
        with files.atomic_output(path) as tmp:
            yield tmp
    except files.OutputError as e:
        raise TimelineError(e.strerror) from None


def _clock(t: float) -> str:
    m, s = divmod(t, 60.0)
    h, m = divmod(int(m), 60)
    return f"{h}:{m:02d}:{s:05.2f}" if h else f"{m:02d}:{s:05.2f}"


def format_row(r: Segment, *, top: int = 3) -> str:
    """One line of :func:`format_table` (also for printing segments as they come)."""
    r = _record(r, 0)
    span = f"{_clock(r.start)}-{_clock(r.end)}"
    if r.emotion is None:
        return f"{span}  {'-':10s} {'':>5s}  ({printable(r.error)})"
    bar = "#" * int(round(10 * (r.confidence or 0)))
    return (f"{span}  {r.emotion:10s} {r.confidence:5.2f}  {bar:10s}  "
            + top_emotions(r.probabilities, top))


def format_table(records: Iterable[Segment], *, top: int = 3) -> str:
    """A plain-text table of the segments, one line each, with a header."""
    if isinstance(top, bool) or not isinstance(top, int) or top < 0:
        raise ValueError(f"top must be an integer >= 0, got {top!r}")
    records = check_records(records)
    head = f"{'start':>8s}-{'end':<8s}  {'emotion':10s} {'conf':>5s}  {'':10s}  top {top}"
    return "\n".join([head] + [format_row(r, top=top) for r in records])


def plot_timeline(records: Iterable[Segment], duration: float,
                  regions: Iterable[tuple[float, float]], path: str | os.PathLike, *,
                  title: str | None = None) -> Path:
    """A PNG of the timeline: one band per emotion, bar height = its probability.

    Parameters
    ----------
    records : iterable of Segment
        From :func:`timeline` (or mappings with the same keys, e.g. read back from JSON).
    duration : float > 0
        Length of the recording (s): the x axis.
    regions : sequence of (start, end)
        The detector's speech regions; everything else is shaded as no speech.
    path : path-like
        A ``.png`` file; written atomically, its folder made if missing.
    title : str, optional, keyword-only
    """
    records = check_records(records)
    duration = _check_positive("duration", duration)
    regions = _check_regions(regions)
    if regions and regions[-1][1] > duration + 1e-3:
        raise ValueError(f"regions end at {regions[-1][1]:g} s, after the duration "
                         f"({duration:g} s)")
    late = [r for r in records if r.end > duration + 1e-3]
    if late:
        raise ValueError(f"a record ends at {late[0].end:g} s, after the duration "
                         f"({duration:g} s)")
    if not isinstance(path, (str, os.PathLike)) or Path(path).suffix.lower() != ".png":
        raise ValueError(f"path must name a .png file, got {path!r}")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    labels = label_order(r.probabilities for r in records)
    fig = Figure(figsize=(min(24.0, max(9.0, duration / 20.0)), 0.45 * len(labels) + 1.8))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    prev = 0.0
    gaps = []
    for a, b in regions + [(duration, duration)]:
        if a > prev:
            gaps.append((prev, a - prev))
        prev = max(prev, b)
    if gaps:
        ax.broken_barh(gaps, (-0.5, len(labels)), facecolors="#d9d9d9", edgecolors="none",
                       zorder=0, label="no speech")
    judged = [r for r in records if r.probabilities]
    starts = np.array([r.start for r in judged])
    widths = np.array([r.end - r.start for r in judged])
    for row, lab in enumerate(labels):
        y0 = len(labels) - 1 - row          # first label on top
        ax.axhline(y0 - 0.45, color="#eeeeee", lw=0.5, zorder=1)
        if not judged:
            continue
        p = np.array([r.probabilities.get(lab, 0.0) for r in judged])
        shown = p >= 0.005
        ax.bar(starts[shown], 0.9 * p[shown], width=widths[shown], bottom=y0 - 0.45,
               align="edge", color=COLOURS.get(lab, f"C{row % 10}"), alpha=0.9, zorder=2,
               linewidth=0)
        best = np.array([r.emotion == lab for r in judged])
        if best.any():                      # the segment's label: outlined
            ax.bar(starts[best], 0.9 * p[best], width=widths[best], bottom=y0 - 0.45,
                   align="edge", fill=False, edgecolor="black", linewidth=0.8, zorder=3)
    failed = [r for r in records if not r.probabilities]
    if failed:
        ax.broken_barh([(r.start, r.end - r.start) for r in failed], (-0.5, len(labels)),
                       facecolors="none", edgecolors="#999999", hatch="//", zorder=1,
                       label="not judged")
    ax.set_yticks(range(len(labels)))
    ax.set_yticklabels(labels[::-1])
    for tick, lab in zip(ax.get_yticklabels(), labels[::-1]):
        tick.set_color(COLOURS.get(lab, "black"))
    ax.set_ylim(-0.55, len(labels) - 0.45)
    ax.set_xlim(0, duration)
    ax.set_xlabel("time (s)" if duration <= 600 else "time (min)")
    if duration > 600:
        ax.xaxis.set_major_formatter(lambda x, _pos: f"{x / 60:.0f}")
    ax.set_title(title or f"emotion over time: bar height = probability, black edge = "
                          f"the segment's label; grey = no speech ({len(judged)} segments)",
                 fontsize=9)
    if gaps or failed:
        ax.legend(loc="upper right", fontsize=7, framealpha=0.8)
    fig.tight_layout()
    with _atomic(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return Path(path)
