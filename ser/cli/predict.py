"""The command-line layer of ``live_predictions.py`` (``ser predict``): what each of its modes
(files, timelines, the microphone, a stream) does with the parsed options: judge through the
library (:class:`ser.predict.Predictor`, :mod:`ser.timeline`, :mod:`ser.stream`), print as
results arrive, write ``--output-dir`` files, say what was skipped.

Each ``run_*`` takes the predictor and the command line's options (the ``argparse`` namespace
of ``live_predictions.build_parser``) and returns the exit status; the library below never
sees that namespace.
"""
from __future__ import annotations

import json
import os
import signal
import threading
import time

from ser import output
from ser import timeline as tl
from ser import writers
from ser.adaptation import ADAPTATIONS
from ser.audio import (
    SAMPLE_RATE,
    AudioError,
    resample,
    speech_level_db,
    trim_silence,
)
from ser.console import err, info, plural, printable
from ser.files import atomic_path
from ser.predict import Predictor
from ser.scan import Inputs
from ser.stream import (
    LevelGate,
    StreamResult,
    record,
    run_utterances,
)
from ser.stream import run_stream as stream_windows


def _bar(p: float, width: int = 20) -> str:
    n = int(round(max(0.0, min(1.0, p)) * width))
    return "█" * n + "·" * (width - n)


def os_message(e: OSError) -> str:
    """An OSError's one line without the ``[Errno N]`` prefix (``OutputError`` carries its
    whole message as ``strerror``)."""
    return (e.strerror or str(e)).splitlines()[0]


def report_error(path: str, msg: str, args, rows: list | None = None) -> None:
    """One input failed: ``error: <path>: <reason>`` on stderr, or with --json the row
    ``{file, error}``; the error names the file once (:func:`ser.output.error_line`) and is
    the same line in every output (stderr, JSON, the --output-dir files)."""
    line = output.error_line(path, msg)
    if rows is not None:
        rows.append({"file": path, "error": line})
    if args.json:
        print(json.dumps({"file": path, "error": line}), flush=True)
    else:
        err(line)


def _summary(inputs: Inputs, judged: int, failed: int, extra: str = "") -> None:
    """The batch's ``summary:`` line on stderr (only for a batch: several inputs, or folders
    that left something out)."""
    if not (len(inputs.entries) > 1 or inputs.left_out):
        return
    problems = inputs.problems
    parts = [f"{judged} of {judged + failed} files judged"]
    if failed:
        parts.append(f"{failed} failed")
    unreadable = inputs.unreadable
    if unreadable:
        parts.append(f"{plural(unreadable, 'folder')} could not be read")
    if len(problems) > unreadable:
        parts.append(f"{plural(len(problems) - unreadable, 'folder')} empty or without "
                     f"audio")
    if inputs.left_out:
        dirs = sum(os.path.isdir(path) for path, _ in inputs.left_out)
        kinds = [plural(n, w) for n, w in ((len(inputs.left_out) - dirs, "file"),
                                             (dirs, "folder")) if n]
        parts.append(f"{' and '.join(kinds)} left out of the folders (named above)")
    info("summary: " + ", ".join(parts) + (f"; {extra}" if extra else ""))


def _exit_status(inputs: Inputs, failed: int) -> int:
    if not inputs.files:
        return 2
    return 1 if failed or inputs.problems else 0


def run_files(predictor: Predictor | None, inputs: Inputs, args) -> int:
    """Judge the files in argument order; folder problems are reported in their place.

    ``predictor`` is None when there is no file to judge (only failed folders)."""
    judged = failed = 0
    rows: list[dict] = []
    for path, problem in inputs.entries:
        if problem is not None:
            report_error(path, problem, args, rows)
            continue
        _, res = next(predictor.predict_files([path]))
        if isinstance(res, Exception):
            failed += 1
            report_error(path, str(res), args, rows)
            continue
        judged += 1
        row = {"file": path, **res.as_dict()}
        rows.append(row)
        if args.json:
            print(json.dumps(row), flush=True)
        else:
            print(writers.file_line(path, res, args.top), flush=True)
    _summary(inputs, judged, failed)
    if args.output_dir is not None:
        try:
            dest = output.write_predictions(rows, args.output_dir, args.format, top=args.top)
        except output.OutputError as e:
            err(os_message(e))
            return 2
        info(f"wrote {dest}")
    return _exit_status(inputs, failed)


def _reset_adaptation(predictor: Predictor) -> None:
    """A fresh speaker estimate (the population's) for the next recording's speaker."""
    predictor.adaptation = ADAPTATIONS[predictor.adaptation.name](predictor.meta)


def _print_segment(seg: tl.Segment, args, source: str, *, header: str | None) -> None:
    if args.json:
        key = "file" if source != "microphone" else "source"
        print(json.dumps({key: source, **seg.as_dict()}), flush=True)
        return
    if header is not None:
        print(header, flush=True)
    print(tl.format_row(seg, top=args.top), flush=True)


def _table_head(args) -> str:
    return tl.format_table([], top=args.top)


def _write_timeline(run, records: list, stem: str, source: str, args) -> bool:
    """``--output-dir``: the timeline's files; False (and one line) when one cannot be
    written."""
    try:
        written = output.write_timeline(records, args.output_dir, stem, args.format,
                                        duration=run.duration, regions=run.regions,
                                        source=source, plot=not args.no_plot,
                                        model=str(args.model))
    except output.OutputError as e:
        err(os_message(e))
        return False
    info(f"wrote {', '.join(str(p) for p in written)}")
    return True


def run_timeline(predictor: Predictor, inputs: Inputs, args) -> int:
    """``--timeline``: every file as segments of speech, each judged; rows as they come."""
    options = segment_options(args)
    stems = output.unique_stems(inputs.files) if args.output_dir is not None else {}
    adapt = predictor is not None and predictor.adaptation.name != "none" and not args.enrol
    judged = failed = segments = 0
    write_failed = False
    for path, problem in inputs.entries:
        if problem is not None:
            report_error(path, problem, args)
            continue
        if adapt:
            _reset_adaptation(predictor)       # each recording: its own speaker, from scratch
        records: list[tl.Segment] = []
        try:
            run = tl.timeline(path, predictor, adapt=adapt, **options)
            for seg in run:
                head = None
                if not records:
                    head = f"{printable(path)}:\n{_table_head(args)}"
                records.append(seg)
                _print_segment(seg, args, path, header=head)
        except tl.TimelineError as e:          # unreadable, truncated, NaN samples, ...
            failed += 1
            report_error(path, str(e).splitlines()[0], args)
            continue
        except BrokenPipeError:                # stdout closed (| head): main() ends the run
            raise
        except Exception as e:                 # keep a batch going; report the file
            failed += 1
            msg = str(e).splitlines()[0] if str(e) else ""
            report_error(path, f"{path}: {type(e).__name__}: {msg}".rstrip(": "), args)
            continue
        labelled = [r for r in records if r.emotion is not None]
        speech = sum(b - a for a, b in run.regions)
        if not records:
            failed += 1
            report_error(path, f"{path}: no speech found ({run.duration:.1f} s of audio, "
                                f"speech detector threshold {args.vad_threshold:g})", args)
        elif not labelled:
            failed += 1
            report_error(path, f"{path}: {plural(len(records), 'segment')} of speech, none "
                                f"could be judged ({records[0].error})", args)
        else:
            judged += 1
            segments += len(records)
            if not args.json:
                info(f"{path}: {plural(len(records), 'segment')}, {speech:.1f} s of speech "
                     f"in {run.duration:.1f} s")
        if args.output_dir is not None and records:
            write_failed |= not _write_timeline(run, records, stems[path], path, args)
    _summary(inputs, judged, failed, extra=plural(segments, "segment"))
    if write_failed:
        return 2
    return _exit_status(inputs, failed)


def run_mic(predictor: Predictor, args) -> int:
    def started(device):
        info(f"recording {args.seconds:g} s from {device['name']!r}... speak now")
    y_raw, rate = record(args.seconds, args.device, on_start=started)
    info("recording done")
    if args.save_recording:
        import soundfile as sf
        with atomic_path(args.save_recording) as tmp:
            sf.write(str(tmp), y_raw, rate, format="WAV", subtype="FLOAT")
    y = resample(y_raw, rate)
    speech = trim_silence(y, threshold_db=args.trim_db)
    base = {"source": "microphone", "seconds": round(y.size / SAMPLE_RATE, 3),
            "speech_seconds": round(speech.size / SAMPLE_RATE, 3),
            "level_dbfs": round(speech_level_db(speech), 1)}
    try:
        pred = predictor.predict_signal(speech, name="microphone recording")
    except AudioError as e:
        if args.json:
            print(json.dumps({**base, "error": str(e)}), flush=True)
        else:
            err(str(e))
        return 1
    if args.json:
        print(json.dumps({**base, **pred.as_dict()}), flush=True)
    else:
        print(f"microphone ({base['speech_seconds']:.1f} s of sound): "
              f"{pred.text(args.top)}", flush=True)
    return 0


def _run_window_stream(predictor: Predictor, args) -> int:
    def started(device):
        until = f"for {args.duration:g} s" if args.duration else "until Ctrl-C"
        info(f"listening to {device['name']!r} {until}: window {args.window:g} s, hop "
              f"{args.hop:g} s, speech detector threshold {args.vad_threshold:g}, gate "
              f"{args.gate_db:g} dBFS (first result after {args.window:g} s)")

    def emit(r: StreamResult):
        if args.json:
            print(json.dumps(r.as_dict()), flush=True)
        elif r.prediction is None:
            print(f"{r.time:7.1f} s  {'-':<9} {' ' * 20}       {r.reason}", flush=True)
        else:
            p = r.prediction
            print(f"{r.time:7.1f} s  {p.headline:<9} {_bar(p.confidence)} "
                  f"{p.confidence:.2f}", flush=True)
    try:
        stream_windows(predictor, emit, device=args.device, window=args.window, hop=args.hop,
                   gate_db=args.gate_db, duration=args.duration, on_start=started,
                   detector_options={"threshold": args.vad_threshold,
                                     "min_silence": args.min_silence})
    except KeyboardInterrupt:
        info("stopped")
    return 0


class _StopOnSigint:
    """The first Ctrl-C asks the stream to stop (what was heard is still judged and written);
    a second one interrupts at once. Outside the main thread: Ctrl-C interrupts as usual."""

    def __init__(self):
        self.event = threading.Event()
        self._old = None

    def __enter__(self) -> "_StopOnSigint":
        def handler(signum, frame):
            if self.event.is_set():
                raise KeyboardInterrupt
            self.event.set()
        try:
            self._old = signal.signal(signal.SIGINT, handler)
        except ValueError:          # not the main thread
            self._old = None
        return self

    def __exit__(self, *exc) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)

    def __call__(self) -> bool:
        return self.event.is_set()


def _run_utterance_stream(predictor: Predictor, args) -> int:
    records: list[tl.Segment] = []
    stamp = time.strftime("%Y%m%d-%H%M%S")

    def started(device):
        until = f"for {args.duration:g} s" if args.duration else "until Ctrl-C"
        info(f"listening to {device['name']!r} {until}: each utterance is judged when it "
             f"ends (speech detector threshold {args.vad_threshold:g}, "
             f"{args.min_silence + args.merge_gap:g} s of pause), gate {args.gate_db:g} dBFS")
        if not args.json:
            print(_table_head(args), flush=True)

    def emit(seg: tl.Segment):
        records.append(seg)
        _print_segment(seg, args, "microphone", header=None)

    judge = LevelGate(predictor, args.gate_db if args.gate_db > -200 else None)
    with _StopOnSigint() as stop:
        run = run_utterances(judge, emit, device=args.device, duration=args.duration,
                             on_start=started, stop=stop, **segment_options(args))
    if stop():
        info("stopped")
    labelled = [r for r in records if r.emotion is not None]
    counts: dict[str, int] = {}
    for r in labelled:
        counts[r.emotion] = counts.get(r.emotion, 0) + 1
    mix = ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
    info(f"session: {plural(len(records), 'utterance')} in {run.duration:.1f} s"
         + (f" ({mix})" if mix else " (no speech heard)"))
    if args.output_dir is not None and run.duration > 0:
        if not _write_timeline(run, records, f"stream-{stamp}", "microphone", args):
            return 2
    return 0


def run_stream(predictor: Predictor, args) -> int:
    if args.stream_mode == "window":
        return _run_window_stream(predictor, args)
    return _run_utterance_stream(predictor, args)


def segment_options(args) -> dict:
    """:func:`ser.timeline.timeline`'s detector and segment options from the command line."""
    return {"threshold": args.vad_threshold, "min_silence": args.min_silence,
            "merge_gap": args.merge_gap, "max_len": args.max_segment,
            "min_len": args.min_segment}
