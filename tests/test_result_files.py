"""The result files of live_predictions.py --output-dir (ser.output, ser.writers): batch
predictions and timelines (names, formats, round trips, atomic writes), the format registry (a
new format is one class), the one wording of "the top emotions", and a folder that cannot be
written refused with one line before any work. (The training pipeline's files:
test_feature_and_model_files.py.)"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

import live_predictions
from ser import output, writers
from ser import timeline as tl
from ser.corpora import EMOTIONS
from ser.predict import Prediction
from unprivileged import run_unprivileged

LABELS = list(EMOTIONS)


def _probs(best: str, p: float) -> dict[str, float]:
    rest = (1.0 - p) / (len(LABELS) - 1)
    return {k: (p if k == best else round(rest, 6)) for k in LABELS}


ROWS = [
    {"file": "a/talk.flac", "emotion": "happy", "confidence": 0.7,
     "probabilities": _probs("happy", 0.7)},
    {"file": "b/quiet, \"odd\" name.wav", "error": "b/quiet.wav: silent (peak -90 dBFS < -60 "
                                                   "dBFS), no speech detected"},
    {"file": "c/x.ogg", "emotion": "sad", "confidence": 0.412345,
     "probabilities": _probs("sad", 0.412345)},
]

SEGMENTS = [
    tl.Segment(1.5, 2.9, "neutral", 0.41, _probs("neutral", 0.41)),
    tl.Segment(4.0, 4.3, None, None, {}, "talk 4.00-4.30 s: too short (0.30 s < 0.50 s), no "
                                        "speech detected"),
    tl.Segment(5.25, 12.75, "angry", 0.9, _probs("angry", 0.9)),
]
REGIONS = [(1.5, 2.9), (4.0, 4.3), (5.25, 12.75)]


def _no_temporaries(folder: Path) -> None:
    assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == []


# --------------------------------------------------------------------------------------------
# names
# --------------------------------------------------------------------------------------------
def test_names():
    assert tuple(output.FORMATS) == ("csv", "json", "txt")
    assert [output.predictions_path("out", f).name for f in output.FORMATS] == \
        ["predictions.csv", "predictions.jsonl", "predictions.txt"]
    assert [p.name for p in output.timeline_paths("out", "talk", "json")] == \
        ["timeline_talk.jsonl", "timeline_talk.png"]
    assert [p.name for p in output.timeline_paths("out", "talk", "txt", plot=False)] == \
        ["timeline_talk.txt"]
    stems = output.unique_stems(["x/Actor_01/talk.flac", "x/Actor_02/talk.wav", "y/other.mp3",
                                 "z/Actor_01/talk.ogg", ".hidden.wav"])
    assert list(stems.values()) == ["Actor_01_talk", "Actor_02_talk", "other",
                                    "Actor_01_talk-2", "hidden"]
    with pytest.raises(ValueError, match="unknown format 'xml'"):
        output.predictions_path("out", "xml")


# --------------------------------------------------------------------------------------------
# batch predictions
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_predictions_round_trip(tmp_path, fmt):
    dest = output.write_predictions(ROWS, tmp_path / "new" / "out", fmt)
    assert dest == output.predictions_path(tmp_path / "new" / "out", fmt)
    assert output.read_predictions(dest) == ROWS
    _no_temporaries(dest.parent)
    if fmt == "csv":
        head = dest.read_text().splitlines()[0]
        assert head == "file,emotion,confidence," + ",".join(LABELS) + ",error"
    else:
        assert [json.loads(line) for line in dest.read_text().splitlines()] == ROWS


def test_predictions_text_is_the_terminal_lines(tmp_path):
    dest = output.write_predictions(ROWS, tmp_path, "txt", top=2)
    lines = dest.read_text().splitlines()
    assert lines[0].startswith("a/talk.flac: happy 0.70  (") and lines[0].count(",") == 0
    assert lines[1].startswith('b/quiet, "odd" name.wav: error: b/quiet.wav: silent')
    assert len(lines) == 3


def test_text_lines_name_the_file_once_and_the_uncertain_emotion(tmp_path):
    """issue 29: ``a.wav: error: a.wav: silent`` named the file twice, and an uncertain
    answer's line did not say which emotion its probability belonged to."""
    rows = [{"file": "./a.wav", "error": "a.wav: silent (speech level -90 dBFS), no speech "
                                        "detected"},
            {"file": "b.wav", "error": "b.wav: not readable audio (Error opening 'b.wav': "
                                      "Format not recognised.)"},
            {"file": "c.flac", "emotion": "uncertain", "confidence": 0.25,
             "probabilities": {**{k: 0.05 for k in LABELS}, "angry": 0.25, "happy": 0.19,
                               "sad": 0.17, "neutral": 0.09}}]
    dest = output.write_predictions(rows, tmp_path, "txt", top=3)
    assert dest.read_text().splitlines() == [
        "./a.wav: error: silent (speech level -90 dBFS), no speech detected",
        "b.wav: error: not readable audio (Format not recognised.)",
        "c.flac: uncertain: angry 0.25  (happy 0.19, sad 0.17)"]
    assert output.error_line("./a.wav", rows[0]["error"]) == \
        "./a.wav: silent (speech level -90 dBFS), no speech detected"
    assert output.error_line("x.wav", "disk full") == "x.wav: disk full"      # named once


def test_predictions_refuse_broken_rows(tmp_path):
    with pytest.raises(ValueError, match="row 0: expected a mapping with a 'file' key"):
        output.write_predictions([{"emotion": "sad"}], tmp_path)
    with pytest.raises(ValueError, match="row 0: needs emotion, confidence"):
        output.write_predictions([{"file": "x", "emotion": "sad"}], tmp_path)
    with pytest.raises(TypeError, match="rows must be an iterable"):
        output.write_predictions({"file": "x"}, tmp_path)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------
# timelines
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_timeline_round_trip(tmp_path, fmt):
    written = output.write_timeline(SEGMENTS, tmp_path, "talk", fmt, duration=14.0,
                                    regions=REGIONS, source="rec/talk.flac",
                                    model="models/emotion_mlp_stats_whisper.h5")
    assert [p.name for p in written] == [f"timeline_talk{writers.get_writer(fmt).extension}",
                                         "timeline_talk.png"]
    assert written[1].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    back = output.read_timeline(written[0])
    want = [s.as_dict() for s in SEGMENTS]
    if fmt == "json":
        assert [r.pop("file") for r in back] == ["rec/talk.flac"] * 3
    assert back == want
    # what was read back is a timeline again: written and drawn the same way
    again = output.write_timeline(back, tmp_path / "again", "talk", fmt, duration=14.0,
                                  regions=REGIONS, source="rec/talk.flac", plot=False)
    assert output.read_timeline(again[0]) == output.read_timeline(written[0])
    _no_temporaries(tmp_path)


def test_timeline_text(tmp_path):
    (path,) = output.write_timeline(SEGMENTS, tmp_path, "talk", "txt", duration=14.0,
                                    regions=REGIONS, source="rec/talk.flac", plot=False)
    lines = path.read_text().splitlines()
    assert lines[0] == "# rec/talk.flac" and "emotion" in lines[1]
    assert lines[2].startswith("00:01.50-00:02.90  neutral")
    assert "too short" in lines[3] and lines[4].startswith("00:05.25-00:12.75  angry")


def test_timeline_write_failure_is_one_line(tmp_path):
    (tmp_path / "timeline_talk.csv").mkdir()          # the name is taken by a folder
    with pytest.raises(output.OutputError) as e:
        output.write_timeline(SEGMENTS, tmp_path, "talk", "csv", duration=14.0,
                              regions=REGIONS)
    assert "timeline_talk.csv: is a folder" in str(e.value) and "\n" not in str(e.value)
    (tmp_path / "predictions.jsonl").mkdir()
    with pytest.raises(output.OutputError, match="predictions.jsonl: is a folder"):
        output.write_predictions(ROWS, tmp_path, "json")


# --------------------------------------------------------------------------------------------
# the formats: one class each, behind one registry
# --------------------------------------------------------------------------------------------
class MarkdownWriter(writers.ResultWriter):
    """A format this package does not have: all a new format needs."""
    name, extension = "md", ".md"
    help = "a Markdown table"

    def predictions(self, rows, *, top=3):
        return "".join(["| file | emotion | confidence |\n", "|---|---|---|\n"]
                       + [f"| {r['file']} | {r.get('emotion') or 'error'} | "
                          f"{r.get('confidence', '')} |\n" for r in rows])

    def timeline(self, segments, *, source=None):
        return "".join([f"{source}\n", "| start | end | emotion |\n", "|---|---|---|\n"]
                       + [f"| {s.start:g} | {s.end:g} | {s.emotion or '-'} |\n"
                          for s in segments])


class FakePredictor:
    """Judges every file angry without reading it (no model: the test is about the file)."""
    adaptation = type("NoAdaptation", (), {"name": "none"})()

    def __init__(self, *args, **kwargs):
        pass

    def predict_files(self, paths):
        probs = np.full(len(EMOTIONS), 0.05)
        probs[EMOTIONS.index("angry")] = 0.65
        for path in paths:
            yield path, Prediction.from_probs(probs, EMOTIONS)


def test_a_new_format_is_one_class_and_one_registry_entry(tmp_path, monkeypatch, capsys):
    assert "md" not in output.FORMATS
    with pytest.raises(ValueError, match=r"unknown format 'md' \(choose from csv, json, txt\)"):
        writers.get_writer("md")
    monkeypatch.setitem(writers.WRITERS, "md", MarkdownWriter)
    assert "md" in output.FORMATS and isinstance(writers.get_writer("md"), MarkdownWriter)
    # the library: names and writers
    dest = output.write_predictions(ROWS, tmp_path / "lib", "md")
    assert dest == tmp_path / "lib" / "predictions.md"
    assert dest.read_text().splitlines()[2:4] == ["| a/talk.flac | happy | 0.7 |",
                                                  '| b/quiet, "odd" name.wav | error |  |']
    (path,) = output.write_timeline(SEGMENTS, tmp_path / "lib", "talk", "md", duration=14.0,
                                    regions=REGIONS, source="rec/talk.flac", plot=False)
    assert path.name == "timeline_talk.md"
    assert path.read_text().splitlines()[3:5] == ["| 1.5 | 2.9 | neutral |", "| 4 | 4.3 | - |"]
    _no_temporaries(tmp_path / "lib")
    # the command line: --help describes it, --format takes it
    assert "md (a Markdown table) (default: csv)" in \
        " ".join(live_predictions.build_parser().format_help().split())
    monkeypatch.setattr(live_predictions, "Predictor", FakePredictor)
    clip = tmp_path / "clip.wav"
    clip.write_bytes(b"RIFF")
    rc = live_predictions.main(["--output-dir", str(tmp_path / "cli"), "--format", "md",
                                str(clip)])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert out == f"{clip}: angry 0.65  (neutral 0.05, calm 0.05)\n"
    assert (tmp_path / "cli" / "predictions.md").read_text().splitlines()[2] == \
        f"| {clip} | angry | 0.65 |"
    assert f"wrote {tmp_path / 'cli' / 'predictions.md'}" in err


def test_the_top_emotions_are_worded_once():
    """A file's line, a timeline row and the text files name the top emotions alike."""
    probs = {**{k: 0.05 for k in EMOTIONS}, "angry": 0.5, "sad": 0.16, "happy": 0.09}
    assert tl.top_emotions(probs, 3) == "angry 0.50, sad 0.16, happy 0.09"
    assert tl.top_emotions(probs, 3, skip=1) == "sad 0.16, happy 0.09"
    assert tl.top_emotions(probs, 0) == "" and tl.top_emotions({}, 3) == ""
    p = Prediction("angry", 0.5, probs)
    assert p.text(3) == f"angry 0.50  ({tl.top_emotions(probs, 3, skip=1)})"
    row = tl.format_row(tl.Segment(0.0, 2.0, "angry", 0.5, probs), top=3)
    assert row.endswith(f"  {tl.top_emotions(probs, 3)}")
    assert writers.text_line({"file": "a.wav", **p.as_dict()}, 3) == f"a.wav: {p.text(3)}"


# --------------------------------------------------------------------------------------------
# a folder that cannot be written: one line, before any work
# --------------------------------------------------------------------------------------------
def test_check_output_dir(tmp_path):
    assert output.check_output_dir(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert (tmp_path / "a" / "b").is_dir()
    _no_temporaries(tmp_path / "a" / "b")
    f = tmp_path / "file.txt"
    f.write_text("x")
    for bad, why in ((f, "is not a folder"), (f / "sub", "cannot write")):
        with pytest.raises(output.OutputError) as e:
            output.check_output_dir(bad)
        assert str(bad) in e.value.strerror and why in e.value.strerror
        assert "\n" not in e.value.strerror


@pytest.mark.parametrize("mode", [[], ["--timeline"]])
def test_cli_refuses_an_output_dir_it_cannot_write_before_work(tmp_path, capsys, monkeypatch,
                                                               mode):
    def no_model(*a, **kw):
        raise AssertionError("the model was loaded before the output folder was checked")
    monkeypatch.setattr(live_predictions, "Predictor", no_model)
    f = tmp_path / "file.txt"
    f.write_text("x")
    clip = tmp_path / "clip.wav"
    clip.write_bytes(b"RIFF")
    rc = live_predictions.main([*mode, "--output-dir", str(f / "out"), str(clip)])
    out, err = capsys.readouterr()
    assert rc == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"error: output folder {f / 'out'}: cannot write") and \
        "Errno" not in lines[0], lines


def test_cli_read_only_output_dir_as_another_user(tmp_path):
    """A folder the user may not write into (root is made user nobody for this)."""
    d = Path(tempfile.mkdtemp(prefix="ser-ro-", dir="/tmp"))
    try:
        d.chmod(0o555)
        clip = d / "clip.wav"
        r = run_unprivileged("live_predictions.py", "--model", "models/none.h5",
                             "--output-dir", str(d / "out"), str(clip))
        if os.access(d, os.W_OK) and os.geteuid() != 0:
            pytest.skip("this user can write into a 0555 folder")
        assert r.returncode == 2, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
        assert lines[0] == f"error: output folder {d / 'out'}: cannot write: permission denied"
    finally:
        d.chmod(0o755)
        shutil.rmtree(d)
