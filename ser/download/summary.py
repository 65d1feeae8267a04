"""The counts a run reports: per corpus, files placed, already present and skipped (with the
reasons), in one summary line."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from ser.download.classify import CORPORA

OTHER = "other"   # summary bucket for files that belong to no corpus


@dataclass
class Stats:
    placed: int = 0
    present: int = 0
    replaced: int = 0          # of ``placed``: an existing, differing file was replaced
    skipped: Counter = field(default_factory=Counter)   # reason -> count
    note: str = ""
    backup: str = ""           # where the replaced files were kept

    def line(self, name: str) -> str:
        n_skip = sum(self.skipped.values())
        if name == OTHER:
            s = f"other files: {n_skip} skipped"
        else:
            s = (f"{name}: {self.placed} placed, {self.present} already present, "
                 f"{n_skip} skipped")
        if n_skip:
            s += " (" + ", ".join(f"{n} {why}" for why, n in self.skipped.most_common()) + ")"
        if self.replaced:
            s += f", {self.replaced} replaced a differing file (the previous kept in " \
                 f"{self.backup})"
        if self.note:
            s += f" [{self.note}]"
        return s


class Summary:
    """Per-corpus counts of files placed / already present / skipped (with reasons)."""

    def __init__(self) -> None:
        self.stats: dict[str, Stats] = {c: Stats() for c in (*CORPORA, OTHER)}

    def __getitem__(self, name: str) -> Stats:
        return self.stats[name]

    def line(self) -> str:
        parts = [st.line(name) for name, st in self.stats.items()
                 if name != OTHER or st.placed or st.present or st.skipped]
        return "Summary: " + "; ".join(parts)
