"""What a training run leaves in its reports folder: plots, classification reports, the results
table (``media/`` for the shipped recipes, the run's own folder for an experiment: see
:mod:`ser.recipes`)."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from ser.calibration import ece, reliability
from ser.corpora import EMOTIONS, N_CLASSES
from ser.files import atomic_path, write_json
from ser.protocols import PROTOCOLS

RESULT_KEY = ("model", "protocol", "subset", "feature", "adaptation", "augmentation",
              "ensemble", "train_corpus", "test_corpus")
_STARTED = time.localtime()
RUN = {"run": f"{time.strftime('%Y%m%d-%H%M%S', _STARTED)}-{os.getpid()}",
       "made": time.strftime("%Y-%m-%d %H:%M", _STARTED)}
"""This process's run: every record, plot and report it writes names it, so that media/ tells
fresh results from those of earlier runs."""


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _savefig(fig, path: Path):
    fig.text(0.99, 0.005, f"run {RUN['run']}, {RUN['made']}", ha="right", va="bottom",
             fontsize=6, color="0.45")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip("."), dpi=110, bbox_inches="tight")
    _plt().close(fig)


def plot_history(hist: dict, key: str, path: Path, title: str):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(range(1, len(hist[key]) + 1), hist[key], label="train")
    if f"val_{key}" in hist:
        ax.plot(range(1, len(hist[f"val_{key}"]) + 1), hist[f"val_{key}"], label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel(key)
    ax.set_title(title, fontsize=9)
    ax.legend()
    _savefig(fig, path)


def plot_confusion(y_true, y_pred, path: Path, title: str):
    from sklearn.metrics import confusion_matrix
    plt = _plt()
    cm = confusion_matrix(y_true, y_pred, labels=range(N_CLASSES))
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    im = ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(N_CLASSES), EMOTIONS, rotation=45, ha="right")
    ax.set_yticks(range(N_CLASSES), EMOTIONS)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(N_CLASSES):
        for j in range(N_CLASSES):
            if cm[i, j]:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if cm[i, j] > cm.max() / 2 else "black")
    fig.colorbar(im)
    ax.set_title(title, fontsize=9)
    _savefig(fig, path)


def classification_report_text(y_true, y_pred, title: str) -> str:
    from sklearn.metrics import classification_report
    labels = sorted(set(np.unique(y_true).tolist()) | set(np.unique(y_pred).tolist()))
    return title + f"\n(run {RUN['run']}, {RUN['made']})\n\n" + classification_report(
        y_true, y_pred, labels=labels, target_names=[EMOTIONS[i] for i in labels],
        digits=3, zero_division=0)


def write_report(text: str, media: Path, stem: str):
    with atomic_path(media / f"{stem}.txt") as tmp:
        tmp.write_text(text)
    plt = _plt()
    fig = plt.figure(figsize=(7, 0.22 * text.count("\n") + 0.6))
    fig.text(0.01, 0.99, text, family="monospace", fontsize=9, va="top")
    _savefig(fig, media / f"{stem}.png")


def plot_comparison(histories: dict, path: Path, title: str):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, hist in histories.items():
        key = "val_accuracy" if "val_accuracy" in hist else "accuracy"
        ax.plot(range(1, len(hist[key]) + 1), hist[key], label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy")
    ax.set_title(title, fontsize=9)
    ax.legend()
    _savefig(fig, path)


def update_results(path: Path, records: list[dict]) -> list[dict]:
    """Replace records with the same key (model/protocol/subset/feature/...), keep others;
    the new ones carry this :data:`RUN`."""
    old = []
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except json.JSONDecodeError:
            raise ValueError(f"{path}: not valid JSON; move it away to start a new table")
    records = [{**r, **RUN} for r in records]
    key = lambda r: tuple(r.get(k) for k in RESULT_KEY)
    new_keys = {key(r) for r in records}
    merged = [r for r in old if key(r) not in new_keys] + records
    write_json(path, merged)
    return merged


def results_markdown(records: list[dict]) -> str:
    cols = ["model", "protocol", "subset", "feature", "adaptation", "augmentation",
            "ensemble", "accuracy", "uar",
            "macro_f1", "weighted_f1", "uar_restricted", "uar_8way", "epochs",
            "ece", "ece_calibrated", "seconds_per_epoch", "train_seconds", "made"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]

    def fmt(r, c):
        v = r.get(c)
        if v is None:
            return ""
        if c == "uar" and r.get("uar_std") is not None:
            return f"{v:.3f} ± {r['uar_std']:.3f}"
        if c == "protocol" and r.get("test_set_as_validation"):
            return f"{v} (test-set-as-validation)"
        if c == "protocol" and r.get("train_corpus"):
            return f"{v} ({r['train_corpus']}→{r['test_corpus']})"
        if isinstance(v, float):
            return f"{v:.3f}" if c not in ("train_seconds", "epochs") else f"{v:.1f}"
        return str(v)
    order = {p: i for i, p in enumerate(PROTOCOLS)}
    for r in sorted(records, key=lambda r: (order.get(r["protocol"], 9), r["subset"],
                                            r["feature"], r["model"])):
        lines.append("| " + " | ".join(fmt(r, c) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def write_model_reports(o: dict, media: Path, prefix: str, tag: str):
    h = o["histories"][0]
    plot_history(h, "loss", media / f"{prefix}loss.png", f"loss: {tag}")
    plot_history(h, "accuracy", media / f"{prefix}accuracy.png", f"accuracy: {tag}")
    plot_confusion(o["y_true"], o["y_pred"], media / f"{prefix}confusion_matrix.png", tag)
    write_report(classification_report_text(o["y_true"], o["y_pred"], tag), media,
                 f"{prefix}classification_report")
    if o.get("calibrated") is not None:
        plot_reliability(o["y_true"], o["proba"], o["calibrated"],
                         media / f"{prefix}reliability.png", tag)


def plot_reliability(y_true, proba, calibrated, path: Path, title: str):
    """The reliability diagram of the test predictions before and after temperature scaling
    (accuracy against confidence per bin; the diagonal is a calibrated model)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--", label="calibrated")
    for p, name, style in ((proba, "model", "o-"), (calibrated, "temperature-scaled", "s-")):
        conf, acc, count = reliability(p, y_true)
        keep = count > 0
        ax.plot(conf[keep], acc[keep], style, ms=4,
                label=f"{name} (ECE {ece(p, y_true):.3f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (top probability)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"reliability: {title}", fontsize=9)
    ax.legend(loc="upper left", fontsize=8)
    _savefig(fig, path)
