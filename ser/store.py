"""The feature files of step 2 (features_<set>.joblib): their layout, writing and the one loader."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ser import files as ser_files
from ser.augment import AUGMENT_VERSION
from ser.features import FEATURE_DIMS, feature_params
from ser.paths import FEATURES_DIR

META_FIELDS = ("path", "corpus", "actor", "vocal_channel", "intensity", "statement",
               "repetition")


def output_path(features_dir: Path, feature: str) -> Path:
    """Where the feature set ``feature`` is written."""
    return Path(features_dir) / f"features_{feature}.joblib"


def aug_output_path(features_dir: Path, feature: str) -> Path:
    """Where the augmented copies of ``feature`` are written."""
    return Path(features_dir) / f"features_{feature}_aug.joblib"


def output_bytes(n_files: int, feature_sets: list[str], augment: int) -> int:
    """Room the outputs need: their arrays, twice (a new file beside the old), plus a margin."""
    dims = sum(FEATURE_DIMS[f] for f in feature_sets)
    return 2 * 4 * n_files * dims * (1 + augment) + ser_files.MIN_FREE_BYTES


PREVIOUS_DIRNAME = ".previous"


def write_all(pending: list[tuple[dict, Path]]) -> list[Path]:
    """Write every output under a temporary name, then move them all into place; a failure
    (a full disk, a folder in the way) restores the previous outputs: never a partial set.
    A file replaced is kept as ``<folder>/.previous/<name>`` (the last one replaced; a hard
    link, so it costs no room), where a mistaken run cannot take it."""
    def temp(dest: Path, kind: str) -> Path:   # names clean_stale_tmp recognises
        return dest.with_name(f".{dest.name}.{os.getpid()}.{os.urandom(4).hex()}.{kind}")

    tmps: list[Path] = []
    backups: dict[Path, Path | None] = {}
    dest = pending[0][1]
    try:
        for data, dest in pending:
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmps.append(temp(dest, "tmp"))
            ser_files.dump_trusted(data, dest, tmp=tmps[-1])
        for tmp, (_, dest) in zip(tmps, pending):
            backup = None
            if dest.is_file():
                backup = temp(dest, "tmp.old")
                os.link(dest, backup)
            backups[dest] = backup
            os.replace(tmp, dest)
    except OSError as e:
        for done, backup in backups.items():      # undo the outputs already moved
            if backup is not None:
                os.replace(backup, done)
            elif done.is_file():
                done.unlink()
        raise ser_files.OutputError(e.errno, f"{ser_files.describe_os_error(e, dest)}; no "
                                    f"feature file was written or changed") from None
    else:
        for done, backup in backups.items():     # all in place: the old ones to .previous/
            if backup is not None:
                try:
                    keep = done.parent / PREVIOUS_DIRNAME
                    keep.mkdir(exist_ok=True)
                    os.replace(backup, keep / done.name)
                except OSError:
                    pass    # the new outputs are in place; the old one goes with its backup
    finally:
        for p in [*tmps, *(b for b in backups.values() if b is not None)]:
            p.unlink(missing_ok=True)
    return [dest for _, dest in pending]


def load_features(feature: str = "mfcc", *, features_dir: str | os.PathLike = FEATURES_DIR,
                  trust: bool = False) -> dict:
    """Read ``features_<feature>.joblib`` (written by :func:`extract`), with checks.

    Only a file this installation wrote is unpickled, unless ``trust`` (see ser/files.py).
    """
    path = output_path(Path(features_dir), feature)
    hint = f"re-create it: python create_features.py --feature {feature}"
    if not path.exists():
        raise FileNotFoundError(f"{path}: features not found (run: python create_features.py "
                                f"--feature {feature})")
    data = ser_files.load_trusted(path, trust=trust, hint=hint)
    if data.get("params") != feature_params(feature):
        raise ValueError(f"{path}: made with other feature parameters than this version's; "
                         f"re-run create_features.py")
    return data


def load_augmented(feature: str = "stats", *, features_dir: str | os.PathLike = FEATURES_DIR,
                   copies: int = 1, paths: np.ndarray | None = None,
                   trust: bool = False) -> np.ndarray:
    """The first ``copies`` augmented copies of ``feature``: shape (copies, n_files, dim),
    row-aligned with :func:`load_features` (checked against its ``paths`` if given)."""
    path = aug_output_path(Path(features_dir), feature)
    hint = f"run: python create_features.py --feature {feature} --augment {copies}"
    if not path.exists():
        raise FileNotFoundError(f"{path}: augmented copies not found ({hint})")
    data = ser_files.load_trusted(path, trust=trust, hint=hint)
    if (data.get("params") != feature_params(feature)
            or data.get("augment", {}).get("version") != AUGMENT_VERSION):
        raise ValueError(f"{path}: made with other feature or augmentation parameters than "
                         f"this version's ({hint})")
    if data["X"].shape[0] < copies:
        raise ValueError(f"{path}: has {data['X'].shape[0]} augmented copies, {copies} asked "
                         f"for ({hint})")
    if paths is not None and not np.array_equal(np.asarray(paths), data["path"]):
        raise ValueError(f"{path}: rows do not match features_{feature}.joblib (made from "
                         f"other files; {hint})")
    return data["X"][:copies]
