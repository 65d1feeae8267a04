#!/usr/bin/env python3
"""Predict the emotion in speech: audio files, a microphone recording, or a live stream.

Examples::

    python live_predictions.py clip.wav other.flac          # one line per file
    python live_predictions.py --json features/Actor_01     # JSON lines; folders are expanded
    python live_predictions.py --mic --seconds 4            # record from the default input
    python live_predictions.py --stream --duration 30       # sliding window, one line per hop
    python live_predictions.py --list-devices

The model (H5 + JSON sidecar, see :func:`ser_common.load_model`) is loaded once per run; the
sidecar says which feature set to compute and how to normalise it, so prediction goes through
exactly the loader and feature code that training used (:mod:`ser_common`). Inference runs the
model converted to TFLite by LiteRT (package ``ai-edge-litert``) when that is installed, else a
traced ``tf.function``; both avoid ``model.predict``'s ~40-60 ms per call.

Streaming judges a sliding window (:class:`StreamProcessor`, independent of the device); every
window that passes the energy gate goes through the model's adaptation hook
(:class:`NoAdaptation` or :class:`SpeakerAdaptation`, chosen by the sidecar's ``adaptation``
key) before normalisation: that is where the speaker-adapted model updates its running estimate
of the speaker's statistics.

Folder arguments are searched recursively for audio files (by extension,
:data:`ser_common.AUDIO_EXTENSIONS`). Every file a folder leaves out (another extension, a hidden
name, a link to a folder) is named on stderr with the reason; a folder that cannot be read, an
empty folder and a folder without audio are errors, like a file that fails. A batch of more than
one input ends with a ``summary:`` line on stderr counting what was judged, failed and left out.
A file longer than ``--max-seconds`` (default 600 s, judged from its header before anything is
decoded) is refused: a file is judged whole, in memory.

Exit status: 0 when every input was judged, 1 when any input failed (unreadable, silent, too
short, too long, an empty or unreadable folder, ...; the others still run), 2 when nothing could
run (bad arguments, unusable model or sidecar, no audio device, no audio file in the inputs).

Library use::

    from ser.predict import Predictor
    p = Predictor("models/Emotion_Voice_Detection_Model.h5")
    p.predict_file("clip.wav").emotion
    p.predict_signal(y, sr=16000).probabilities
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ser.audio import (
    DEFAULT_TRIM_DB,
    SAMPLE_RATE,
    AudioError,
    resample,
    speech_level_db,
    trim_silence,
)
from ser.console import err, info
from ser.files import atomic_path
from ser.paths import DEFAULT_MODEL, ROOT
from ser.predict import (
    BACKENDS,
    DEFAULT_MAX_SECONDS,
    MIN_SPEECH_SECONDS,
    ModelError,
    Prediction,
    Predictor,
)
from ser.scan import Inputs, expand_inputs
from ser.stream import (
    DEFAULT_GATE_DB,
    DEFAULT_HOP,
    DEFAULT_SECONDS,
    DEFAULT_WINDOW,
    DeviceError,
    StreamResult,
    input_device,
    list_devices,
    record,
    run_stream,
)

LITERT_MIN_FILES = 300         # CLI --backend auto: batches this big use LiteRT (see --help)


def _bar(p: float, width: int = 20) -> str:
    n = int(round(max(0.0, min(1.0, p)) * width))
    return "█" * n + "·" * (width - n)


def format_prediction(p: Prediction, top: int = 3) -> str:
    others = ", ".join(f"{k} {v:.2f}" for k, v in p.top(top)[1:])
    return f"{p.emotion} {p.confidence:.2f}" + (f"  ({others})" if others else "")


def report_left_out(inputs: Inputs, what: str = "") -> None:
    for path, reason in inputs.left_out:
        info(f"skipped{what}: {path}: {reason}")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        description="Predict the emotion in speech from audio files, a microphone recording "
                    "or a live microphone stream, with the model trained by neural_network.py.",
        epilog="Exit status: 0 all inputs judged, 1 some input failed (a file, or a folder "
               "that is empty or cannot be read; the rest still run), 2 nothing could run "
               "(arguments, model or its sidecar, audio device, no audio file in the inputs).")
    ap.add_argument("files", nargs="*", metavar="FILE",
                    help="audio files (WAV, FLAC, AIFF, Ogg Vorbis, Opus, MP3; any rate, mono "
                         "or stereo) or folders (searched recursively; every file a folder "
                         "leaves out is named on stderr)")
    mode = ap.add_argument_group("modes (default: the FILE arguments)")
    mode.add_argument("--mic", action="store_true",
                      help="record from the input device for --seconds and predict")
    mode.add_argument("--stream", action="store_true",
                      help="listen continuously; judge a sliding window every --hop seconds "
                           "until Ctrl-C or --duration")
    mode.add_argument("--list-devices", action="store_true",
                      help="list the audio devices ('>' marks the default input) and exit")
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL,
                    help="H5 model with its JSON sidecar beside it (default: "
                         f"{DEFAULT_MODEL.relative_to(ROOT)})")
    ap.add_argument("--json", action="store_true",
                    help="print one JSON object per line: per file {file, emotion, confidence, "
                         "probabilities} or {file, error}; per --mic recording or --stream hop "
                         "the same fields with source/time instead of file")
    ap.add_argument("--enrol", action="append", metavar="PATH", default=None,
                    help="a recording or folder of recordings of the speaker (any emotion, no "
                         "labels needed; repeat the flag for more): a model trained with "
                         "--norm speaker then normalises by this speaker's statistics; ~20 or "
                         "more utterances work best")
    ap.add_argument("--top", type=int, default=3, metavar="K",
                    help="text output: show the K most likely emotions (default: %(default)s)")
    ap.add_argument("--backend", choices=BACKENDS, default="auto",
                    help="inference: litert (TFLite via the ai-edge-litert package: fastest "
                         "per call, ~0.4 s to convert at start), tf (a traced TensorFlow "
                         "function), auto (litert for --stream and for "
                         f"{LITERT_MIN_FILES}+ files, where it pays back, if installed; "
                         "else tf) (default: %(default)s)")
    ap.add_argument("--min-seconds", type=float, default=MIN_SPEECH_SECONDS, metavar="S",
                    help="clips shorter than S seconds are 'no speech detected' "
                         "(default: %(default)s)")
    ap.add_argument("--max-seconds", type=float, default=DEFAULT_MAX_SECONDS, metavar="S",
                    help="refuse files (and --enrol recordings) longer than S seconds, judged "
                         "from the file's header before decoding: a file is judged whole, in "
                         "memory, about 3-7 GB an hour of audio (default: %(default)g)")
    dev = ap.add_argument_group("microphone (--mic, --stream)")
    dev.add_argument("--device", metavar="ID",
                     help="input device: index or part of its name (default: the system's "
                          "default input; see --list-devices)")
    dev.add_argument("--seconds", type=float, default=DEFAULT_SECONDS, metavar="N",
                     help="--mic: seconds to record (default: %(default)s)")
    dev.add_argument("--trim-db", type=float, default=DEFAULT_TRIM_DB, metavar="DB",
                     help="--mic: cut leading/trailing audio quieter than DB dBFS before "
                          "judging (default: %(default)s; use -200 to keep everything)")
    dev.add_argument("--save-recording", type=Path, metavar="WAV",
                     help="--mic: also write the raw recording to this WAV file")
    dev.add_argument("--window", type=float, default=DEFAULT_WINDOW, metavar="S",
                     help="--stream: window length in seconds (default: %(default)s)")
    dev.add_argument("--hop", type=float, default=DEFAULT_HOP, metavar="S",
                     help="--stream: seconds between judgements (default: %(default)s)")
    dev.add_argument("--gate-db", type=float, default=DEFAULT_GATE_DB, metavar="DB",
                     help="--stream: windows whose speech level (95th percentile of frame "
                          "RMS) is below DB dBFS are reported as 'no speech' "
                          "(default: %(default)s)")
    dev.add_argument("--duration", type=float, metavar="S",
                     help="--stream: stop after S seconds of audio (default: until Ctrl-C)")
    return ap


def _check_args(ap: argparse.ArgumentParser, args) -> None:
    modes = [m for m, on in (("FILE", bool(args.files)), ("--mic", args.mic),
                             ("--stream", args.stream), ("--list-devices", args.list_devices))
             if on]
    if not modes:
        ap.error("give audio FILEs, --mic, --stream or --list-devices")
    if len(modes) > 1:
        ap.error(f"choose one of {' / '.join(modes)}")
    for name in ("seconds", "window", "hop"):
        if getattr(args, name) <= 0:
            ap.error(f"--{name} must be positive")
    if args.duration is not None and args.duration <= 0:
        ap.error("--duration must be positive")
    if args.hop > args.window:
        ap.error("--hop must not exceed --window")
    if args.top < 1:
        ap.error("--top must be at least 1")
    if not args.max_seconds > 0:
        ap.error("--max-seconds must be positive")


def _cli_backend(args, n_files: int) -> str:
    """``--backend auto`` on the command line: LiteRT only where its one-off conversion
    (~0.4 s) is paid back by ~0.5 ms saved per prediction (streaming, big batches)."""
    if args.backend != "auto":
        return args.backend
    return "auto" if args.stream or n_files >= LITERT_MIN_FILES else "tf"


def _report_error(path: str, msg: str, args) -> None:
    if args.json:
        print(json.dumps({"file": path, "error": msg}), flush=True)
    else:
        err(msg)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' * (n != 1)}"


def _run_files(predictor: Predictor | None, inputs: Inputs, args) -> int:
    """Judge the files in argument order; folder problems are reported in their place.

    ``predictor`` is None when there is no file to judge (only failed folders)."""
    judged = failed = 0
    for path, problem in inputs.entries:
        if problem is not None:
            _report_error(path, problem, args)
            continue
        _, res = next(predictor.predict_files([path]))
        if isinstance(res, Exception):
            failed += 1
            _report_error(path, str(res), args)
            continue
        judged += 1
        if args.json:
            print(json.dumps({"file": path, **res.as_dict()}), flush=True)
        else:
            print(f"{path}: {format_prediction(res, args.top)}", flush=True)
    problems = inputs.problems
    if len(inputs.entries) > 1 or inputs.left_out:      # a batch: say what it did and skipped
        parts = [f"{judged} of {judged + failed} files judged"]
        if failed:
            parts.append(f"{failed} failed")
        unreadable = inputs.unreadable
        if unreadable:
            parts.append(f"{_plural(unreadable, 'folder')} could not be read")
        if len(problems) > unreadable:
            parts.append(f"{_plural(len(problems) - unreadable, 'folder')} empty or without "
                         f"audio")
        if inputs.left_out:
            dirs = sum(os.path.isdir(path) for path, _ in inputs.left_out)
            kinds = [_plural(n, w) for n, w in ((len(inputs.left_out) - dirs, "file"),
                                                 (dirs, "folder")) if n]
            parts.append(f"{' and '.join(kinds)} left out of the folders (named above)")
        info("summary: " + ", ".join(parts))
    if not inputs.files:
        return 2
    return 1 if failed or problems else 0


def _run_mic(predictor: Predictor, args) -> int:
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
              f"{format_prediction(pred, args.top)}", flush=True)
    return 0


def _run_stream(predictor: Predictor, args) -> int:
    def started(device):
        until = f"for {args.duration:g} s" if args.duration else "until Ctrl-C"
        info(f"listening to {device['name']!r} {until}: window {args.window:g} s, hop "
              f"{args.hop:g} s, gate {args.gate_db:g} dBFS (first result after "
              f"{args.window:g} s)")

    def emit(r: StreamResult):
        if args.json:
            print(json.dumps(r.as_dict()), flush=True)
        elif r.prediction is None:
            print(f"{r.time:7.1f} s  {'-':<9} {' ' * 20}       {r.reason} "
                  f"({r.level_db:.0f} dBFS)", flush=True)
        else:
            p = r.prediction
            print(f"{r.time:7.1f} s  {p.emotion:<9} {_bar(p.confidence)} {p.confidence:.2f}",
                  flush=True)
    try:
        run_stream(predictor, emit, device=args.device, window=args.window, hop=args.hop,
                   gate_db=args.gate_db, duration=args.duration, on_start=started)
    except KeyboardInterrupt:
        info("stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    _check_args(ap, args)
    try:
        if args.list_devices:
            return list_devices()
        if args.mic or args.stream:
            input_device(args.device)      # fail fast, before the slow model load
        inputs = expand_inputs(args.files)
        report_left_out(inputs)
        if args.files and not inputs.files:
            return _run_files(None, inputs, args)    # only failed folders: nothing to judge
        try:
            predictor = Predictor(args.model, min_seconds=args.min_seconds,
                                  backend=_cli_backend(args, len(inputs.files)),
                                  max_seconds=args.max_seconds)
        except ModelError as e:
            err(str(e))
            return 2
        if args.enrol:
            enrol = expand_inputs(args.enrol)
            report_left_out(enrol, " (enrolment)")
            try:
                used, errors = predictor.enrol(enrol.files)
            except ModelError as e:
                err(str(e))
                return 2
            errors = [msg for _, msg in enrol.problems] + errors
            for msg in errors:
                err(f"enrolment skipped: {msg}")
            if not used:
                err("no usable enrolment recording; nothing to adapt to")
                return 2
            skipped = [f"{len(errors)} failed"] if errors else []
            if enrol.left_out:
                skipped.append(f"{_plural(len(enrol.left_out), 'file')} left out of the "
                               f"folders")
            info(f"adapted to the speaker from {used} enrolment recording(s)"
                  + (f" ({', '.join(skipped)}, named above)" if skipped else ""))
        elif predictor.adaptation.name == "speaker" and not args.stream:
            info("note: this model adapts to the speaker; without --enrol it uses the "
                  "population's normalisation")
        if args.mic:
            return _run_mic(predictor, args)
        if args.stream:
            return _run_stream(predictor, args)
        return _run_files(predictor, inputs, args)
    except DeviceError as e:
        err(str(e))
        return 2
    except KeyboardInterrupt:
        info("interrupted")
        return 130
    except BrokenPipeError:
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 1


if __name__ == "__main__":
    sys.exit(main())
