"""Result-file formats: one writer class per format, behind one registry (as whisper's
``get_writer``).

A format is one subclass of :class:`ResultWriter` and one entry in :data:`WRITERS`:

* ``name``: what ``live_predictions.py --format`` takes (the registry's key);
* ``extension``: the files' ending (``predictions<ext>``, ``timeline_<stem><ext>``);
* ``help``: its words in ``--help`` (:func:`describe_formats`);
* :meth:`ResultWriter.predictions`: the text of a batch's file, given the checked rows
  (``{file, emotion, confidence, probabilities}`` or ``{file, error}``, as
  ``live_predictions.py --json`` prints them);
* :meth:`ResultWriter.timeline`: the text of one recording's timeline, given its
  :class:`ser.timeline.Segment` records.

The command line's ``--format`` choices (:data:`FORMATS`), :mod:`ser.output`'s file names and
its writers read the registry, so a new format needs nothing else. Every file is written
atomically (:func:`write_text`); confidences and probabilities are rounded to
:data:`ser.timeline.DIGITS` decimals by the records' ``as_dict``; a text line is the
terminal's (:func:`file_line`, :func:`ser.timeline.format_table`).
"""
from __future__ import annotations

import csv
import io
import json
import os
import re
from pathlib import Path
from typing import ClassVar, Iterable, Mapping

from ser import files
from ser import timeline as tl
from ser.console import csv_cell, printable
from ser.predict import Prediction

DEFAULT_FORMAT = "csv"


# --------------------------------------------------------------------------------------------
# Errors in result rows: the file named once
# --------------------------------------------------------------------------------------------
_SNDFILE_OPENING = re.compile(r"Error opening (?:'[^']*'|\"[^\"]*\"): ")


def drop_library_name(msg: str) -> str:
    """``msg`` without libsndfile's own naming of the file it could not open (``Error opening
    '<path>': ``), which repeats the path the message already starts with."""
    return _SNDFILE_OPENING.sub("", str(msg))


def error_reason(path: str | os.PathLike, msg: str) -> str:
    """An error about the file ``path`` without its own naming of the file: a leading
    ``<path>: `` (as given, or as :class:`~pathlib.Path` spells it: ``./a.wav`` is ``a.wav``)
    and libsndfile's ``Error opening '<path>': ``."""
    msg = str(msg)
    for name in dict.fromkeys((str(path), str(Path(path)))):
        if name and msg.startswith(f"{name}: "):
            msg = msg[len(name) + 2:]
            break
    return drop_library_name(msg)


def error_line(path: str | os.PathLike, msg: str) -> str:
    """The one line reporting ``msg`` about ``path``: ``<path>: <reason>``, the file named
    once, as the user gave it (stderr prints it after ``error: ``; JSON and CSV rows hold it
    as their ``error``)."""
    return f"{path}: {error_reason(path, msg)}"


# --------------------------------------------------------------------------------------------
# Rows and lines
# --------------------------------------------------------------------------------------------
def check_rows(rows) -> list[dict]:
    """A batch's rows as a list of dicts, each with a ``file`` and either ``emotion``,
    ``confidence`` and ``probabilities`` or an ``error``."""
    if isinstance(rows, (str, bytes, Mapping)) or not isinstance(rows, Iterable):
        raise TypeError(f"rows must be an iterable of mappings, got {type(rows).__name__}")
    out = []
    for i, r in enumerate(rows):
        if not isinstance(r, Mapping) or "file" not in r:
            raise ValueError(f"row {i}: expected a mapping with a 'file' key, got {r!r}")
        if "error" not in r and not {"emotion", "confidence", "probabilities"} <= set(r):
            raise ValueError(f"row {i}: needs emotion, confidence and probabilities, or error")
        out.append(dict(r))
    return out


def file_line(file: str | os.PathLike, p: Prediction, top: int = 3) -> str:
    """The terminal's line for a judged file: ``FILE: <Prediction.text>``."""
    return f"{printable(file)}: {p.text(top)}"


def text_line(row: Mapping, top: int = 3) -> str:
    """A result row as a line: :func:`file_line`, or ``FILE: error: <reason>`` (the file
    named once)."""
    if row.get("emotion") is None:
        reason = error_reason(row["file"], row.get("error") or "")
        return f"{printable(row['file'])}: error: {printable(reason)}"
    p = Prediction(row["emotion"], float(row["confidence"]), dict(row["probabilities"]))
    return file_line(row["file"], p, top)


def write_text(dest: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``dest`` atomically (:func:`ser.files.atomic_path`).

    Raises
    ------
    OutputError
        One line naming ``dest``: a folder, no space, read-only, permission denied.
    """
    with files.atomic_output(dest) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(dest)


# --------------------------------------------------------------------------------------------
# The formats
# --------------------------------------------------------------------------------------------
class ResultWriter:
    """One result-file format. A subclass sets ``name``, ``extension`` and ``help`` and
    renders the two kinds of result as text; writing (atomic, checked) is this class's."""
    name: ClassVar[str] = ""
    extension: ClassVar[str] = ""
    help: ClassVar[str] = ""

    def predictions(self, rows: list[dict], *, top: int = 3) -> str:
        """The text of a batch's file: ``rows`` as :func:`check_rows` returns them; ``top``:
        how many emotions a text line names."""
        raise NotImplementedError

    def timeline(self, segments: list[tl.Segment], *, source: str | None = None) -> str:
        """The text of one recording's timeline file; ``source`` names the recording (a path,
        "microphone") or is None."""
        raise NotImplementedError

    def write_predictions(self, rows: Iterable[Mapping], dest: str | os.PathLike, *,
                          top: int = 3) -> Path:
        """Check ``rows`` and write :meth:`predictions` to ``dest``; returns ``dest``."""
        return write_text(dest, self.predictions(check_rows(rows), top=top))

    def write_timeline(self, records: Iterable, dest: str | os.PathLike, *,
                       source: str | None = None) -> Path:
        """Check ``records`` (:class:`ser.timeline.Segment` or mappings with its keys) and
        write :meth:`timeline` to ``dest``; returns ``dest``."""
        return write_text(dest, self.timeline(tl.check_records(records), source=source))


def _table(lead: list[str], lead_cells: Iterable[list], rows: list[Mapping]) -> str:
    """CSV text: the ``lead`` columns, then ``emotion, confidence``, one column per label (the
    predictor's order) and ``error`` (text cells escaped for spreadsheets)."""
    labels = tl.label_order(r.get("probabilities") for r in rows)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([*lead, "emotion", "confidence", *labels, "error"])
    for cells, r in zip(lead_cells, rows):
        probs = r.get("probabilities") or {}
        w.writerow([*cells, r.get("emotion") or "",
                    "" if r.get("confidence") is None else r["confidence"],
                    *[probs.get(k, "") for k in labels], csv_cell(r.get("error") or "")])
    return buf.getvalue()


class CsvWriter(ResultWriter):
    """``file, emotion, confidence, <labels...>, error`` per input; ``start, end, emotion,
    confidence, <labels...>, error`` per segment."""
    name, extension = "csv", ".csv"
    help = "one row per file or segment, one column per emotion"

    def predictions(self, rows, *, top=3):
        return _table(["file"], ([csv_cell(r["file"])] for r in rows), rows)

    def timeline(self, segments, *, source=None):
        rows = [s.as_dict() for s in segments]
        return _table(["start", "end"], ([d["start"], d["end"]] for d in rows), rows)


class JsonLinesWriter(ResultWriter):
    """One JSON object a line: the rows as given; a segment's :meth:`~ser.timeline.Segment.
    as_dict` with ``file`` (the source) in front."""
    name, extension = "json", ".jsonl"
    help = "JSON lines, .jsonl: the --json objects"

    def predictions(self, rows, *, top=3):
        return "".join(json.dumps(r) + "\n" for r in rows)

    def timeline(self, segments, *, source=None):
        front = {} if source is None else {"file": str(source)}
        return "".join(json.dumps({**front, **s.as_dict()}) + "\n" for s in segments)


class TextWriter(ResultWriter):
    """The terminal's lines: ``FILE: emotion p  (...)`` (:func:`text_line`) per input; a
    ``# source`` line and :func:`ser.timeline.format_table` for a timeline."""
    name, extension = "txt", ".txt"
    help = "the terminal's lines"

    def predictions(self, rows, *, top=3):
        return "".join(text_line(r, top) + "\n" for r in rows)

    def timeline(self, segments, *, source=None):
        head = f"# {printable(source)}\n" if source is not None else ""
        return head + tl.format_table(segments) + "\n"


WRITERS: dict[str, type[ResultWriter]] = {
    CsvWriter.name: CsvWriter,
    JsonLinesWriter.name: JsonLinesWriter,
    TextWriter.name: TextWriter,
}
"""The formats by name; a new format is a class and an entry here."""
FORMATS = WRITERS.keys()
"""The formats' names, a live view of :data:`WRITERS` (``--format``'s choices)."""


def get_writer(fmt: str) -> ResultWriter:
    """The writer of format ``fmt`` (a name in :data:`WRITERS`).

    Raises
    ------
    ValueError
        ``fmt`` is not a registered format.
    """
    cls = WRITERS.get(fmt) if isinstance(fmt, str) else None
    if cls is None:
        raise ValueError(f"unknown format {fmt!r} (choose from {', '.join(WRITERS)})")
    return cls()


def describe_formats() -> str:
    """The formats in words, for ``--format``'s help: ``csv (...), json (...) or txt (...)``."""
    words = [f"{name} ({cls.help})" if cls.help else name for name, cls in WRITERS.items()]
    return ", ".join(words[:-1]) + " or " + words[-1] if len(words) > 1 else "".join(words)
