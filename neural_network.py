#!/usr/bin/env python
"""Step 3: train and compare the Keras models on the .joblib features; save the model.

Protocols (named in every output):

- ``original``  the original project's procedure: random 67/33 split (random_state=42) and the
  test set passed as validation data for every epoch (test-set-as-validation: optimistic).
- ``random``    the same split, validation carved from the training part, early stopping with
  the best weights restored, the test set used once at the end.
- ``speaker``   whole RAVDESS actors held out (actor-group k-fold); TESS speakers always in
  training; validation actors carved from the training actors; UAR per fold, mean +- std.
- ``corpus``    train on one corpus, test on the other (RAVDESS actors 01-20 -> TESS, and the
  reverse as a stress test); UAR restricted to the test corpus's classes and 8-way.

Results go to ``media/`` (plots, classification report, ``results.json`` and ``results.md``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

import ser_common as C
from ser import files as ser_files

C.quiet_tensorflow()

SUBSET_CORPORA = {"speech": "ravdess_speech", "song": "ravdess_song", "tess": "tess"}
PROTOCOLS = ("original", "random", "speaker", "corpus")
RESULT_KEY = ("model", "protocol", "subset", "feature", "adaptation", "augmentation",
              "ensemble", "train_corpus", "test_corpus")


# --------------------------------------------------------------------------------------------
# Models: one function each, registered by name. Adding a model = one decorated function.
# --------------------------------------------------------------------------------------------
MODELS: dict = {}


def register(name):
    def deco(fn):
        MODELS[name] = fn
        return fn
    return deco


def _layers():
    import keras
    return keras, keras.layers


@register("basic_cnn")
def basic_cnn(input_shape, n_classes=C.N_CLASSES):
    """Conv1D(64, 5) - Dropout - Flatten - Dense(softmax)."""
    keras, L = _layers()
    return keras.Sequential([keras.Input(input_shape),
                             L.Conv1D(64, 5, padding="same", activation="relu"),
                             L.Dropout(0.2), L.Flatten(),
                             L.Dense(n_classes, activation="softmax")], name="basic_cnn")


def _improved_blocks(L):
    return [L.Conv1D(128, 3, padding="same", activation="relu"), L.Dropout(0.2),
            L.MaxPooling1D(2),
            L.Conv1D(128, 4, padding="same", activation="relu"), L.Dropout(0.2)]


@register("improved_cnn")
def improved_cnn(input_shape, n_classes=C.N_CLASSES):
    """Two Conv1D(128) blocks with dropout and pooling, Flatten, Dense(softmax)."""
    keras, L = _layers()
    return keras.Sequential([keras.Input(input_shape), *_improved_blocks(L), L.Flatten(),
                             L.Dense(n_classes, activation="softmax")], name="improved_cnn")


@register("cnn_gru")
def cnn_gru(input_shape, n_classes=C.N_CLASSES):
    """The improved CNN's two conv blocks, then GRU(128), Dense(softmax)."""
    keras, L = _layers()
    return keras.Sequential([keras.Input(input_shape), *_improved_blocks(L), L.GRU(128),
                             L.Dense(n_classes, activation="softmax")], name="cnn_gru")


@register("lstm")
def lstm(input_shape, n_classes=C.N_CLASSES):
    """LSTM(128, sequences) - Dropout - LSTM(64) - Dropout - Dense(softmax)."""
    keras, L = _layers()
    return keras.Sequential([keras.Input(input_shape), L.LSTM(128, return_sequences=True),
                             L.Dropout(0.2), L.LSTM(64), L.Dropout(0.2),
                             L.Dense(n_classes, activation="softmax")], name="lstm")


@register("mlp")
def mlp(input_shape, n_classes=C.N_CLASSES):
    """Beyond the original: an MLP for the pooled-statistics features (``--feature stats``)."""
    keras, L = _layers()
    return keras.Sequential([keras.Input(input_shape), L.Flatten(), L.Dropout(0.2),
                             L.Dense(256, activation="relu"), L.Dropout(0.4),
                             L.Dense(128, activation="relu"), L.Dropout(0.4),
                             L.Dense(n_classes, activation="softmax")], name="mlp")


ORIGINAL_MODELS = ("basic_cnn", "improved_cnn", "cnn_gru", "lstm")


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------
@dataclass
class Dataset:
    X: np.ndarray            # (n, d) float32
    y: np.ndarray            # (n,) int
    meta: dict               # column arrays, see create_features.py
    feature: str
    params: dict
    aug: np.ndarray | None = None   # (copies, n, d): augmented copies of the rows, or None

    def take(self, idx) -> "Dataset":
        return Dataset(self.X[idx], self.y[idx], {k: v[idx] for k, v in self.meta.items()},
                       self.feature, self.params,
                       None if self.aug is None else self.aug[:, idx])

    @property
    def copies(self) -> int:
        return 0 if self.aug is None else int(self.aug.shape[0])

    def training_rows(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The rows a model trains on for the row indices ``idx``: the originals, then each
        augmented copy of the same rows. Returns ``(X, y, source)``, ``source`` being the
        index of the original row each training row comes from: augmentation happens after
        the split and only ever adds copies of training rows."""
        idx = np.asarray(idx, dtype=np.int64)
        parts = [self.X[idx]] + ([] if self.aug is None else list(self.aug[:, idx]))
        source = np.tile(idx, len(parts))
        return np.concatenate(parts).astype(np.float32), self.y[source], source

    def __len__(self):
        return len(self.y)

    def speaker_normalized(self) -> "Dataset":
        """Each actor's rows z-scored with that actor's own statistics (labels unused)."""
        X = C.speaker_normalize(self.X, self.meta["actor"])
        # each augmented copy of an actor is a voice and channel of its own
        aug = None if self.aug is None else np.stack(
            [C.speaker_normalize(a, self.meta["actor"]) for a in self.aug])
        return Dataset(X, self.y, self.meta, self.feature, self.params, aug)


def parse_subset(subset: str) -> list[str]:
    """``song+tess`` -> ``["ravdess_song", "tess"]``; errors name the bad part."""
    parts = [p.strip().lower() for p in subset.split("+") if p.strip()]
    bad = [p for p in parts if p not in SUBSET_CORPORA]
    if not parts or bad:
        raise ValueError(f"subset {subset!r}: unknown part(s) {bad or subset!r}; join any of "
                         f"{', '.join(SUBSET_CORPORA)} with '+', e.g. song+tess")
    return [SUBSET_CORPORA[p] for p in dict.fromkeys(parts)]


def load_dataset(feature: str, subset: str, *, features_dir=C.FEATURES_DIR,
                 augment: int = 0) -> Dataset:
    """The rows of ``features_<feature>.joblib`` that belong to ``subset``, with the first
    ``augment`` augmented copies of each row (``features_<feature>_aug.joblib``)."""
    from create_features import load_augmented, load_features
    d = load_features(feature, features_dir=features_dir)
    aug = None
    if augment > 0:
        aug = load_augmented(feature, features_dir=features_dir, copies=augment,
                             paths=d["meta"]["path"])
    corpora = parse_subset(subset)
    keep = np.isin(d["meta"]["corpus"], corpora)
    ds = Dataset(d["X"], d["y"], d["meta"], feature, d["params"], aug).take(
        np.flatnonzero(keep))
    if len(ds) == 0:
        raise ValueError(f"subset {subset!r} has no rows in the {feature} features "
                         f"(corpora present: {sorted(set(d['meta']['corpus']))})")
    if len(np.unique(ds.y)) < 2:
        raise ValueError(f"subset {subset!r} has a single class "
                         f"({C.EMOTIONS[int(ds.y[0])]}); nothing to learn")
    return ds


# --------------------------------------------------------------------------------------------
# Splits (index arrays into a Dataset). Each returns a list of folds.
# --------------------------------------------------------------------------------------------
@dataclass
class Fold:
    train: np.ndarray
    val: np.ndarray | None
    test: np.ndarray
    name: str = "fold1"
    test_is_val: bool = False
    info: dict = field(default_factory=dict)


def split_original(ds: Dataset, seed: int = 42) -> list[Fold]:
    from sklearn.model_selection import train_test_split
    tr, te = train_test_split(np.arange(len(ds)), test_size=0.33, random_state=42)
    return [Fold(tr, te, te, "split", test_is_val=True)]


def split_random(ds: Dataset, seed: int = 42, val_size: float = 0.1) -> list[Fold]:
    from sklearn.model_selection import train_test_split
    tr, te = train_test_split(np.arange(len(ds)), test_size=0.33, random_state=42)
    tr, va = train_test_split(tr, test_size=val_size, random_state=seed, stratify=ds.y[tr])
    return [Fold(tr, va, te, "split")]


def split_speaker(ds: Dataset, seed: int = 42, k: int = 5, n_val_actors: int = 2) -> list[Fold]:
    """Actor-group k-fold over the RAVDESS actors; TESS (actors 25/26) always trains.

    Validation is ``n_val_actors`` whole actors drawn from each fold's training actors.
    """
    actors = ds.meta["actor"]
    is_tess = np.isin(actors, list(C.TESS_SPEAKERS))
    ravdess = np.array(sorted(set(actors[~is_tess].tolist())))
    if len(ravdess) < k:
        raise ValueError(f"speaker protocol needs at least {k} RAVDESS actors, the data has "
                         f"{len(ravdess)}")
    rng = np.random.default_rng(seed)
    groups = np.array_split(ravdess, k)   # consecutive actors: balanced male/female per fold
    folds = []
    for i, test_actors in enumerate(groups):
        rest = np.setdiff1d(ravdess, test_actors)
        val_actors = np.sort(rng.choice(rest, size=min(n_val_actors, len(rest) - 1),
                                        replace=False))
        te = np.flatnonzero(np.isin(actors, test_actors))
        va = np.flatnonzero(np.isin(actors, val_actors))
        tr = np.flatnonzero(~np.isin(actors, np.concatenate([test_actors, val_actors])))
        folds.append(Fold(tr, va, te, f"fold{i + 1}",
                          info={"test_actors": test_actors.tolist(),
                                "val_actors": val_actors.tolist()}))
    return folds


def split_corpus(ds: Dataset, seed: int = 42, train_corpus: str = "ravdess",
                 n_val_actors: int = 2) -> list[Fold]:
    """Train on one corpus, test on all of the other; validation from the training corpus."""
    tess = ds.meta["corpus"] == "tess"
    if train_corpus == "ravdess":
        train_idx, test_idx = np.flatnonzero(~tess), np.flatnonzero(tess)
    elif train_corpus == "tess":   # TESS has no "calm": test on the 7 shared classes
        train_idx = np.flatnonzero(tess)
        test_idx = np.flatnonzero(~tess & (ds.y != C.EMOTIONS.index("calm")))
    else:
        raise ValueError(f"train corpus {train_corpus!r} is not ravdess or tess")
    if len(train_idx) == 0 or len(test_idx) == 0:
        raise ValueError("corpus protocol needs both RAVDESS and TESS rows "
                         "(use --subset speech+song+tess)")
    actors = ds.meta["actor"][train_idx]
    rng = np.random.default_rng(seed)
    if train_corpus == "ravdess":
        val_actors = rng.choice(np.unique(actors), size=n_val_actors, replace=False)
        is_val = np.isin(actors, val_actors)
    else:   # two speakers only: hold out a random 10% of TESS words' files
        is_val = rng.random(len(train_idx)) < 0.1
    return [Fold(train_idx[~is_val], train_idx[is_val], test_idx,
                 f"{train_corpus}->{'tess' if train_corpus == 'ravdess' else 'ravdess'}")]


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------
@dataclass
class TrainConfig:
    epochs: int = 150
    batch_size: int = 16
    learning_rate: float = 0.001
    patience: int = 10
    seed: int = 42
    norm: str = "none"          # none | global
    augment: int = 0            # augmented copies of the training rows (create_features.py)
    ensemble: int = 1           # members trained apart (seeds seed, seed+1, ...) and averaged
    verbose: int = 0


def fit_normalization(X: np.ndarray, norm: str) -> dict | None:
    if norm == "none":
        return None
    if norm == "global":
        mean = X.mean(axis=0)
        std = X.std(axis=0)
        std[std < 1e-8] = 1.0
        return {"mean": mean.tolist(), "std": std.tolist()}
    raise ValueError(f"unknown normalisation {norm!r} (none or global)")


def compile_model(model, lr: float):
    import keras
    model.compile(optimizer=keras.optimizers.RMSprop(learning_rate=lr),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def ensemble_of(members: list, input_shape: tuple):
    """One Keras model whose output is the mean of the members' class probabilities."""
    import keras
    inp = keras.Input(input_shape)
    outs = [keras.Model(m.inputs[0], m.outputs[0], name=f"member{i + 1}")(inp)
            for i, m in enumerate(members)]
    return keras.Model(inp, keras.layers.Average(name="average")(outs),
                       name=f"{members[0].name}_x{len(members)}")


def build_model(model_name: str, input_shape: tuple, members: int = 1):
    """An untrained ``model_name`` (or an ensemble of ``members`` of them)."""
    if members == 1:
        return MODELS[model_name](input_shape)
    return ensemble_of([MODELS[model_name](input_shape) for _ in range(members)], input_shape)


def train_one(model_name: str, ds: Dataset, fold: Fold, cfg: TrainConfig, *,
              epochs_fixed: bool = False):
    """Train ``model_name`` on ``fold``; returns (model, history dict, norm, seconds).

    With ``cfg.ensemble`` = N > 1, N models are trained apart (seeds ``cfg.seed`` + 0..N-1,
    each with its own early stopping) and returned as one averaging model
    (:func:`ensemble_of`); the history is the first member's, its ``best_epoch`` the median
    of the members'.
    """
    import keras
    if cfg.ensemble > 1:
        members, hists, seconds = [], [], 0.0
        for i in range(cfg.ensemble):
            one = replace(cfg, seed=cfg.seed + i, ensemble=1)
            m, h, norm, sec = train_one(model_name, ds, fold, one, epochs_fixed=epochs_fixed)
            members.append(m)
            hists.append(h)
            seconds += sec
        hist = dict(hists[0])
        hist["member_best_epochs"] = [h["best_epoch"] for h in hists]
        hist["best_epoch"] = int(np.median(hist["member_best_epochs"]))
        return ensemble_of(members, tuple(members[0].input_shape[1:])), hist, norm, seconds
    keras.utils.set_random_seed(cfg.seed)
    Xtr, ytr, _ = ds.training_rows(fold.train)
    norm = fit_normalization(Xtr, cfg.norm)
    meta = {"normalization": norm, "input_shape": [ds.X.shape[1], 1]}
    Xtr = C.model_input(Xtr, meta)
    model = compile_model(MODELS[model_name](tuple(meta["input_shape"])), cfg.learning_rate)
    callbacks = []
    val = None
    if fold.val is not None and len(fold.val):
        val = (C.model_input(ds.X[fold.val], meta), ds.y[fold.val])
        if not fold.test_is_val and not epochs_fixed:
            callbacks.append(keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=cfg.patience, restore_best_weights=True,
                start_from_epoch=5))
    t0 = time.perf_counter()
    h = model.fit(Xtr, ytr, batch_size=cfg.batch_size, epochs=cfg.epochs,
                  validation_data=val, callbacks=callbacks, verbose=cfg.verbose, shuffle=True)
    seconds = time.perf_counter() - t0
    hist = {k: [float(v) for v in vals] for k, vals in h.history.items()}
    best_epoch = len(hist["loss"])
    if callbacks and callbacks[0].stopped_epoch > 0:
        best_epoch = int(np.argmin(hist["val_loss"])) + 1
    hist["best_epoch"] = best_epoch
    return model, hist, norm, seconds


def predict_proba(model, X: np.ndarray, norm: dict | None) -> np.ndarray:
    meta = {"normalization": norm, "input_shape": [X.shape[1], 1]}
    return np.asarray(model.predict(C.model_input(X, meta), batch_size=512, verbose=0))


def metrics(y_true, y_pred, labels=None) -> dict:
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score
    return {"accuracy": float(accuracy_score(y_true, y_pred)),
            "uar": float(balanced_accuracy_score(y_true, y_pred)),
            "macro_f1": float(f1_score(y_true, y_pred, average="macro", labels=labels,
                                       zero_division=0)),
            "weighted_f1": float(f1_score(y_true, y_pred, average="weighted", labels=labels,
                                          zero_division=0))}


def corpus_uars(y_true, proba) -> dict:
    """UAR restricted to the classes the test set has (argmax over them) and 8-way."""
    from sklearn.metrics import balanced_accuracy_score
    present = np.unique(y_true)
    restricted = present[np.argmax(proba[:, present], axis=1)]
    return {"uar_restricted": float(balanced_accuracy_score(y_true, restricted)),
            "uar_8way": float(balanced_accuracy_score(y_true, np.argmax(proba, axis=1)))}


# --------------------------------------------------------------------------------------------
# Reports
# --------------------------------------------------------------------------------------------
def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _savefig(fig, path: Path):
    with C.atomic_path(path) as tmp:
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
    cm = confusion_matrix(y_true, y_pred, labels=range(C.N_CLASSES))
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    im = ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(C.N_CLASSES), C.EMOTIONS, rotation=45, ha="right")
    ax.set_yticks(range(C.N_CLASSES), C.EMOTIONS)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(C.N_CLASSES):
        for j in range(C.N_CLASSES):
            if cm[i, j]:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if cm[i, j] > cm.max() / 2 else "black")
    fig.colorbar(im)
    ax.set_title(title, fontsize=9)
    _savefig(fig, path)


def classification_report_text(y_true, y_pred, title: str) -> str:
    from sklearn.metrics import classification_report
    labels = sorted(set(np.unique(y_true).tolist()) | set(np.unique(y_pred).tolist()))
    return title + "\n\n" + classification_report(
        y_true, y_pred, labels=labels, target_names=[C.EMOTIONS[i] for i in labels],
        digits=3, zero_division=0)


def write_report(text: str, media: Path, stem: str):
    with C.atomic_path(media / f"{stem}.txt") as tmp:
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
    """Replace records with the same key (model/protocol/subset/feature/...), keep others."""
    old = []
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except json.JSONDecodeError:
            raise ValueError(f"{path}: not valid JSON; move it away to start a new table")
    key = lambda r: tuple(r.get(k) for k in RESULT_KEY)
    new_keys = {key(r) for r in records}
    merged = [r for r in old if key(r) not in new_keys] + records
    C.write_json(path, merged)
    return merged


def results_markdown(records: list[dict]) -> str:
    cols = ["model", "protocol", "subset", "feature", "adaptation", "augmentation",
            "ensemble", "accuracy", "uar",
            "macro_f1", "weighted_f1", "uar_restricted", "uar_8way", "epochs",
            "seconds_per_epoch", "train_seconds"]
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


# --------------------------------------------------------------------------------------------
# Running a comparison
# --------------------------------------------------------------------------------------------
SPLITTERS = {"original": split_original, "random": split_random, "speaker": split_speaker}


def make_folds(ds: Dataset, protocol: str, seed: int, *, k: int = 5,
               train_corpus: str = "ravdess") -> list[Fold]:
    if protocol == "speaker":
        return split_speaker(ds, seed, k=k)
    if protocol == "corpus":
        return split_corpus(ds, seed, train_corpus=train_corpus)
    if protocol not in SPLITTERS:
        raise ValueError(f"unknown protocol {protocol!r} (choose from {', '.join(PROTOCOLS)})")
    return SPLITTERS[protocol](ds, seed)


def _adapt(ds: Dataset, cfg: TrainConfig) -> tuple[Dataset, TrainConfig, str]:
    """The data and configuration the folds train on, and the adaptation's name."""
    adaptation = "speaker" if cfg.norm == "speaker" else "none"
    if adaptation == "speaker":
        # every actor lies in one part of a speaker/corpus fold: statistics come from that
        # actor's own unlabelled rows only
        ds = ds.speaker_normalized()
        cfg = replace(cfg, norm="none")
    return ds, cfg, adaptation


def _fold_result(model_name: str, ds: Dataset, fold: Fold, cfg: TrainConfig, protocol: str):
    """Train and test one fold: ``((metrics, history, y_true, y_pred, epochs, seconds), model,
    norm)``."""
    model, hist, norm, s = train_one(model_name, ds, fold, cfg)
    proba = predict_proba(model, ds.X[fold.test], norm)
    pred = np.argmax(proba, axis=1)
    m = metrics(ds.y[fold.test], pred)
    if protocol == "corpus":
        m.update(corpus_uars(ds.y[fold.test], proba))
    return (m, hist, ds.y[fold.test], pred, len(hist["loss"]), s), model, norm


def _fold_task(model_name: str, ds: Dataset, fold: Fold, cfg: TrainConfig, protocol: str,
               weights: bool = False) -> tuple:
    """One training of a comparison as a task for another process (a Dask worker): the
    6-tuple of :func:`_fold_result` without the Keras model, plus ``(norm, the model's
    weights)`` if ``weights``. Seeded by ``cfg.seed`` (train_one): the same wherever it runs."""
    out, model, norm = _fold_result(model_name, ds, fold, cfg, protocol)
    return (*out, norm, model.get_weights()) if weights else out


def _fold_task_isolated(*args) -> tuple:
    """:func:`_fold_task` in a child process of the Dask worker that runs this (one per worker
    thread, reused: TensorFlow is imported once per worker).

    A Dask worker runs a task in a thread beside its event loop, and that loop draws from
    Python's global ``random`` (heartbeat jitter, connection back-off) while Keras draws its
    default layer seeds from the same generator (``keras.random.SeedGenerator``); in the
    worker's own process a seeded training would depend on the timing of heartbeats. In the
    child the training thread is alone, as in a local run: the results are the local run's.
    """
    from joblib.externals.loky import get_reusable_executor
    try:
        from distributed import get_worker
        n = get_worker().state.nthreads
    except (ImportError, ValueError):
        n = 1
    return get_reusable_executor(max_workers=n, initializer=_exit_with_parent).submit(
        _fold_task, *args).result()


def _exit_with_parent():
    """In a child process of a Dask worker: exit soon after that worker dies (say, killed)
    instead of finishing a training whose result nobody will collect."""
    import threading
    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(1)
    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


def _cluster_folds(models: list[str], ds: Dataset, folds: list[Fold], cfg: TrainConfig,
                   protocol: str, scheduler: str, progress: bool = True) -> dict:
    """Every (model, fold) training as a task on the Dask cluster at ``scheduler`` (joblib's
    dask backend); returns, per model, the fold results as :func:`_fold_result` does (the
    last fold's model rebuilt from its weights, for saving; ``None`` for the others)."""
    import joblib
    from tqdm import tqdm
    import neural_network as NN   # tasks by reference to the importable module
    from create_features import dask_backend
    ds, cfg, _ = _adapt(ds, cfg)
    ds = NN.Dataset(ds.X, ds.y, ds.meta, ds.feature, ds.params, ds.aug)
    cfg = NN.TrainConfig(**cfg.__dict__)
    folds = [NN.Fold(**f.__dict__) for f in folds]
    jobs = [(name, i) for name in models for i in range(len(folds))]
    last = len(folds) - 1
    with dask_backend(scheduler, modules=("ser_common", "neural_network"), scatter=[ds]):
        gen = joblib.Parallel(n_jobs=-1, batch_size=1, pre_dispatch="all",
                              return_as="generator")(
            joblib.delayed(NN._fold_task_isolated)(name, ds, folds[i], cfg, protocol,
                                                   i == last)
            for name, i in jobs)
        results = list(tqdm(gen, total=len(jobs), desc=f"{protocol} on {scheduler}",
                            unit="training", disable=not progress))
    out = {name: [] for name in models}
    for (name, i), r in zip(jobs, results):
        model = norm = None
        if i == last:
            norm, weights = r[6:]
            model = build_model(name, (int(ds.X.shape[1]), 1), cfg.ensemble)
            model.set_weights(weights)
        out[name].append((tuple(r[:6]), model, norm))
    return out


def evaluate_model(model_name: str, ds: Dataset, folds: list[Fold], cfg: TrainConfig, *,
                   protocol: str, subset: str, progress: bool = True,
                   fold_results: list | None = None) -> dict:
    """Train ``model_name`` on every fold; returns the record plus pooled predictions.

    ``fold_results``: the folds' results computed elsewhere (:func:`_cluster_folds`).
    """
    from tqdm import tqdm
    ds, cfg, adaptation = _adapt(ds, cfg)
    per_fold, hists, y_all, p_all, epochs, secs, uars_c = [], [], [], [], [], [], []
    last_model, last_norm = None, None
    for i, fold in enumerate(tqdm(folds, desc=f"{model_name} [{protocol}]", unit="fold",
                                  disable=not progress or len(folds) == 1
                                  or fold_results is not None)):
        (m, hist, y_true, pred, n_epochs, s), model, norm = (
            _fold_result(model_name, ds, fold, cfg, protocol) if fold_results is None
            else fold_results[i])
        if protocol == "corpus":
            uars_c.append(m)
        per_fold.append(m)
        hists.append(hist)
        y_all.append(y_true)
        p_all.append(pred)
        epochs.append(n_epochs)
        secs.append(s)
        last_model, last_norm = model, norm
    agg = {k: float(np.mean([m[k] for m in per_fold])) for k in per_fold[0]}
    rec = {"model": model_name, "protocol": protocol, "subset": subset, "feature": ds.feature,
           "adaptation": adaptation, "augmentation": ds.copies, "ensemble": cfg.ensemble,
           **agg,
           "epochs": float(np.mean(epochs)), "train_seconds": float(np.sum(secs)),
           "seconds_per_epoch": float(np.sum(secs) / max(1, np.sum(epochs) * cfg.ensemble)),
           "seed": cfg.seed, "batch_size": cfg.batch_size,
           "norm": "speaker" if adaptation == "speaker" else cfg.norm,
           "n_train": int(np.mean([len(f.train) for f in folds])),
           "n_test": int(np.sum([len(f.test) for f in folds])),
           "versions": C.library_versions()}
    if protocol == "original":
        rec["test_set_as_validation"] = True
    if protocol == "speaker":
        rec["uar_std"] = float(np.std([m["uar"] for m in per_fold]))
        rec["folds"] = [{"name": f.name, **f.info, **m} for f, m in zip(folds, per_fold)]
    if protocol == "corpus":
        f = folds[0]
        rec["train_corpus"], rec["test_corpus"] = f.name.split("->")
    return {"record": rec, "histories": hists, "y_true": np.concatenate(y_all),
            "y_pred": np.concatenate(p_all), "model": last_model, "norm": last_norm}


def run(*, models: list[str], protocol: str, subset: str, feature: str, cfg: TrainConfig,
        features_dir=C.FEATURES_DIR, media_dir=C.MEDIA_DIR, k: int = 5,
        train_corpus: str = "ravdess", progress: bool = True,
        scheduler: str | None = None) -> list[dict]:
    """Train and evaluate ``models`` under ``protocol``; write the reports; return results.

    With ``scheduler`` (a Dask scheduler address) the trainings run on that cluster.
    """
    ds = load_dataset(feature, subset, features_dir=features_dir, augment=cfg.augment)
    folds = make_folds(ds, protocol, cfg.seed, k=k, train_corpus=train_corpus)
    media_dir = Path(media_dir)
    media_dir.mkdir(parents=True, exist_ok=True)
    outs = {}
    remote = (_cluster_folds(models, ds, folds, cfg, protocol, scheduler, progress)
              if scheduler else {})
    for name in models:
        outs[name] = evaluate_model(name, ds, folds, cfg, protocol=protocol, subset=subset,
                                    progress=progress, fold_results=remote.get(name))
        r = outs[name]["record"]
        print(f"{name:13s} {protocol:8s} {subset:18s} {feature:8s} acc {r['accuracy']:.3f} "
              f"UAR {r['uar']:.3f}" + (f" ± {r['uar_std']:.3f}" if "uar_std" in r else "")
              + (f" restricted {r['uar_restricted']:.3f} 8-way {r['uar_8way']:.3f}"
                 if protocol == "corpus" else "")
              + f"  {r['epochs']:.0f} epochs, {r['train_seconds']:.0f} s")
    label = f"{protocol}" + (" (test-set-as-validation)" if protocol == "original" else "")
    for name, o in outs.items():
        tag = f"{name}, {label}, {subset}, {feature}"
        _write_model_reports(o, media_dir, f"{name}_", tag)
    primary = "improved_cnn" if "improved_cnn" in outs else models[0]
    o = outs[primary]
    _write_model_reports(o, media_dir, "", f"{primary}, {label}, {subset}, {feature}")
    if len(outs) > 1:   # a comparison: kept until the next comparison run
        plot_comparison({n: o["histories"][0] for n, o in outs.items()},
                        media_dir / "model_comparison.png",
                        f"validation accuracy per epoch: {label}, {subset}, {feature}"
                        + (f" ({folds[0].name})" if len(folds) > 1 else ""))
    records = update_results(media_dir / "results.json", [o["record"] for o in outs.values()])
    with C.atomic_path(media_dir / "results.md") as tmp:
        tmp.write_text(results_markdown(records))
    return [o["record"] for o in outs.values()], outs


def _write_model_reports(o: dict, media: Path, prefix: str, tag: str):
    h = o["histories"][0]
    plot_history(h, "loss", media / f"{prefix}loss.png", f"loss: {tag}")
    plot_history(h, "accuracy", media / f"{prefix}accuracy.png", f"accuracy: {tag}")
    plot_confusion(o["y_true"], o["y_pred"], media / f"{prefix}confusion_matrix.png", tag)
    write_report(classification_report_text(o["y_true"], o["y_pred"], tag), media,
                 f"{prefix}classification_report")


def train_final(model_name: str, *, subset: str, feature: str, cfg: TrainConfig,
                out: Path, features_dir=C.FEATURES_DIR, epochs: int | None = None,
                protocol_record: dict | None = None) -> dict:
    """Train on every row of ``subset`` (no test part) and save the model with its sidecar.

    The number of epochs is ``epochs`` if given, else found first by early stopping on two
    held-out RAVDESS actors (the run is then repeated on all rows for that many epochs).
    """
    ds = load_dataset(feature, subset, features_dir=features_dir, augment=cfg.augment)
    adaptation, prior = "none", None
    if cfg.norm == "speaker":
        # the model sees each speaker z-scored with their own statistics; the population
        # statistics ship as the fallback and as the prior for a user's few utterances
        adaptation, prior = "speaker", fit_normalization(ds.X, "global")
        ds = ds.speaker_normalized()
        cfg = replace(cfg, norm="none")
    if epochs is None:
        # median best epoch of early stopping on whole held-out actors, over 3 draws
        n_actors = len(set(ds.meta["actor"].tolist()))
        folds = split_speaker(ds, cfg.seed, k=max(2, min(5, n_actors)))[:3]
        best = []
        for f in folds:
            probe = Fold(np.concatenate([f.train, f.test]), f.val, f.val, "probe")
            # one model per probe (an ensemble's members stop at about the same epoch)
            single = replace(cfg, ensemble=1)
            best.append(train_one(model_name, ds, probe, single)[1]["best_epoch"])
        epochs = int(np.median(best))
        print(f"{model_name}: {epochs} epochs (median of {best}, early stopping on held-out "
              f"actors {[f.info['val_actors'] for f in folds]})")
    fcfg = replace(cfg, epochs=int(epochs))
    everything = Fold(np.arange(len(ds)), None, np.arange(0), "all")
    model, hist, norm, secs = train_one(model_name, ds, everything, fcfg, epochs_fixed=True)
    corpora = sorted(set(ds.meta["corpus"].tolist()))
    sidecar = {"model": model_name, "labels": list(C.EMOTIONS), "feature": feature,
               "feature_params": C.feature_params(feature),
               "input_shape": [int(ds.X.shape[1]), 1],
               "normalization": prior if adaptation == "speaker" else norm,
               "adaptation": adaptation,
               **({"speaker_prior_weight": C.SPEAKER_PRIOR} if adaptation == "speaker" else {}),
               "trained_on": {"subset": subset, "corpora": corpora, "rows": int(len(ds)),
                              "actors": sorted(set(ds.meta["actor"].tolist()))},
               "training": {"epochs": int(epochs), "batch_size": cfg.batch_size,
                            "augment": cfg.augment, "ensemble": cfg.ensemble,
                            "learning_rate": cfg.learning_rate, "seed": cfg.seed,
                            "norm": "speaker" if adaptation == "speaker" else cfg.norm,
                            "seconds": round(secs, 1)},
               "protocol": "all data (no test part)",
               "metrics": protocol_record or {},
               "versions": C.library_versions()}
    kept = C.save_model(model, out, sidecar)
    print(f"saved {out} and {C.sidecar_path(out)} ({len(ds)} rows, {epochs} epochs, "
          f"{secs:.0f} s)" + (f"; the previous model is kept as {kept}" if kept else ""))
    return sidecar


def _protocol_records(media_dir: Path, model: str, subset: str, feature: str, norm: str,
                      augment: int, ensemble: int) -> dict:
    """The speaker- and corpus-protocol figures of this configuration that results.json has,
    by protocol (``speaker``, ``corpus ravdess->tess``, ...)."""
    path = Path(media_dir) / "results.json"
    if not path.exists():
        return {}
    adaptation = "speaker" if norm == "speaker" else "none"
    out = {}
    for r in json.loads(path.read_text()):
        if (r["model"], r["subset"], r["feature"], r.get("adaptation"),
                r.get("augmentation", 0), r.get("ensemble", 1)) != \
                (model, subset, feature, adaptation, augment, ensemble):
            continue
        if r["protocol"] == "speaker":
            out["speaker"] = {k: r[k] for k in ("uar", "uar_std", "accuracy", "macro_f1")}
        elif r["protocol"] == "corpus":
            out[f"corpus {r['train_corpus']}->{r['test_corpus']}"] = {
                k: r[k] for k in ("uar_restricted", "uar_8way")}
    return out


def save_trained(model, norm, ds: Dataset, name: str, out: Path, *, protocol: str,
                 subset: str, record: dict, cfg: TrainConfig):
    sidecar = {"model": name, "labels": list(C.EMOTIONS), "feature": ds.feature,
               "feature_params": C.feature_params(ds.feature),
               "input_shape": [int(ds.X.shape[1]), 1], "normalization": norm,
               "adaptation": "none",
               "trained_on": {"subset": subset, "rows": record["n_train"]},
               "training": {"batch_size": cfg.batch_size, "learning_rate": cfg.learning_rate,
                            "seed": cfg.seed, "norm": cfg.norm, "epochs": record["epochs"],
                            "augment": cfg.augment, "ensemble": cfg.ensemble},
               "protocol": protocol,
               "metrics": {k: record[k] for k in ("accuracy", "uar", "macro_f1", "weighted_f1")},
               "versions": C.library_versions()}
    kept = C.save_model(model, out, sidecar)
    print(f"saved {out} and {C.sidecar_path(out)}"
          + (f"; the previous model is kept as {kept}" if kept else ""))


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="improved_cnn", choices=[*MODELS, "all"],
                   help="model to train, or all to compare the original four "
                        "(default improved_cnn)")
    p.add_argument("--protocol", default="random", choices=PROTOCOLS,
                   help="evaluation protocol (default random)")
    p.add_argument("--subset", default=None,
                   help="corpora joined by '+': speech, song, tess (default song+tess for "
                        "original and random, speech+song+tess for speaker and corpus)")
    p.add_argument("--feature", default="mfcc", choices=C.FEATURE_SETS,
                   help="feature set from create_features.py (default mfcc)")
    p.add_argument("--epochs", type=int, default=150, help="maximum epochs (default 150)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="batch size (default 16 for the original protocol as the original "
                        "project, 64 otherwise: same results, 2-3x faster)")
    p.add_argument("--learning-rate", type=float, default=0.001,
                   help="RMSprop learning rate (default 0.001)")
    p.add_argument("--patience", type=int, default=10,
                   help="early-stopping patience in epochs on validation loss (default 10)")
    p.add_argument("--norm", default=None, choices=["none", "global", "speaker"],
                   help="feature standardisation: global (fitted on the training rows), "
                        "speaker (each speaker z-scored with the statistics of their own "
                        "unlabelled utterances: speaker adaptation) or none (default none for "
                        "the original protocol, global otherwise)")
    p.add_argument("--augment", type=int, default=0, metavar="N",
                   help="add N augmented copies of each training row (made by "
                        "create_features.py --augment N: other voices and microphones) to "
                        "the training part of every fold; validation and test rows stay "
                        "original (default 0)")
    p.add_argument("--ensemble", type=int, default=1, metavar="N",
                   help="train N models apart (seeds SEED..SEED+N-1) and average their "
                        "probabilities, saved as one Keras model (default 1)")
    p.add_argument("--folds", type=int, default=5,
                   help="actor groups of the speaker protocol (default 5)")
    p.add_argument("--train-corpus", default="both", choices=["ravdess", "tess", "both"],
                   help="corpus protocol direction: ravdess (->tess), tess (->ravdess) or "
                        "both (default)")
    p.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    p.add_argument("--all-data", action="store_true",
                   help="train the chosen model on every row of the subset (no test part) "
                        "and save it; the shipped model is made this way")
    p.add_argument("--save", type=Path, default=None,
                   help=f"where to save the model (default {C.DEFAULT_MODEL.relative_to(C.ROOT)}"
                        " for the improved CNN with the recipe's options, models/<model>.h5 "
                        "with --all-data; a run with other options goes to models/runs/ "
                        "instead, so that an experiment never replaces a shipped model). A "
                        "model that is replaced is kept under models/previous/")
    p.add_argument("--no-save", action="store_true", help="do not save any model")
    p.add_argument("--trust-features", action="store_true",
                   help="read .joblib feature files that this installation did not write (they "
                        "are pickles: loading one can run code; only for files from a source "
                        "you trust). Records them as trusted")
    p.add_argument("--features-dir", type=Path, default=C.FEATURES_DIR,
                   help="folder with the features_<set>.joblib files")
    p.add_argument("--media-dir", type=Path, default=C.MEDIA_DIR,
                   help="where plots and result tables go")
    p.add_argument("--quiet", action="store_true", help="no progress bars (there are none anyway when stderr is not a terminal)")
    from create_features import SCHEDULER_ENV, scheduler_default
    p.add_argument("--scheduler", default=scheduler_default(), metavar="ADDRESS",
                   help="run the trainings of the comparison (folds x models) on the Dask "
                        f"cluster of this scheduler (default ${SCHEDULER_ENV}); its workers "
                        "need this repository installed (make setup). --all-data trains here")
    return p


# the options that make a run the shipped recipe when they keep their defaults
RECIPE_OPTIONS = ("feature", "subset", "epochs", "batch_size", "learning_rate", "patience",
                  "norm", "augment", "ensemble", "seed", "features_dir")


def experimental_options(args, parser) -> list[str]:
    """The training options of ``args`` that differ from the shipped recipe (the defaults)."""
    return [f"--{k.replace('_', '-')} {getattr(args, k)}" for k in RECIPE_OPTIONS
            if getattr(args, k) != parser.get_default(k)]


def save_target(args, model: str, changed: list[str]) -> Path | None:
    """Where this run saves its model: ``--save``; else the default name, unless the run
    differs from the recipe (``changed``: see :func:`experimental_options`) of a shipped
    model of that name (then ``models/runs/``, so that an experiment never replaces a shipped
    model)."""
    if args.no_save:
        return None
    if args.save:
        return args.save
    default = C.DEFAULT_MODEL if model == "improved_cnn" else C.MODELS_DIR / f"{model}.h5"
    if model != "improved_cnn" and not args.all_data:
        return None
    if not changed:
        return default
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = C.MODELS_DIR / "runs" / f"{model}_{args.feature}_{args.protocol}_{stamp}.h5"
    print(f"this run differs from the shipped recipe ({', '.join(changed)}): its model goes "
          f"to {out.relative_to(C.ROOT) if out.is_relative_to(C.ROOT) else out}, not "
          f"{default.name} (--save PATH to choose)", file=sys.stderr)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    changed = experimental_options(args, parser)   # before the defaults that depend on others
    if args.trust_features:
        for f in Path(args.features_dir).glob("features_*.joblib"):
            ser_files.record_written(f)
    if args.subset is None:
        args.subset = ("song+tess" if args.protocol in ("original", "random")
                       and not args.all_data else "speech+song+tess")
    batch = args.batch_size or (16 if args.protocol == "original" else 64)
    norm = args.norm or ("none" if args.protocol == "original" else "global")
    cfg = TrainConfig(epochs=args.epochs, batch_size=batch, learning_rate=args.learning_rate,
                      patience=args.patience, seed=args.seed, norm=norm,
                      augment=args.augment, ensemble=args.ensemble)
    models = list(ORIGINAL_MODELS) if args.model == "all" else [args.model]
    try:
        save_to = None if len(models) != 1 else save_target(args, models[0], changed)
        # where the results go is checked before the training
        ser_files.check_writable(args.media_dir, what="--media-dir")
        if save_to is not None and (args.all_data or args.protocol in ("original", "random")):
            ser_files.check_writable(Path(save_to).parent, what="model folder")
        parse_subset(args.subset)
        if args.ensemble < 1 or args.augment < 0:
            raise ValueError(f"--ensemble must be >= 1 (got {args.ensemble}) and --augment "
                             f">= 0 (got {args.augment})")
        if args.all_data:
            if len(models) != 1:
                raise ValueError("--all-data trains one model: pass --model NAME")
            if save_to is None:
                raise ValueError("--all-data trains a model to save: drop --no-save")
            train_final(models[0], subset=args.subset, feature=args.feature, cfg=cfg,
                        out=save_to,
                        features_dir=args.features_dir,
                        epochs=args.epochs if args.epochs != 150 else None,
                        protocol_record=_protocol_records(args.media_dir, models[0],
                                                          args.subset, args.feature, cfg.norm,
                                                          cfg.augment, cfg.ensemble))
            return 0
        directions = (["ravdess", "tess"] if args.train_corpus == "both"
                      else [args.train_corpus])
        for direction in (directions if args.protocol == "corpus" else ["ravdess"]):
            records, outs = run(models=models, protocol=args.protocol, subset=args.subset,
                                feature=args.feature, cfg=cfg, features_dir=args.features_dir,
                                media_dir=args.media_dir, k=args.folds,
                                train_corpus=direction, progress=not args.quiet and sys.stderr.isatty(),
                                scheduler=args.scheduler)
        if save_to and args.protocol in ("original", "random") and len(models) == 1:
            o = outs[models[0]]
            ds = load_dataset(args.feature, args.subset, features_dir=args.features_dir)
            save_trained(o["model"], o["norm"], ds, models[0], save_to,
                         protocol=args.protocol, subset=args.subset, record=o["record"],
                         cfg=cfg)
    except (ValueError, ser_files.OutputError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:   # a disk that filled up or went read-only during the run
        print(f"error: {ser_files.describe_os_error(e, e.filename or args.media_dir)}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
