"""Result files: batch predictions and timelines in a folder, in any format of
:data:`ser.writers.WRITERS` (CSV, JSON lines, text).

What ``live_predictions.py --output-dir DIR --format {csv,json,txt}`` writes (no argument
parsing here; the formats themselves are :mod:`ser.writers`' classes):

* a batch of files: one results file per run, ``DIR/predictions.csv`` (``.jsonl``, ``.txt``),
  one row per input: ``file, emotion, confidence, <one column per label>, error``
  (:func:`write_predictions`, read back by :func:`read_predictions`);
* a timeline (``--timeline`` per file, ``--stream`` per session):
  ``DIR/timeline_<stem>.csv`` (``.jsonl``, ``.txt``), one row per segment
  (:func:`write_timeline`, read back by :func:`read_timeline`), and the picture
  ``DIR/timeline_<stem>.png`` (:func:`ser.timeline.plot_timeline`).

Every file is written atomically (:func:`ser.files.atomic_path`: a temporary name in the same
folder, renamed into place when complete), and :func:`check_output_dir` checks the folder
before any work, so that a folder that cannot be written is one line at the start.

One rule for every output: confidences and probabilities are rounded to
:data:`ser.timeline.DIGITS` decimals (:data:`DIGITS`), a file's and a timeline's alike; a text
line is the terminal's (:func:`ser.writers.text_line`); an error names its file once
(:func:`error_line`), and its ``error`` field in JSON and CSV is that same line.
"""
from __future__ import annotations

import csv
import errno
import json
import math
import os
import re
from pathlib import Path
from typing import Iterable, Mapping

from ser import files
from ser import timeline as tl
from ser import writers
from ser.console import from_csv_cell
from ser.writers import get_writer

DIGITS = tl.DIGITS          # decimals of confidences and probabilities, in every result file
BATCH_STEM = "predictions"
TIMELINE_PREFIX = "timeline_"
OutputError = files.OutputError
# the formats and the wording of errors are ser.writers'; their names here, as before
FORMATS, DEFAULT_FORMAT = writers.FORMATS, writers.DEFAULT_FORMAT
drop_library_name, error_reason, error_line = (writers.drop_library_name, writers.error_reason,
                                               writers.error_line)


def check_output_dir(folder: str | os.PathLike) -> Path:
    """The output folder, made if missing and checked writable with room, before any work.

    Raises
    ------
    OutputError
        One line naming the folder and the reason (not a folder, read-only, permission
        denied, full).
    """
    if not isinstance(folder, (str, os.PathLike)) or str(folder) == "":
        raise TypeError(f"folder must be a path, got {folder!r}")
    return files.check_writable(folder, what="output folder")


# --------------------------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------------------------
def predictions_path(folder: str | os.PathLike, fmt: str) -> Path:
    """``folder/predictions.<ext>`` (``.csv``, ``.jsonl``, ``.txt``: the format's
    :attr:`~ser.writers.ResultWriter.extension`)."""
    return Path(folder) / f"{BATCH_STEM}{get_writer(fmt).extension}"


def _clean_stem(stem: str) -> str:
    """A file-name-safe stem: no separators or control characters, no leading dot."""
    s = re.sub(r"[\x00-\x1f/\\:]+", "_", stem).strip().lstrip(".")
    return s or "audio"


def unique_stems(paths: Iterable[str | os.PathLike]) -> dict[str, str]:
    """A distinct output stem for every input path, in order.

    The stem is the file's own (``talk.flac`` -> ``talk``); files of the same stem in
    different folders get their folder's name in front (``Actor_01_talk``), and any that
    still collide a counter (``talk-2``).
    """
    paths = [str(p) for p in paths]
    base = {p: _clean_stem(Path(p).stem) for p in paths}
    counts: dict[str, int] = {}
    for s in base.values():
        counts[s] = counts.get(s, 0) + 1
    out: dict[str, str] = {}
    used: set[str] = set()
    for p in paths:
        if p in out:
            continue
        s = base[p]
        if counts[s] > 1 and Path(p).parent.name:
            s = _clean_stem(f"{Path(p).parent.name}_{s}")
        cand, n = s, 1
        while cand in used:
            n += 1
            cand = f"{s}-{n}"
        used.add(cand)
        out[p] = cand
    return out


def timeline_paths(folder: str | os.PathLike, stem: str, fmt: str, *,
                   plot: bool = True) -> list[Path]:
    """The files :func:`write_timeline` writes: ``timeline_<stem>.<ext>`` (and ``.png``)."""
    base = Path(folder) / f"{TIMELINE_PREFIX}{_clean_stem(stem)}"
    out = [base.with_name(base.name + get_writer(fmt).extension)]
    if plot:
        out.append(base.with_name(base.name + ".png"))
    return out


# --------------------------------------------------------------------------------------------
# Batch predictions
# --------------------------------------------------------------------------------------------
def write_predictions(rows: Iterable[Mapping], folder: str | os.PathLike, fmt: str = "csv",
                      *, top: int = 3) -> Path:
    """Write a batch's results to ``folder/predictions.<ext>`` atomically; returns the path.

    Parameters
    ----------
    rows : iterable of mappings
        One per input, in order, as ``live_predictions.py --json`` prints them:
        ``{"file", "emotion", "confidence", "probabilities"}`` or ``{"file", "error"}``.
    folder : path-like
        Made if missing.
    fmt : str
        A format of :data:`ser.writers.WRITERS`: ``csv``: columns ``file, emotion,
        confidence, <labels...>, error``; ``json``: JSON lines, the rows as given; ``txt``: the
        terminal's lines (``FILE: emotion p  (...)``, ``FILE: uncertain: emotion p  (...)``,
        ``FILE: error: reason``: the file named once).
    top : int
        ``txt``: how many emotions a line names.
    """
    return get_writer(fmt).write_predictions(rows, predictions_path(folder, fmt), top=top)


def read_predictions(path: str | os.PathLike) -> list[dict]:
    """The rows of a ``predictions.csv`` or ``.jsonl`` file, as :func:`write_predictions`
    was given them (CSV numbers back as floats)."""
    rows, labels = _read_rows(path, "read_predictions", first_label=3)
    if labels is None:
        return rows
    for d in rows:
        d["file"], d["error"] = from_csv_cell(d["file"]), from_csv_cell(d["error"])
    return [{"file": d["file"], "error": d["error"]} if d["error"] else
            {"file": d["file"], "emotion": d["emotion"], "confidence": float(d["confidence"]),
             "probabilities": {k: float(d[k]) for k in labels if d[k] != ""}} for d in rows]


def _read_rows(path: str | os.PathLike, who: str, *, first_label: int
               ) -> tuple[list[dict], list[str] | None]:
    """A results file's rows: from JSON lines the objects (and ``None``), from a CSV the rows
    as column -> text (and the emotion columns, ``first_label`` to the last but one)."""
    path = Path(path)
    if path.suffix == writers.JsonLinesWriter.extension:
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
                if line.strip()], None
    if path.suffix != writers.CsvWriter.extension:
        raise ValueError(f"{path}: {who} reads .csv or .jsonl files")
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        head = next(reader)
        return [dict(zip(head, row)) for row in reader], head[first_label:-1]


# --------------------------------------------------------------------------------------------
# Timelines
# --------------------------------------------------------------------------------------------
def write_timeline(records: Iterable, folder: str | os.PathLike, stem: str, fmt: str = "csv",
                   *, duration: float, regions: Iterable[tuple[float, float]],
                   source: str | None = None, plot: bool = True,
                   model: str | None = None) -> list[Path]:
    """Write one recording's timeline: ``timeline_<stem>.<ext>`` and ``timeline_<stem>.png``.

    Parameters
    ----------
    records : iterable of :class:`ser.timeline.Segment` (or mappings with the same keys)
        The judged segments, in order.
    folder, stem : where, and the name between ``timeline_`` and the extension
        (see :func:`unique_stems`).
    fmt : str
        A format of :data:`ser.writers.WRITERS`: ``csv``: ``start, end, emotion, confidence,
        <labels...>, error``; ``json``: JSON lines, one object per segment with ``file`` (the
        ``source``) in front of :meth:`Segment.as_dict`'s keys; ``txt``: the terminal's table.
    duration : float
        Length of the recording (s), for the picture's x axis.
    regions : sequence of (start, end)
        The detector's speech regions (the picture shades the rest as no speech).
    source : str, optional
        The recording's name (a path, "microphone"), in the JSON rows, the text and the title.
    plot : bool
        Also write the PNG (skipped when ``duration`` is 0: nothing to draw).
    model : str, optional
        Named in the picture's title.

    Returns
    -------
    list of Path
        The files written, data first.

    Raises
    ------
    OutputError
        One line naming a file that cannot be written (the others may have been).
    """
    records = tl.check_records(records)
    data_path, *png = timeline_paths(folder, stem, fmt, plot=plot)
    get_writer(fmt).write_timeline(records, data_path, source=source)
    written = [data_path]
    if png and duration > 0:
        judged = sum(1 for r in records if r.probabilities)
        name = Path(str(source)).name if source is not None else stem
        by = f" by {Path(model).name}" if model else ""
        title = (f"{name}: emotion over time{by} ({judged} segments)\n"
                 f"bar height = probability, black edge = the segment's label, "
                 f"grey = no speech")
        try:
            tl.plot_timeline(records, duration, list(regions), png[0], title=title)
        except tl.TimelineError as e:       # the picture cannot be written: one line
            raise OutputError(errno.EIO, str(e)) from None
        written.append(png[0])
    return written


def _number(text: str) -> float | None:
    if text == "":
        return None
    v = float(text)
    return None if math.isnan(v) else v


def read_timeline(path: str | os.PathLike) -> list[dict]:
    """The segments of a ``timeline_<stem>.csv`` or ``.jsonl`` file, as mappings with the
    keys of :meth:`ser.timeline.Segment.as_dict` (``file`` too, from JSON lines); what
    :func:`ser.timeline.plot_timeline` and :func:`write_timeline` accept again."""
    rows, labels = _read_rows(path, "read_timeline", first_label=4)
    if labels is None:
        return rows
    return [{"start": float(d["start"]), "end": float(d["end"]),
             "emotion": d["emotion"] or None, "confidence": _number(d["confidence"]),
             "probabilities": {k: float(d[k]) for k in labels if d[k] != ""},
             "error": from_csv_cell(d["error"]) or None} for d in rows]
