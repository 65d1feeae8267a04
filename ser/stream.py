"""Live audio: input devices, recording, and the two kinds of stream.

* :func:`run_utterances` (``--stream``, the default): the speech detector
  (:class:`ser.vad.SpeechDetector`, through :func:`ser.timeline.timeline`) finds each
  utterance in the capture blocks; each is judged once it has ended and handed over as a
  :class:`ser.timeline.Segment`.
* :func:`run_stream` (``--stream-mode window``): a sliding window judged every hop
  (:class:`StreamProcessor`), gated by the same detector and a level floor.

Audio that is not judged (no speech, too quiet, too short) is never an error in a stream: it is
reported as a result without an emotion whose ``error`` says why, in the words a file gets
("... no speech detected").
"""
from __future__ import annotations

import queue
import sys
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from ser import timeline as tl
from ser.audio import SAMPLE_RATE, AudioError, BlockResampler, speech_level_db
from ser.errors import SerError
from ser.predict import Prediction, Predictor
from ser.vad import SpeechDetector

DEFAULT_SECONDS = 3.0          # --mic recording length
DEFAULT_WINDOW = 3.0           # --stream window
DEFAULT_HOP = 0.5              # --stream hop
DEFAULT_GATE_DB = -50.0        # --stream: a window whose speech level is below this is skipped
DATA_TIMEOUT = 10.0            # seconds to wait for a capture stream to deliver audio


class DeviceError(SerError):
    """No usable audio input (PortAudio missing, no device, stream failed)."""


def _sounddevice():
    try:
        import sounddevice as sd
    except OSError as e:
        raise DeviceError(f"audio input unavailable: {e} (install the PortAudio library: "
                          f"Debian/Ubuntu apt-get install libportaudio2, macOS brew install "
                          f"portaudio)") from None
    except ImportError:
        raise DeviceError("audio input unavailable: the sounddevice package is missing "
                          "(pip install sounddevice)") from None
    return sd


def parse_device(device: str | int | None) -> str | int | None:
    """``--device`` value: an index (digits) or a name (substring), or None for the default."""
    if device is None or isinstance(device, int):
        return device
    device = device.strip()
    return int(device) if device.isdigit() else device


def input_device(device: str | int | None = None) -> dict:
    """Describe the input device to use; DeviceError when there is none."""
    sd = _sounddevice()
    device = parse_device(device)
    try:
        info = sd.query_devices(device, kind="input")
    except (sd.PortAudioError, ValueError) as e:
        which = "default input device" if device is None else f"input device {device!r}"
        hint = (" (see --list-devices)" if device is not None else
                " (is a microphone connected? see --list-devices)")
        raise DeviceError(f"no usable {which}: {str(e).splitlines()[0]}{hint}") from None
    if info.get("max_input_channels", 0) < 1:
        raise DeviceError(f"device {info['name']!r} has no input channels (see --list-devices)")
    return dict(info)


def list_devices(out=None) -> int:
    """Print the audio devices; ``>`` marks the default input. Returns an exit status."""
    out = sys.stdout if out is None else out
    try:
        sd = _sounddevice()
        devices = sd.query_devices()
    except DeviceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        default_in = sd.default.device[0]
    except Exception:
        default_in = -1
    inputs = [d for d in devices if d["max_input_channels"] > 0]
    for d in devices:
        mark = ">" if d["index"] == default_in else " "
        kind = ", ".join(k for k, n in (("in", d["max_input_channels"]),
                                        ("out", d["max_output_channels"])) if n)
        print(f"{mark} {d['index']:3d}  {d['name']}  ({kind}; {d['default_samplerate']:.0f} Hz)",
              file=out)
    if not inputs:
        print("error: no input devices found (is a microphone connected, or a sound server "
              "running?)", file=sys.stderr)
        return 2
    return 0


def _capture_rate(sd, device, info: dict, want: int = SAMPLE_RATE) -> int:
    """Capture at the model's rate when the device allows it, else at its own default rate."""
    try:
        sd.check_input_settings(device=device, channels=1, dtype="float32", samplerate=want)
        return want
    except Exception:
        return int(info["default_samplerate"])


class Capture:
    """A mono float32 input stream feeding a queue of blocks (callback thread -> caller)."""

    def __init__(self, device: str | int | None = None, *, blocksize: int = 1024):
        self.sd = _sounddevice()
        self.device = parse_device(device)
        self.info = input_device(self.device)
        self.rate = _capture_rate(self.sd, self.device, self.info)
        self.blocksize = blocksize
        self.queue: queue.Queue[np.ndarray] = queue.Queue()
        self.overflows = 0
        self._stream = None

    def _callback(self, indata, frames, time_info, status) -> None:
        if status and status.input_overflow:
            self.overflows += 1
        self.queue.put(indata[:, 0].copy())

    def __enter__(self) -> "Capture":
        try:
            self._stream = self.sd.InputStream(device=self.device, channels=1, dtype="float32",
                                               samplerate=self.rate, blocksize=self.blocksize,
                                               callback=self._callback)
            self._stream.start()
        except Exception as e:
            raise DeviceError(f"cannot open input device {self.info['name']!r}: "
                              f"{str(e).splitlines()[0]}") from None
        return self

    def __exit__(self, *exc) -> None:
        if self._stream is not None:
            try:
                # abort, not stop: an input stream has nothing worth draining, and stop()
                # waits on the sound server (a loaded one kept a Ctrl-C'd stream open)
                self._stream.abort()
                self._stream.close()
            except Exception:
                pass

    def get(self, timeout: float = DATA_TIMEOUT) -> np.ndarray:
        try:
            return self.queue.get(timeout=timeout)
        except queue.Empty:
            raise DeviceError(f"no audio arrived from {self.info['name']!r} within "
                              f"{timeout:.0f} s") from None

    def warm_up(self, seconds: float = 0.2) -> None:
        """Wait until audio flows (the first stream of a process can take ~1.5 s), then drop
        ``seconds`` more so that a device's start-up transient is not recorded."""
        self.get()
        drop = int(seconds * self.rate)
        while drop > 0:
            drop -= len(self.get())
        while not self.queue.empty():
            self.queue.get_nowait()


def record(seconds: float = DEFAULT_SECONDS, device: str | int | None = None, *,
           on_start: Callable[[dict], None] | None = None) -> tuple[np.ndarray, int]:
    """Record ``seconds`` of mono audio after the stream has warmed up.

    Returns the recording at the device's capture rate and that rate; ``on_start`` is called
    (with the device description) when recording proper begins.
    """
    with Capture(device) as cap:
        cap.warm_up()
        if on_start:
            on_start(cap.info)
        need = int(round(seconds * cap.rate))
        blocks, have = [], 0
        deadline = time.monotonic() + seconds + DATA_TIMEOUT
        while have < need:
            b = cap.get(timeout=max(0.1, deadline - time.monotonic()))
            blocks.append(b)
            have += len(b)
    return np.concatenate(blocks)[:need], cap.rate


@dataclass
class StreamResult:
    """One hop of a stream: the window's end time, its level and a prediction or the reason
    it was not judged (``reason``, in JSON ``error``: "no speech detected (...)")."""
    time: float
    level_db: float
    prediction: Prediction | None = None
    reason: str | None = None

    def as_dict(self) -> dict:
        d = {"time": round(self.time, 3), "level_dbfs": round(self.level_db, 1)}
        if self.prediction is not None:
            d.update(self.prediction.as_dict())
        else:
            d.update({"emotion": None, "error": self.reason})
        return d


class StreamProcessor:
    """Sliding-window judgement of running audio at SAMPLE_RATE, independent of any device.

    Feed blocks of any size with :meth:`feed`; every ``hop`` seconds (once ``window`` seconds
    have arrived) the last ``window`` seconds are judged. A window is skipped as "no speech
    detected" without computing features when its speech level is below ``gate_db`` dBFS
    (``None``: no level floor), or, given a ``detector`` (a :class:`ser.vad.SpeechDetector` at
    ``sr``, fed the same audio), when the detector heard no speech in it. Windows that pass go
    through ``predictor.predict_signal(..., adapt=True)``, i.e. the adaptation hook.
    """

    def __init__(self, predictor: Predictor, *, window: float = DEFAULT_WINDOW,
                 hop: float = DEFAULT_HOP, gate_db: float | None = DEFAULT_GATE_DB,
                 sr: int = SAMPLE_RATE, detector=None):
        if window <= 0 or hop <= 0:
            raise ValueError("window and hop must be positive")
        if detector is not None and getattr(detector, "sr", None) != sr:
            raise ValueError(f"the detector must run at the stream's rate ({sr} Hz)")
        self.predictor, self.window, self.hop, self.gate_db, self.sr = (
            predictor, window, hop, gate_db, sr)
        self.detector = detector
        self._regions: list[tuple[float, float]] = []   # the detector's recent regions
        self.n_window = int(round(window * sr))
        self.n_hop = max(1, int(round(hop * sr)))
        self._buf = np.zeros(self.n_window, dtype=np.float32)
        self._fill = 0      # valid samples in _buf
        self._since = 0     # samples since the last judgement
        self._total = 0     # samples fed in all

    def feed(self, block: np.ndarray) -> list[StreamResult]:
        out = []
        block = np.asarray(block, dtype=np.float32).reshape(-1)
        while block.size:
            take = min(block.size, self.n_hop - self._since)
            self._push(block[:take])
            if self.detector is not None:
                self._regions.extend(self.detector.feed(block[:take]))
            block = block[take:]
            self._since += take
            self._total += take
            if self._since >= self.n_hop:
                self._since = 0
                if self._fill >= self.n_window:
                    out.append(self.judge(self._buf.copy(), self._total / self.sr))
        return out

    def _push(self, x: np.ndarray) -> None:
        n = x.size
        if n >= self.n_window:
            self._buf[:] = x[-self.n_window:]
        else:
            self._buf[:-n] = self._buf[n:]
            self._buf[-n:] = x
        self._fill = min(self.n_window, self._fill + n)

    def heard_speech(self, start: float, end: float) -> bool:
        """Whether the detector heard speech between ``start`` and ``end`` (s); True without
        a detector. An utterance still going on counts (its region is not finished yet)."""
        if self.detector is None:
            return True
        self._regions = [r for r in self._regions if r[1] > start]
        return self.detector.in_speech or any(a < end for a, _ in self._regions)

    def judge(self, w: np.ndarray, t: float) -> StreamResult:
        level = speech_level_db(w)
        if self.gate_db is not None and level < self.gate_db:
            return StreamResult(t, level, reason=f"no speech detected (level {level:.0f} dBFS "
                                                 f"< gate {self.gate_db:g} dBFS)")
        if not self.heard_speech(t - self.window, t):
            return StreamResult(t, level, reason="no speech detected (speech detector)")
        try:
            return StreamResult(t, level, self.predictor.predict_signal(
                w, self.sr, name=f"window at {t:.1f} s", adapt=True))
        except AudioError as e:
            return StreamResult(t, level, reason=str(e).splitlines()[0])


class LevelGate:
    """A predictor that refuses audio whose speech level is below ``gate_db`` dBFS.

    Wraps a :class:`Predictor` for :func:`run_utterances`: an utterance the detector found
    but quieter than the floor (a far-away voice, a television) is refused with an
    :class:`AudioError` ("... no speech detected"), which the timeline reports as a segment
    without an emotion. ``gate_db=None`` passes everything.
    """

    def __init__(self, predictor: Predictor, gate_db: float | None):
        self.predictor, self.gate_db = predictor, gate_db

    @property
    def adaptation(self):
        return self.predictor.adaptation

    def predict_signal(self, y: np.ndarray, sr: int = SAMPLE_RATE, *, name: str = "signal",
                       adapt: bool = False) -> Prediction:
        if self.gate_db is not None and y.size:
            level = speech_level_db(np.asarray(y, dtype=np.float32))
            if level < self.gate_db:
                raise AudioError(f"{name}: level {level:.0f} dBFS < gate {self.gate_db:g} "
                                 f"dBFS, no speech detected")
        return self.predictor.predict_signal(y, sr, name=name, adapt=adapt)


def run_stream(predictor: Predictor, emit: Callable[[StreamResult], None], *,
               device: str | int | None = None, window: float = DEFAULT_WINDOW,
               hop: float = DEFAULT_HOP, gate_db: float | None = DEFAULT_GATE_DB,
               duration: float | None = None,
               on_start: Callable[[dict], None] | None = None,
               detector_options: dict | None = None) -> StreamProcessor:
    """Listen until Ctrl-C (KeyboardInterrupt propagates) or ``duration`` seconds of audio.

    ``detector_options`` (keyword arguments of :class:`ser.vad.SpeechDetector`, ``sr`` aside):
    gate the windows by the speech detector too; ``None``: by the level floor only.
    """
    detector = None
    if detector_options is not None:
        detector = SpeechDetector(sr=SAMPLE_RATE, **detector_options)
    proc = StreamProcessor(predictor, window=window, hop=hop, gate_db=gate_db,
                           detector=detector)
    with Capture(device) as cap:
        cap.warm_up()
        resample_block = BlockResampler(cap.rate)
        if on_start:
            on_start(cap.info)
        limit = None if duration is None else int(round(duration * SAMPLE_RATE))
        got = 0
        while limit is None or got < limit:
            block = resample_block(cap.get())
            if limit is not None:
                block = block[:limit - got]
            got += block.size
            for r in proc.feed(block):
                emit(r)
    return proc


def capture_blocks(cap: Capture, *, duration: float | None = None,
                   stop: Callable[[], bool] | None = None,
                   timeout: float = DATA_TIMEOUT) -> Iterator[np.ndarray]:
    """The blocks of a started :class:`Capture` (at ``cap.rate``), until ``duration`` seconds
    of audio or until ``stop()`` is true; then the blocks already captured are still given (so
    a session stopped by Ctrl-C loses nothing it heard). DeviceError when no audio arrives
    for ``timeout`` seconds."""
    limit = None if duration is None else int(round(duration * cap.rate))
    got = 0
    last = time.monotonic()
    while limit is None or got < limit:
        if stop is not None and stop():
            while limit is None or got < limit:
                try:
                    b = cap.queue.get_nowait()
                except queue.Empty:
                    return
                b = b if limit is None else b[:limit - got]
                got += b.size
                yield b
            return
        try:
            b = cap.queue.get(timeout=0.1)
        except queue.Empty:
            if time.monotonic() - last > timeout:
                raise DeviceError(f"no audio arrived from {cap.info['name']!r} within "
                                  f"{timeout:.0f} s") from None
            continue
        last = time.monotonic()
        b = b if limit is None else b[:limit - got]
        got += b.size
        yield b


def run_utterances(predictor, emit: Callable, *, device: str | int | None = None,
                   duration: float | None = None,
                   on_start: Callable[[dict], None] | None = None,
                   stop: Callable[[], bool] | None = None, **timeline_options):
    """Listen, find each utterance with the speech detector, judge it when it ends.

    Parameters
    ----------
    predictor : Predictor (or :class:`LevelGate`)
        Judges each utterance with ``adapt=True``: a speaker-adapted model adapts as the
        session goes.
    emit : callable
        Called with each :class:`ser.timeline.Segment` (times in seconds from the start of
        listening), in order, as soon as it is judged.
    device, duration, on_start
        As for :func:`run_stream`.
    stop : callable, optional
        Polled between blocks; once true, the audio already captured is judged (the utterance
        still open included) and the function returns, as at the end of ``duration``.
    **timeline_options
        :func:`ser.timeline.timeline`'s detector and segment options (``threshold``,
        ``min_silence``, ``merge_gap``, ``max_len``, ``min_len``, ...).

    Returns
    -------
    ser.timeline.Timeline
        Iterated: its ``regions`` and ``duration`` describe the session.
    """
    with Capture(device) as cap:
        cap.warm_up()
        run = tl.timeline(capture_blocks(cap, duration=duration, stop=stop), predictor,
                          input_sr=cap.rate, name="microphone", adapt=True,
                          **timeline_options)
        if on_start:
            on_start(cap.info)
        for seg in run:
            emit(seg)
    return run
