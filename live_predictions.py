#!/usr/bin/env python3
"""Predict the emotion in speech: audio files, a microphone recording, or a live stream.

Examples::

    python live_predictions.py clip.wav other.flac          # one line per file
    python live_predictions.py --json features/Actor_01     # JSON lines; folders are expanded
    python live_predictions.py --mic --seconds 4            # record from the default input
    python live_predictions.py --timeline interview.flac    # emotion over time, per segment
    python live_predictions.py --timeline --output-dir out talk.wav   # + out/timeline_talk.csv/.png
    python live_predictions.py --output-dir out --format json clips/  # out/predictions.jsonl
    python live_predictions.py --stream --duration 30       # each utterance judged when it ends
    python live_predictions.py --stream --stream-mode window  # sliding window, one line per hop
    python live_predictions.py --list-devices

The model (H5 + JSON sidecar, see :func:`ser.checkpoint.load_model`) is loaded once per run:
by default the recommended one, ``models/emotion_mlp_stats_whisper.h5`` (:data:`ser.paths.
DEFAULT_MODEL`, found from any folder); the original's improved CNN is
``--model models/Emotion_Voice_Detection_Model.h5``. A relative ``--model`` is taken from the
current folder, like every other path on the command line;
the sidecar says which feature set to compute and how to normalise it, so prediction goes
through exactly the loader and feature code that training used (``ser.audio``,
``ser.features``). Inference runs the model's TFLite export through LiteRT (package
``ai-edge-litert``, no TensorFlow import) when the sidecar names one, else TensorFlow.

``--timeline`` reads files of any length in blocks (:mod:`ser.timeline`), finds speech with the
Silero voice-activity detector (:mod:`ser.vad`) and judges each utterance-sized segment;
``--max-seconds`` does not apply there (memory stays bounded). ``--stream`` runs the same
detector on the microphone's blocks and judges each utterance once it has ended
(:func:`ser.stream.run_utterances`); ``--stream-mode window`` keeps the sliding window
(:class:`ser.stream.StreamProcessor`), gated by the detector. Everything judged live goes
through the model's adaptation hook (:class:`NoAdaptation` or :class:`SpeakerAdaptation`,
chosen by the sidecar's ``adaptation`` key) before normalisation: that is where the
speaker-adapted model updates its running estimate of the speaker's statistics. Result files
(``--output-dir``, ``--format``) are written by :mod:`ser.output`.

Folder arguments are searched recursively for audio files (by extension,
:data:`ser.scan.AUDIO_EXTENSIONS`). Every file a folder leaves out (another extension, a hidden
name, a link to a folder) is named on stderr with the reason; a folder that cannot be read, an
empty folder and a folder without audio are errors, like a file that fails. A batch of more than
one input ends with a ``summary:`` line on stderr counting what was judged, failed and left out.
A file longer than ``--max-seconds`` (default 600 s, judged from its header before anything is
decoded) is refused, its line pointing to ``--timeline``: a file is judged whole, in memory
(measured peak for 10 minutes: 2.1 GB with the recommended model, 0.99 GB with the CNN).

Exit status: 0 when every input was judged, 1 when any input failed (unreadable, silent, too
short, too long, with --timeline no speech found, an empty or unreadable folder, ...; the others
still run), 2 when nothing could run (bad arguments, unusable model or sidecar, no audio device,
an output folder that cannot be written, no audio file in the inputs).

Library use::

    from ser.predict import Predictor
    p = Predictor("models/emotion_mlp_stats_whisper.h5")
    p.predict_file("clip.wav").emotion
    p.predict_signal(y, sr=16000).probabilities
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ser import output, serve, vad
from ser.cli import VersionAction
from ser import timeline as tl
from ser import writers
from ser.audio import DEFAULT_TRIM_DB
from ser.console import err, info
from ser.errors import SerError
from ser.paths import CNN_MODEL, DEFAULT_MODEL, ROOT
from ser.predict import (
    BACKENDS,
    DEFAULT_MAX_SECONDS,
    MIN_SPEECH_SECONDS,
    ModelError,
    Predictor,
    has_export,
)
from ser.cli.predict import (
    os_message,
    run_files,
    run_mic,
    run_stream,
    run_timeline,
    segment_options,
)
from ser.scan import expand_inputs, report_left_out
from ser.stream import (
    DEFAULT_GATE_DB,
    DEFAULT_HOP,
    DEFAULT_SECONDS,
    DEFAULT_WINDOW,
    DeviceError,
    input_device,
    list_devices,
)

LITERT_MIN_FILES = 300         # CLI --backend auto: batches this big use LiteRT (see --help)
MODEL_SUFFIXES = (".h5", ".hdf5", ".keras")
STREAM_MODES = ("utterance", "window")
# speech detection and segment options: (dest, default, flag)
SEGMENT_DEFAULTS = {"vad_threshold": vad.DEFAULT_THRESHOLD,
                    "min_silence": vad.DEFAULT_MIN_SILENCE,
                    "merge_gap": tl.DEFAULT_MERGE_GAP,
                    "max_segment": tl.DEFAULT_MAX_LEN,
                    "min_segment": tl.DEFAULT_MIN_LEN}
EPILOG = (
    "Exit status: 0 all inputs judged, 1 some input failed (a file, a --timeline file with no "
    "speech, or a folder that is empty or cannot be read; the rest still run), 2 nothing "
    "could run (arguments, model or its sidecar, audio device, an output folder that cannot "
    "be written, no audio file in the inputs). "
    "Audio without speech: a FILE that is silent or too short is an error for that file "
    "('no speech detected', exit 1); in --stream, silence is expected between utterances and "
    "is never an error: utterance mode judges only what the speech detector found (an "
    "utterance it cannot judge, e.g. too short or below --gate-db, is a row without an "
    "emotion whose error says why), window mode prints every hop, a window without speech "
    "as a row without an emotion and with error 'no speech detected (...)' (JSON: "
    "\"emotion\": null, \"error\": ...); the exit status stays 0. "
    "Files written: --output-dir DIR gets predictions.csv (.jsonl, .txt with --format) for a "
    "batch of FILEs, timeline_<name>.csv (.jsonl, .txt) and timeline_<name>.png per --timeline "
    "file, and timeline_stream-<date>-<time>.* at the end of a --stream session (Ctrl-C or "
    "--duration); each file is written under a temporary name and renamed when complete.")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        description="Predict the emotion in speech from audio files, a microphone recording "
                    "or a live microphone stream, with the model trained by neural_network.py.",
        epilog=EPILOG)
    ap.add_argument("files", nargs="*", metavar="FILE",
                    help="audio files (WAV, FLAC, AIFF, Ogg Vorbis, Opus, MP3; any rate, mono "
                         "or stereo) or folders (searched recursively; every file a folder "
                         "leaves out is named on stderr)")
    mode = ap.add_argument_group("modes (default: the FILE arguments)")
    mode.add_argument("--timeline", action="store_true",
                      help="with FILEs: emotion over time. Each file (any length, read in "
                           "blocks) is cut into speech segments by the Silero speech "
                           "detector, and every segment is judged: a table row as it comes "
                           "(start-end, emotion, confidence, top emotions), with --json one "
                           "object per segment {file, start, end, emotion, confidence, "
                           "probabilities, error}. A file without speech is one line and "
                           "exit status 1; the other files go on. --max-seconds does not "
                           "apply")
    mode.add_argument("--mic", action="store_true",
                      help="record from the input device for --seconds and predict")
    mode.add_argument("--stream", action="store_true",
                      help="listen continuously until Ctrl-C or --duration; see --stream-mode")
    mode.add_argument("--list-devices", action="store_true",
                      help="list the audio devices ('>' marks the default input) and exit "
                           "(status 2 when there is no input device)")
    mode.add_argument("--serve", action="store_true",
                      help="a local web page (http://HOST:PORT/): the browser records from "
                           "your own microphone and shows each utterance's emotion and the "
                           "session's timeline as it grows, or judges a file you pick; no "
                           "microphone or sound server needed where this runs. Nothing "
                           "leaves this machine (bound to 127.0.0.1 unless --host says "
                           "otherwise). --enrol, --min-confidence and the speech-detection "
                           "options apply as in --stream; Ctrl-C stops")
    mode.add_argument("--host", default=None, metavar="ADDRESS",
                      help="--serve: the address to listen on (default: 127.0.0.1, this "
                           "machine only; another address lets others on the network send "
                           "their voice here, with a warning)")
    mode.add_argument("--port", type=int, default=None, metavar="N",
                      help="--serve: the port (default: 8000; 0: a free one, named on stderr)")
    ap.add_argument("--version", action=VersionAction)
    ap.add_argument("--model", type=Path, default=None, metavar="H5",
                    help="H5 model with its JSON sidecar beside it; a relative path is taken "
                         "from the current folder (default: the recommended model, "
                         f"{DEFAULT_MODEL.relative_to(ROOT)} in the repository, found from "
                         "any folder: an MLP on pooled statistics and Whisper tiny.en's "
                         "encoder, the best on voices it never heard; the original's "
                         "reproduction, the improved CNN on 40 MFCC means, is --model "
                         f"{CNN_MODEL.relative_to(ROOT)})")
    ap.add_argument("--json", action="store_true",
                    help="print one JSON object per line: per file {file, emotion, confidence, "
                         "probabilities} or {file, error}; per --timeline segment the same "
                         "with start, end and error; per --mic recording, --stream utterance "
                         "or hop the same fields with source/time instead of file")
    ap.add_argument("--enrol", action="append", metavar="PATH", default=None,
                    help="a recording or folder of recordings of the speaker (any emotion, no "
                         "labels needed; repeat the flag for more): a model trained with "
                         "--norm speaker then normalises by this speaker's statistics; ~20 or "
                         "more utterances work best. Without it, such a model adapts as it "
                         "listens in --stream and within each --timeline file")
    ap.add_argument("--top", type=int, default=3, metavar="K",
                    help="text output: show the K most likely emotions (default: %(default)s)")
    ap.add_argument("--min-confidence", type=float, default=0.0, metavar="P",
                    help="answer 'uncertain' when the most likely emotion's probability is "
                         "below P (0-1; default 0: always an emotion): a text line then reads "
                         "'uncertain: angry 0.25  (happy 0.19, sad 0.17)', naming the emotion "
                         "the probability belongs to; JSON and CSV have emotion 'uncertain', "
                         "its probability as confidence and every emotion's probability. The "
                         "probabilities are calibrated on speakers the model never heard (the "
                         "sidecar's temperature); the README says what fraction each P "
                         "leaves and how accurate the rest is")
    ap.add_argument("--no-calibration", action="store_true",
                    help="the model's raw probabilities, without its sidecar's temperature")
    ap.add_argument("--backend", choices=BACKENDS, default="auto",
                    help="inference: litert (the model's TFLite export named in its "
                         "sidecar, run by the ai-edge-litert package without importing "
                         "TensorFlow; a model without an export is converted at start, "
                         "~0.4 s), tf (TensorFlow: the H5 loaded by Keras and traced, ~4-6 s "
                         "to start), auto (the export when the model has one; else litert "
                         f"for --stream, --timeline and {LITERT_MIN_FILES}+ files, where the "
                         "conversion pays back; else tf) (default: %(default)s)")
    ap.add_argument("--min-seconds", type=float, default=MIN_SPEECH_SECONDS, metavar="S",
                    help="clips (and segments) shorter than S seconds are 'no speech "
                         "detected' (default: %(default)s)")
    ap.add_argument("--max-seconds", type=float, default=DEFAULT_MAX_SECONDS, metavar="S",
                    help="refuse files (and --enrol recordings) longer than S seconds, judged "
                         "from the file's header before decoding: a file is judged whole, in "
                         "memory (measured peak for 10 minutes: 2.1 GB with the recommended "
                         "model, 0.99 GB with the CNN) (default: %(default)g). For long recordings use --timeline, which "
                         "reads files of any length in blocks and judges them segment by "
                         "segment")
    seg = ap.add_argument_group("speech detection and segments (--timeline, --stream)")
    seg.add_argument("--vad-threshold", type=float, metavar="P",
                     help="speech probability (0-1, exclusive) from which a 32 ms window "
                          "of audio counts as speech; higher misses quiet speech, lower takes "
                          f"noise for speech (default: {vad.DEFAULT_THRESHOLD:g})")
    seg.add_argument("--min-silence", type=float, metavar="S",
                     help="seconds: a pause must last this long to end a stretch of speech; "
                          "also the delay before a live utterance is judged (default: "
                          f"{vad.DEFAULT_MIN_SILENCE:g})")
    seg.add_argument("--merge-gap", type=float, metavar="S",
                     help="seconds: stretches of speech separated by at most this are one "
                          "segment; live, it adds to the delay (default: "
                          f"{tl.DEFAULT_MERGE_GAP:g})")
    seg.add_argument("--max-segment", type=float, metavar="S",
                     help="seconds: a longer segment is split into equal parts no longer than "
                          f"this (default: {tl.DEFAULT_MAX_LEN:g}; at least twice "
                          "--min-segment)")
    seg.add_argument("--min-segment", type=float, metavar="S",
                     help="seconds: shorter segments are not judged (default: "
                          f"{tl.DEFAULT_MIN_LEN:g})")
    out = ap.add_argument_group("result files (FILEs, --timeline, --stream)")
    out.add_argument("--output-dir", type=Path, metavar="DIR",
                     help="also write the results into DIR (made if missing; checked before "
                          "any work): predictions.<ext> for a batch of FILEs, "
                          "timeline_<name>.<ext> and timeline_<name>.png per --timeline file, "
                          "timeline_stream-<date>-<time>.<ext>/.png for a --stream session")
    out.add_argument("--format", choices=tuple(writers.FORMATS),
                     help=f"with --output-dir: {writers.describe_formats()} (default: "
                          f"{writers.DEFAULT_FORMAT})")
    out.add_argument("--no-plot", action="store_true",
                     help="with --output-dir: do not draw the timeline_<name>.png pictures")
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
    dev.add_argument("--stream-mode", choices=STREAM_MODES, default="utterance",
                     help="--stream: utterance (the speech detector finds each utterance; it "
                          "is judged when it ends, about --min-silence + --merge-gap seconds "
                          "later, and the timeline so far is printed: one row per utterance) "
                          "or window (the last --window seconds judged every --hop seconds, "
                          "one line per hop; windows where the detector heard no speech are "
                          "'no speech detected') (default: %(default)s)")
    dev.add_argument("--window", type=float, metavar="S",
                     help=f"--stream-mode window: window length in seconds (default: "
                          f"{DEFAULT_WINDOW:g})")
    dev.add_argument("--hop", type=float, metavar="S",
                     help=f"--stream-mode window: seconds between judgements (default: "
                          f"{DEFAULT_HOP:g})")
    dev.add_argument("--gate-db", type=float, default=DEFAULT_GATE_DB, metavar="DB",
                     help="--stream: a level floor beside the speech detector: a window or "
                          "utterance whose speech level (95th percentile of frame RMS) is "
                          "below DB dBFS is 'no speech detected' even if the detector heard "
                          "speech (a far-away voice); -200 turns it off (default: "
                          "%(default)s)")
    dev.add_argument("--duration", type=float, metavar="S",
                     help="--stream: stop after S seconds of audio (default: until Ctrl-C; "
                          "either way what was heard is judged, and written with "
                          "--output-dir)")
    return ap


def _check_args(ap: argparse.ArgumentParser, args) -> None:
    modes = [m for m, on in (("FILE", bool(args.files)), ("--mic", args.mic),
                             ("--stream", args.stream), ("--list-devices", args.list_devices),
                             ("--serve", args.serve))
             if on]
    if not 0.0 <= args.min_confidence <= 1.0:
        ap.error("--min-confidence must lie in [0, 1]")
    if args.timeline and not args.files:
        ap.error("--timeline judges FILEs (for the microphone, --stream finds utterances "
                 "itself)")
    if not modes:
        ap.error("give audio FILEs, --mic, --stream, --serve or --list-devices")
    if len(modes) > 1:
        ap.error(f"choose one of {' / '.join(modes)}")
    window_mode = args.stream and args.stream_mode == "window"
    for name in ("window", "hop"):
        if getattr(args, name) is not None and not window_mode:
            ap.error(f"--{name} is for the sliding window: add --stream-mode window")
    args.window = DEFAULT_WINDOW if args.window is None else args.window
    args.hop = DEFAULT_HOP if args.hop is None else args.hop
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
    for name in ("host", "port"):
        if getattr(args, name) is not None and not args.serve:
            ap.error(f"--{name} is for --serve")
    args.host = serve.DEFAULT_HOST if args.host is None else args.host
    args.port = serve.DEFAULT_PORT if args.port is None else args.port
    if not 0 <= args.port <= 65535:
        ap.error("--port must lie in 0-65535")
    # speech detection and segments
    segmenting = args.timeline or args.stream or args.serve
    for dest, default in SEGMENT_DEFAULTS.items():
        flag = "--" + dest.replace("_", "-")
        if getattr(args, dest) is not None and not segmenting:
            ap.error(f"{flag} is for --timeline and --stream")
        if getattr(args, dest) is None:
            setattr(args, dest, default)
    if not 0 < args.vad_threshold < 1:
        ap.error(f"--vad-threshold must lie between 0 and 1 (exclusive), got "
                 f"{args.vad_threshold:g}")
    for dest in ("min_silence", "merge_gap", "min_segment"):
        if not 0 <= getattr(args, dest) < float("inf"):
            ap.error(f"--{dest.replace('_', '-')} must be a number of seconds >= 0")
    if not 0 < args.max_segment < float("inf"):
        ap.error("--max-segment must be a positive number of seconds")
    if args.max_segment < 2 * args.min_segment:
        ap.error(f"--max-segment ({args.max_segment:g} s) must be at least twice "
                 f"--min-segment ({args.min_segment:g} s), so that the parts of a split "
                 f"segment are kept")
    if segmenting and args.max_segment <= vad.DEFAULT_MIN_SPEECH:
        ap.error(f"--max-segment must be more than {vad.DEFAULT_MIN_SPEECH:g} s (the "
                 f"detector's shortest speech)")
    # result files
    if args.output_dir is None:
        for flag, on in (("--format", args.format is not None), ("--no-plot", args.no_plot)):
            if on:
                ap.error(f"{flag} needs --output-dir")
    elif args.mic or args.list_devices or args.serve:
        ap.error("--output-dir is for FILEs, --timeline and --stream")
    elif window_mode:
        ap.error("--output-dir with --stream writes the session's timeline: use --stream-mode "
                 "utterance (the default)")
    args.format = args.format or writers.DEFAULT_FORMAT
    args.model_given = args.model is not None
    if args.model is None:
        args.model = DEFAULT_MODEL          # absolute: found from any folder


def _check_model_path(path: Path) -> str | None:
    """A one-line reason why ``path`` cannot be a model, before TensorFlow is imported."""
    suffix = path.suffix.lower()
    if suffix in MODEL_SUFFIXES:
        return None
    if suffix == ".json":
        h5 = path.with_suffix(".h5")
        where = (f"the model beside it: --model {h5}" if h5.exists() else
                 "the .h5 file it describes")
        return f"{path}: this is a model's JSON sidecar, not the model; pass {where}"
    if suffix == ".tflite":
        return (f"{path}: this is a model's TFLite export, not the model; pass the .h5 file "
                f"(--model {path.with_suffix('.h5')}): its sidecar names the export")
    return (f"{path}: not a Keras model file (expected {', '.join(MODEL_SUFFIXES)}, with its "
            f".json sidecar beside it)")


def _missing_model(path: Path, given: bool) -> str | None:
    """A one-line reason when the model file is not there, before TensorFlow is imported: the
    path as the user gave it (a relative one is taken from the current folder, and the line
    says where that is), or the default model missing from the repository."""
    if path.exists() or path.is_symlink():     # anything else is the Predictor's to judge
        return None
    if not given:
        return (f"{path}: the default model is missing (it ships in the repository's "
                f"models/ folder: restore it from git, or retrain it with make train)")
    msg = f"{path}: model file not found"
    if not path.is_absolute():
        msg += f" (relative to the current folder, {Path.cwd()}"
        in_repo = ROOT / path
        msg += f"; the repository has {in_repo})" if in_repo.is_file() else ")"
    return msg


def _new_folders(folder: Path) -> list[Path]:
    """The folders of ``folder``'s path that do not exist yet, deepest first: what
    :func:`ser.output.check_output_dir` will make."""
    new = []
    for d in (folder, *folder.parents):
        if d.exists() or d.is_symlink():
            break
        new.append(d)
    return new


def _remove_if_empty(folders: list[Path]) -> None:
    """Remove the folders this run made for --output-dir when nothing was written into them
    (deepest first; stops at the first that is not empty)."""
    for d in folders:
        try:
            d.rmdir()
        except OSError:
            return


def _enrol(predictor: Predictor, paths: list[str]) -> bool:
    """``--enrol``: adapt the predictor to the speaker's recordings
    (:func:`ser.serve.enrol_speaker`, the page's too); False (said on stderr) when there is
    nothing to adapt to or the model does not adapt."""
    try:
        serve.enrol_speaker(predictor, paths)
    except SerError as e:               # ModelError, ServeError: one line
        err(str(e))
        return False
    return True


def _serve(predictor: Predictor, args) -> int:
    """``--serve``: the page and its API until Ctrl-C (:func:`ser.serve.serve`)."""
    try:
        return serve.serve(predictor=predictor, host=args.host, port=args.port,
                           gate_db=args.gate_db if args.gate_db > -200 else None,
                           segment_options=segment_options(args))
    except SerError as e:               # a port in use, an address that cannot be bound
        err(str(e))
        return 2


def _cli_backend(args, n_files: int) -> str:
    """``--backend auto`` on the command line: the model's LiteRT export when its sidecar has
    one (no TensorFlow import, nothing to pay back); without one, LiteRT only where its
    one-off conversion (~0.4 s) is paid back by ~0.5 ms saved per prediction (streaming,
    timelines, big batches)."""
    if args.backend != "auto":
        return args.backend
    if has_export(args.model):
        return "auto"
    return ("auto" if args.stream or args.serve or args.timeline or n_files >= LITERT_MIN_FILES
            else "tf")


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    _check_args(ap, args)
    made: list[Path] = []                  # --output-dir folders this run made
    try:
        if args.list_devices:
            return list_devices()
        bad_model = _check_model_path(args.model)
        if bad_model:                      # before TensorFlow is imported (seconds)
            err(bad_model)
            return 2
        if args.output_dir is not None:
            made = _new_folders(args.output_dir)
            try:
                output.check_output_dir(args.output_dir)
            except output.OutputError as e:
                err(os_message(e))
                return 2
        missing = _missing_model(args.model, args.model_given)
        if missing:
            err(missing)
            return 2
        if args.mic or args.stream:
            input_device(args.device)      # fail fast, before the slow model load
        inputs = expand_inputs(args.files)
        report_left_out(inputs)
        if args.files and not inputs.files:
            if args.timeline:
                return run_timeline(None, inputs, args)
            return run_files(None, inputs, args)    # only failed folders: nothing to judge
        try:
            predictor = Predictor(args.model, min_seconds=args.min_seconds,
                                  backend=_cli_backend(args, len(inputs.files)),
                                  max_seconds=args.max_seconds,
                                  calibrated=not args.no_calibration,
                                  min_confidence=args.min_confidence)
        except ModelError as e:
            err(str(e))
            return 2
        if args.enrol:
            if not _enrol(predictor, args.enrol):
                return 2
        elif predictor.adaptation.name == "speaker" and not (args.stream or args.timeline
                                                              or args.serve):
            info("note: this model adapts to the speaker; without --enrol it uses the "
                  "population's normalisation")
        if args.mic:
            return run_mic(predictor, args)
        if args.stream:
            return run_stream(predictor, args)
        if args.serve:
            return _serve(predictor, args)
        if args.timeline:
            return run_timeline(predictor, inputs, args)
        return run_files(predictor, inputs, args)
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
    finally:
        _remove_if_empty(made)             # a run that wrote nothing leaves no empty folder


if __name__ == "__main__":
    sys.exit(main())
