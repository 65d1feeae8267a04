"""The data a training sees and its splits: the evaluation protocols."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ser.corpora import (
    CORPUS_TABLE,
    EMOTIONS,
    FAMILIES,
    corpus,
    family_emotions,
    parse_subset,
)
from ser.errors import SerError
from ser.normalization import speaker_normalize
from ser.paths import FEATURES_DIR
from ser.store import aug_output_path, load_augmented, load_features, output_path

PROTOCOLS = ("original", "random", "speaker", "corpus")
TEST_SIZE = 0.33        # the original's split (original and random protocols)
VAL_SIZE = 0.1          # the random protocol's validation part, of its training part


class ProtocolError(SerError, ValueError):
    """The data cannot be used the way the protocol or the subset asks (no rows, one class,
    too few recordings or speakers to split); the message says what would do."""


@dataclass
class Dataset:
    X: np.ndarray            # (n, d) float32
    y: np.ndarray            # (n,) int
    meta: dict               # column arrays, see ser/store.py
    feature: str
    params: dict
    aug: np.ndarray | None = None   # (copies, n, d): augmented copies of the rows, or None
    source: Path | None = None      # the features file the rows come from (named in errors)

    def take(self, idx) -> "Dataset":
        return Dataset(self.X[idx], self.y[idx], {k: v[idx] for k, v in self.meta.items()},
                       self.feature, self.params,
                       None if self.aug is None else self.aug[:, idx], self.source)

    def speaker_names(self, actors) -> list[str]:
        """The names of ``actors`` (actor numbers) as the data gives them: a CSV corpus's
        ``speaker`` column (see :func:`ser.corpora.read_csv_corpus`), else the number."""
        names = self.meta.get("speaker")
        known = ({} if names is None else
                 dict(zip(self.meta["actor"].tolist(), names.tolist())))
        return [str(known.get(int(a), f"{int(a):02d}")) for a in actors]

    def _where(self) -> str:
        return f"{self.source}: " if self.source is not None else ""

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
        """Each actor's rows z-scored with that actor's own statistics (labels unused;
        :func:`ser.normalization.speaker_normalize`)."""
        X = speaker_normalize(self.X, self.meta["actor"])
        # each augmented copy of an actor is a voice and channel of its own
        aug = None if self.aug is None else np.stack(
            [speaker_normalize(a, self.meta["actor"]) for a in self.aug])
        return Dataset(X, self.y, self.meta, self.feature, self.params, aug, self.source)


def _csv_of(features_dir: Path) -> Path | None:
    """The CSV whose features ``features_dir`` holds: ``create_features.py --csv X.csv``
    writes to ``X_features/`` beside it."""
    name = features_dir.name
    if not name.endswith("_features"):
        return None
    csv = features_dir.parent / f"{name[:-len('_features')]}.csv"
    return csv if csv.is_file() else None


def _check_csv_features(features_dir: Path, feature: str, subset: str, augment: int):
    """For the features folder of a CSV corpus: a missing features file is named with the
    command that makes it (``create_features.py --csv ...``), which store's hint cannot know."""
    csv = _csv_of(features_dir)
    if csv is None and "csv" not in parse_subset(subset):
        return
    make = (f"python create_features.py --csv {csv}" if csv is not None else
            f"python create_features.py --csv <your CSV> --out {features_dir}")
    path = output_path(features_dir, feature)
    if not path.exists():
        raise FileNotFoundError(f"{path}: features not found (run: {make} --feature {feature})")
    aug = aug_output_path(features_dir, feature)
    if augment > 0 and not aug.exists():
        raise FileNotFoundError(f"{aug}: augmented copies not found (run: {make} --feature "
                                f"{feature} --augment {augment})")


def load_dataset(feature: str, subset: str, *, features_dir=FEATURES_DIR,
                 augment: int = 0) -> Dataset:
    """The rows of ``features_<feature>.joblib`` that belong to ``subset``, with the first
    ``augment`` augmented copies of each row (``features_<feature>_aug.joblib``).

    Raises
    ------
    FileNotFoundError
        The features file (or its augmented copies) is missing; the line says how to make it.
    ProtocolError
        The subset has no rows, or a single class.
    """
    features_dir = Path(features_dir)
    _check_csv_features(features_dir, feature, subset, augment)
    d = load_features(feature, features_dir=features_dir)
    aug = None
    if augment > 0:
        aug = load_augmented(feature, features_dir=features_dir, copies=augment,
                             paths=d["meta"]["path"])
    corpora = parse_subset(subset)
    keep = np.isin(d["meta"]["corpus"], corpora)
    source = output_path(features_dir, feature)
    ds = Dataset(d["X"], d["y"], d["meta"], feature, d["params"], aug, source).take(
        np.flatnonzero(keep))
    if len(ds) == 0:
        present = set(d["meta"]["corpus"].tolist())
        words = [c.subset for c in CORPUS_TABLE if c.name in present]
        raise ProtocolError(f"{source}: subset {subset!r} has no rows in the {feature} "
                            f"features (corpora present: {', '.join(sorted(present))}; e.g. "
                            f"--subset {'+'.join(words)})")
    if len(np.unique(ds.y)) < 2:
        raise ProtocolError(f"{source}: subset {subset!r} has a single class "
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


def split_original(ds: Dataset) -> list[Fold]:
    """The original project's split: a fixed third to test (always ``random_state`` 42),
    used as the validation part too."""
    from sklearn.model_selection import train_test_split
    tr, te = train_test_split(np.arange(len(ds)), test_size=TEST_SIZE, random_state=42)
    return [Fold(tr, te, te, "split", test_is_val=True)]


def smallest_random_corpus(n_emotions: int, val_size: float = VAL_SIZE) -> int:
    """The fewest recordings :func:`split_random` can split with ``n_emotions`` emotions: its
    stratified validation part (``val_size`` of the training part, sized as scikit-learn
    sizes it: rounded up) must hold each emotion once, and so must what is left to train on."""
    n = n_emotions
    while True:
        n_train = n - math.ceil(TEST_SIZE * n)
        n_val = math.ceil(val_size * n_train)
        if n_val >= n_emotions and n_train - n_val >= n_emotions:
            return n
        n += 1


def _check_random_split(ds: Dataset, train: np.ndarray, val_size: float):
    """Refuse, in one line naming the smallest usable corpus, a training part that the
    stratified validation split cannot divide (scikit-learn's own error names its test_size)."""
    classes, counts = np.unique(ds.y[train], return_counts=True)
    n_val = math.ceil(val_size * len(train))
    if n_val >= len(classes) and len(train) - n_val >= len(classes) and counts.min() >= 2:
        return
    n_emotions = len(np.unique(ds.y))
    need = smallest_random_corpus(n_emotions, val_size)
    if counts.min() >= 2:
        raise ProtocolError(
            f"{ds._where()}{len(ds)} recordings are too few for --protocol random: with "
            f"{n_emotions} emotions it needs at least {need} (about "
            f"{math.ceil(need / n_emotions)} of each), as its validation part ({val_size:.0%} "
            f"of the {1 - TEST_SIZE:.0%} it trains on) must hold every emotion; use "
            f"--protocol original (the test part as validation) or speaker (whole speakers "
            f"held out)")
    rare = ", ".join(EMOTIONS[int(c)] for c in classes[counts < 2])
    raise ProtocolError(
        f"{ds._where()}too few recordings of {rare} for --protocol random: fewer than 2 fall "
        f"in the part it trains on ({1 - TEST_SIZE:.0%}, drawn at random), and its validation "
        f"split needs 2 of each emotion there; record more (with {n_emotions} emotions: at "
        f"least {need}, about {math.ceil(need / n_emotions)} of each) or use --protocol "
        f"original or speaker")


def split_random(ds: Dataset, seed: int = 42, val_size: float = VAL_SIZE) -> list[Fold]:
    """The original's split, validation carved (stratified) from its training part.

    Raises
    ------
    ProtocolError
        Too few recordings to carve a stratified validation part (:func:`_check_random_split`).
    """
    from sklearn.model_selection import train_test_split
    tr, te = train_test_split(np.arange(len(ds)), test_size=TEST_SIZE, random_state=42)
    _check_random_split(ds, tr, val_size)
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
        raise ProtocolError(
            f"{ds._where()}{len(pool)} speakers are too few for {k} folds of the speaker "
            f"protocol: each fold holds out whole speakers of "
            f"{' or '.join(c.name for c in CORPUS_TABLE if c.speaker_folds)}, so it needs at "
            f"least {k} (--folds sets the number)")
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
        raise ProtocolError(f"{ds._where()}corpus protocol needs rows of {train_corpus} and of "
                            f"another corpus (use --subset speech+song+tess)")
    others = "+".join(f for f in FAMILIES if f != train_corpus and f in set(family.tolist()))
    actors = ds.meta["actor"][train_idx]
    rng = np.random.default_rng(seed)
    if len(np.unique(actors)) > n_val_actors:
        val_actors = rng.choice(np.unique(actors), size=n_val_actors, replace=False)
        is_val = np.isin(actors, val_actors)
    else:   # two speakers only: hold out a random 10% of the files
        is_val = rng.random(len(train_idx)) < 0.1
    return [Fold(train_idx[~is_val], train_idx[is_val], test_idx, f"{train_corpus}->{others}")]


def make_folds(ds: Dataset, protocol: str, seed: int, *, k: int = 5,
               train_corpus: str = "ravdess") -> list[Fold]:
    if protocol == "original":
        return split_original(ds)
    if protocol == "random":
        return split_random(ds, seed)
    if protocol == "speaker":
        return split_speaker(ds, seed, k=k)
    if protocol == "corpus":
        return split_corpus(ds, seed, train_corpus=train_corpus)
    raise ValueError(f"unknown protocol {protocol!r} (choose from {', '.join(PROTOCOLS)})")
