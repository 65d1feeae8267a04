"""The shipped recipes, in one table: the options each shipped model (or report) is made with.

``neural_network.py --recipe NAME`` stands for the options of ``NAME`` (options given beside it
win), and the Makefile's ``train`` target names its runs this way. A run *is* a shipped recipe
when its training options (:data:`TRAINING_OPTIONS`) are a recipe's: the options the recipe
names, every other training option at its default; the protocol, the folds and where the
trainings run do not count. Such a run writes its reports to ``media/`` and, with
``--all-data``, its model to the recipe's file. Any other run is an experiment: what it writes
goes to its own run folder under :data:`RUNS_DIR` (:func:`run_folder`), so that an experiment
never rewrites a tracked file.

The table is data only; reading a recipe's options belongs to the command line
(``neural_network.py``), which parses them with its own parser.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ser.paths import ADAPTIVE_MODEL, CNN_MODEL, MODELS_DIR, RECOMMENDED_MODEL

RUNS_DIR = MODELS_DIR / "runs"
"""Where the runs that are no shipped recipe put their reports and models, one folder each."""


@dataclass(frozen=True)
class Recipe:
    """One shipped recipe.

    Attributes
    ----------
    args : tuple of str
        The ``neural_network.py`` options it stands for (no ``--all-data``, no ``--save``).
    model : Path or None
        The file its ``--all-data`` run saves; None for a recipe that makes reports only.
    about : str
        One line for ``--help``.
    """

    args: tuple[str, ...]
    model: Path | None
    about: str


RECIPES: dict[str, Recipe] = {
    "cnn": Recipe(
        ("--model", "improved_cnn"), CNN_MODEL,
        "the original's improved CNN on 40 MFCC means (the original's reproduction)"),
    # everyday use: both feature sets through the speech front end (ser/frontend.py), trained
    # with 4 augmented copies (other voices, microphones, rooms, codecs, noise): docs/results.md
    # (4 against 2, 2026-12-06: validation UAR 0.724 / 0.730, corpus R->T 0.580 +- 0.003 /
    # 0.587 +- 0.034, noise flips on unseen actors 0.16 / 0.19: steadier, as good)
    "recommended": Recipe(
        ("--model", "mlp", "--ensemble", "5", "--feature", "stats_whisper", "--augment", "4"),
        RECOMMENDED_MODEL,
        "five MLPs, pooled statistics + Whisper tiny.en's encoder, 4 augmented copies"),
    # with 4 augmented copies, as the recommended model (4 against 2, 2026-12-06: validation UAR
    # 0.796 / 0.779, corpus R->T 0.686 / 0.675, 3 seeds each)
    "adaptive": Recipe(
        ("--model", "mlp", "--ensemble", "5", "--feature", "stats_whisper", "--augment", "4",
         "--norm", "speaker"), ADAPTIVE_MODEL,
        "the same features and copies, per-speaker normalisation (for --enrol and --stream)"),
    "comparison": Recipe(
        ("--model", "all"), None,
        "the original's four models compared (reports only)"),
}

TRAINING_OPTIONS = ("model", "feature", "subset", "epochs", "batch_size", "learning_rate",
                    "patience", "norm", "augment", "ensemble", "seed", "features_dir",
                    "exclude_actors")
"""The options (argparse destinations) that make a recipe; the others say how or where a run
happens (protocol, folds, jobs, scheduler, ...) or where its outputs go (save, media dir)."""


def differences(run: dict, recipe: dict) -> list[str]:
    """The training options where ``run`` differs from ``recipe`` (both: option -> value, as
    parsed), as ``--option value`` in :data:`TRAINING_OPTIONS` order; folders are compared
    resolved."""
    def same(a, b) -> bool:
        if isinstance(a, Path) and isinstance(b, Path):
            return a.resolve() == b.resolve()
        return a == b
    return [f"--{k.replace('_', '-')} {run[k]}" for k in TRAINING_OPTIONS
            if not same(run[k], recipe[k])]


def run_folder(model: str, feature: str, protocol: str, run_id: str, *,
               runs_dir: Path = RUNS_DIR) -> Path:
    """A new run folder ``<model>_<feature>_<protocol>_<run_id>`` under ``runs_dir`` (a
    suffix ``-2``, ``-3``, ... when that name is taken). Not created here: the run makes it
    when it first writes, so that a run that fails at once leaves nothing behind."""
    base = f"{model}_{feature}_{protocol}_{run_id}"
    out, n = Path(runs_dir) / base, 1
    while out.exists():
        n += 1
        out = Path(runs_dir) / f"{base}-{n}"
    return out
