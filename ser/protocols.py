"""The data a training sees and its splits: the evaluation protocols."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ser.adaptation import speaker_normalize
from ser.corpora import (
    CORPUS_TABLE,
    EMOTIONS,
    FAMILIES,
    corpus,
    family_emotions,
    parse_subset,
)
from ser.paths import FEATURES_DIR
from ser.store import load_augmented, load_features

PROTOCOLS = ("original", "random", "speaker", "corpus")


@dataclass
class Dataset:
    X: np.ndarray            # (n, d) float32
    y: np.ndarray            # (n,) int
    meta: dict               # column arrays, see ser/store.py
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
        X = speaker_normalize(self.X, self.meta["actor"])
        # each augmented copy of an actor is a voice and channel of its own
        aug = None if self.aug is None else np.stack(
            [speaker_normalize(a, self.meta["actor"]) for a in self.aug])
        return Dataset(X, self.y, self.meta, self.feature, self.params, aug)


def load_dataset(feature: str, subset: str, *, features_dir=FEATURES_DIR,
                 augment: int = 0) -> Dataset:
    """The rows of ``features_<feature>.joblib`` that belong to ``subset``, with the first
    ``augment`` augmented copies of each row (``features_<feature>_aug.joblib``)."""
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
                         f"({EMOTIONS[int(ds.y[0])]}); nothing to learn")
    return ds


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


def _column(ds: Dataset, attr: str) -> np.ndarray:
    """A property of each row's corpus (:data:`ser.corpora.CORPUS_TABLE`), as an array."""
    names = ds.meta["corpus"]
    values = {c: getattr(corpus(str(c)), attr) for c in np.unique(names)}
    return np.array([values[c] for c in names.tolist()]) if len(names) else np.array([])


def split_speaker(ds: Dataset, seed: int = 42, k: int = 5, n_val_actors: int = 2) -> list[Fold]:
    """Actor-group k-fold over the actors of the corpora with ``speaker_folds`` (RAVDESS); the
    others (TESS, two speakers) always train.

    Validation is ``n_val_actors`` whole actors drawn from each fold's training actors.
    """
    actors = ds.meta["actor"]
    held = _column(ds, "speaker_folds").astype(bool)
    pool = np.array(sorted(set(actors[held].tolist())))
    if len(pool) < k:
        raise ValueError(f"speaker protocol needs at least {k} actors of "
                         f"{' or '.join(c.name for c in CORPUS_TABLE if c.speaker_folds)}, the "
                         f"data has {len(pool)}")
    rng = np.random.default_rng(seed)
    groups = np.array_split(pool, k)   # consecutive actors: balanced male/female per fold
    folds = []
    for i, test_actors in enumerate(groups):
        rest = np.setdiff1d(pool, test_actors)
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
    """Train on one corpus family, test on the others (their rows of the classes the training
    family has: TESS has no "calm"); validation from the training family: ``n_val_actors``
    whole actors, or a random 10 % of its files when it has no more actors than that."""
    if train_corpus not in FAMILIES:
        raise ValueError(f"train corpus {train_corpus!r} is not one of {', '.join(FAMILIES)}")
    family = _column(ds, "family")
    known = [EMOTIONS.index(e) for e in family_emotions(train_corpus)]
    train_idx = np.flatnonzero(family == train_corpus)
    test_idx = np.flatnonzero((family != train_corpus) & np.isin(ds.y, known))
    if len(train_idx) == 0 or len(test_idx) == 0:
        raise ValueError(f"corpus protocol needs rows of {train_corpus} and of another corpus "
                         f"(use --subset speech+song+tess)")
    others = "+".join(f for f in FAMILIES if f != train_corpus and f in set(family.tolist()))
    actors = ds.meta["actor"][train_idx]
    rng = np.random.default_rng(seed)
    if len(np.unique(actors)) > n_val_actors:
        val_actors = rng.choice(np.unique(actors), size=n_val_actors, replace=False)
        is_val = np.isin(actors, val_actors)
    else:   # two speakers only: hold out a random 10% of the files
        is_val = rng.random(len(train_idx)) < 0.1
    return [Fold(train_idx[~is_val], train_idx[is_val], test_idx, f"{train_corpus}->{others}")]


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
