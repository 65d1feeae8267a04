"""Step 2's work: every file's feature vectors, cached per file, and their augmented copies."""
from __future__ import annotations

import hashlib
import itertools
import os
import time
import zlib
from pathlib import Path

import numpy as np

from ser.errors import SerError
from ser import files as ser_files
from ser.audio import DEFAULT_MAX_SECONDS, AudioError, check_signal, load_audio
from ser.augment import AUGMENT_SPEED, AUGMENT_VERSION, augment, check_copy_level
from ser.cluster import run_tasks
from ser.corpora import (
    RavdessName,
    actor_dirs,
    corpus_of,
    parse_ravdess_name,
    read_csv_corpus,
)
from ser.features import (
    CACHED_FEATURES,
    FEATURE_DIMS,
    extract_features,
    feature_params,
    make_ready,
    params_hash,
    parts_of,
    set_vector,
)
from ser.files import clean_stale_tmp
from ser.paths import FEATURES_DIR
from ser.scan import scan_audio_files
from ser.store import aug_output_path, output_bytes, output_path, write_all

CACHE_DIRNAME = ".cache"


def base_sets(feature_sets: list[str]) -> list[str]:
    """The per-file sets to compute and cache (a composite set of
    :data:`COMPOSITE_SETS` is built from its parts). When one of them needs the
    BYOL-S encoder, its weights are checked here, once (one line if they are missing), rather
    than failing every file."""
    need = set()
    for f in feature_sets:
        need |= set(parts_of(f))
    bases = [f for f in CACHED_FEATURES if f in need]
    make_ready(bases)
    return bases


def _file_key(path: Path, rel: str) -> str:
    st = path.stat()
    return hashlib.sha1(f"{rel}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()


CACHE_SUFFIX = ".f32"   # float32 little-endian values, then their CRC-32 (4 bytes)


def _cache_file(cache_dir: Path, base: str, key: str) -> Path:
    params = feature_params(base)
    return cache_dir / f"{base}-{params_hash(params)}" / key[:2] / f"{key}{CACHE_SUFFIX}"


class NoRowsError(SerError, ValueError):
    """No file gave a feature row; ``skipped`` holds the one-line reason of every file."""

    def __init__(self, skipped: list[str], outputs: list[Path]):
        self.skipped = list(skipped)
        kept = ", ".join(str(o) for o in outputs if o.exists())
        super().__init__(f"no file gave features ({len(self.skipped)} skipped); nothing was "
                         f"written" + (f", {kept} left as it was" if kept else ""))


class BadCacheEntry(SerError, ValueError):
    """A cache entry that is damaged (wrong size, checksum, or values): recomputed."""


def _cache_read(path: Path, dim: int) -> np.ndarray:
    """One cached vector of ``dim`` values, checked (size, CRC-32, finite).

    Raises FileNotFoundError where there is none, :class:`BadCacheEntry` where it is damaged.
    """
    data = path.read_bytes()
    if len(data) != 4 * dim + 4:
        raise BadCacheEntry(f"{path}: {len(data)} bytes, {4 * dim + 4} expected")
    if zlib.crc32(data[:-4]) != int.from_bytes(data[-4:], "little"):
        raise BadCacheEntry(f"{path}: checksum mismatch")
    v = np.frombuffer(data, dtype="<f4", count=dim).astype(np.float32)
    if not np.all(np.isfinite(v)):
        raise BadCacheEntry(f"{path}: values are not finite")
    return v


def _cache_lookup(path: Path, dim: int, bad: list[str]) -> np.ndarray | None:
    """The cached vector, or ``None`` (missing, or damaged: then named in ``bad``)."""
    try:
        return _cache_read(path, dim)
    except FileNotFoundError:
        return None
    except BadCacheEntry as e:
        bad.append(str(e))
    except OSError as e:
        bad.append(f"{path}: {e.strerror or e}")
    return None


def _process(path: str, rel: str, todo: list[str], cache_dir: str | None,
             key: str | None = None, max_seconds: float | None = DEFAULT_MAX_SECONDS) -> tuple:
    """Worker: load one file (at most ``max_seconds`` long, judged from its header), compute
    the missing base sets, cache them (``key``: the file's cache key, as the parent computed
    it for the look-up; computed here when not given).

    Returns ``(rel, {set: vector}, None)`` or ``(rel, None, error message)``.
    """
    try:
        y = load_audio(path, max_seconds=max_seconds)
        check_signal(y, name=path)
        vecs = extract_features(y, sets=tuple(todo))
    except (AudioError, ValueError) as e:
        return rel, None, str(e)
    except Exception as e:   # a worker must never take the run down
        return rel, None, f"{path}: {type(e).__name__}: {e}"
    if cache_dir is not None:
        key = key or _file_key(Path(path), rel)
        for base, v in vecs.items():
            _cache_write(_cache_file(Path(cache_dir), base, key), v)
    return rel, vecs, None


_MADE_DIRS: set[str] = set()        # cache folders this process has made (or found)
_TMP_SEQ = itertools.count()


def _cache_write(dest: Path, v: np.ndarray) -> None:
    """One cached vector with its checksum, written atomically (a killed worker leaves no
    half file, only a temporary one that :func:`ser.files.clean_stale_tmp` removes: the same
    naming as :func:`ser.files.atomic_path`, ``.<name>.<pid>.<8 chars>.tmp<suffix>``).

    A few system calls per entry (create, write, close, rename): the folder is made once per
    process, and the file is created with mode 0666 minus the umask directly.
    """
    data = np.ascontiguousarray(v, dtype="<f4").tobytes()
    data += zlib.crc32(data).to_bytes(4, "little")
    parent, name = os.path.split(os.fspath(dest))
    if parent not in _MADE_DIRS:
        os.makedirs(parent, exist_ok=True)
        _MADE_DIRS.add(parent)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    while True:
        tmp = os.path.join(parent, f".{name}.{os.getpid()}.{next(_TMP_SEQ) % 16 ** 8:08x}"
                                   f".tmp{CACHE_SUFFIX}")
        try:
            fd = os.open(tmp, flags, 0o666)
            break
        except FileExistsError:      # left by a dead process of the same pid: another name
            continue
        except FileNotFoundError:    # the folder went away (a cache cleared meanwhile)
            _MADE_DIRS.discard(parent)
            os.makedirs(parent, exist_ok=True)
            _MADE_DIRS.add(parent)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.replace(tmp, dest)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _aug_cache_file(cache_dir: Path, base: str, key: str, copy: int) -> Path:
    params = feature_params(base)
    return (cache_dir / f"{base}-{params_hash(params)}-aug{AUGMENT_VERSION}-{copy}"
            / key[:2] / f"{key}{CACHE_SUFFIX}")


def _process_aug(path: str, rel: str, actor: int, todo: list[tuple[int, str]],
                 cache_dir: str | None, max_seconds: float | None = DEFAULT_MAX_SECONDS
                 ) -> tuple:
    """Worker: the missing (copy, base set) features of one file's augmented copies.

    Each copy stands or falls alone (a copy the gain made silent does not take the file's
    other copies with it), so the result does not depend on which copies were cached.
    Returns ``(rel, {(copy, set): vector}, [one-line message per failed copy])``.
    """
    out, errors = {}, []
    try:
        y = load_audio(path, max_seconds=max_seconds)
    except Exception as e:   # a worker must never take the run down
        return rel, out, [f"{path}: augmented copies: {e}"]
    for copy in sorted({c for c, _ in todo}):
        try:
            ya = augment(y, actor=actor, copy=copy, rel=rel)
            check_copy_level(ya)
            vecs = extract_features(ya, sets=tuple(b for c, b in todo if c == copy))
        except (AudioError, ValueError) as e:
            errors.append(f"{path}: augmented copy {copy}: {e}")
            continue
        except Exception as e:   # a worker must never take the run down
            errors.append(f"{path}: augmented copy {copy}: {type(e).__name__}: {e}")
            continue
        out.update({(copy, b): v for b, v in vecs.items()})
    if cache_dir is not None:
        key = _file_key(Path(path), rel)
        for (copy, base), v in out.items():
            _cache_write(_aug_cache_file(Path(cache_dir), base, key, copy), v)
    return rel, out, errors


def _batch_size(n_tasks: int, jobs: int) -> int:
    """Files per dispatch to a local worker: large enough that the round trips are a small
    part of the work (one file is 2-5 ms), small enough that every worker gets its share of
    the end of the run (about 16 batches per worker)."""
    workers = (os.cpu_count() or 1) if jobs < 0 else max(jobs, 1)
    return int(min(64, max(8, n_tasks // (16 * workers))))


def collect_files(features_dir: Path) -> tuple[list[tuple[Path, str, RavdessName]], list[str]]:
    """Audio files of every Actor_XX folder with their parsed names; unparseable ones listed."""
    files, problems = [], []
    for d in actor_dirs(features_dir):
        scan = scan_audio_files(d)
        # never dropped without a word: folders that cannot be read, files that cannot be looked
        # at (hidden entries and other extensions are left out quietly, as always)
        problems += [f"{q}: cannot read the folder ({why})" for q, why in scan.unreadable]
        problems += [f"{q}: {why}" for q, why in scan.left_out
                     if why.startswith(("cannot", "broken link"))]
        for p in scan.files:
            rel = p.relative_to(features_dir).as_posix()
            try:
                name = parse_ravdess_name(p)
                corpus_of(name, p)
                files.append((p, rel, name))
            except ValueError as e:
                problems.append(str(e))
    return files, problems


def _augmented(rows, originals: dict, bases: list[str], copies: int, cache_dir: Path | None,
               *, jobs: int, backend: str | None, scheduler: str | None, see: Path,
               progress: bool, bad: list[str], max_seconds: float | None
               ) -> tuple[dict, list[str], int]:
    """``{rel: {(copy, base set): vector}}`` for copies 1..``copies`` of every row (from the
    cache or computed), the one-line messages of the copies that failed (e.g. made silent by
    the gain: those rows keep their original features as the copy, so the arrays stay
    aligned), and the number of files whose copies were computed."""
    aug: dict[str, dict] = {}
    tasks = []
    wanted = [(c, b) for c in range(1, copies + 1) for b in bases]
    for path, rel, name in rows:
        have, todo = {}, list(wanted)
        if cache_dir is not None:
            key, todo = _file_key(path, rel), []
            for c, b in wanted:
                v = _cache_lookup(_aug_cache_file(cache_dir, b, key, c), FEATURE_DIMS[b], bad)
                if v is None:
                    todo.append((c, b))
                else:
                    have[c, b] = v
        aug[rel] = have
        if todo:
            tasks.append((str(path), rel, name.actor, todo,
                          str(cache_dir) if cache_dir is not None else None, max_seconds))
    failed = []
    for rel, vecs, errors in run_tasks(_process_aug, tasks, jobs=jobs, backend=backend,
                                        scheduler=scheduler, see=see, desc="augmented copies",
                                        progress=progress, single_threaded=True):
        failed += errors
        aug[rel].update(vecs)
    for _, rel, _ in rows:
        for c, b in wanted:
            aug[rel].setdefault((c, b), originals[rel][b])
    return aug, failed, len(tasks)


def extract(features_dir: str | os.PathLike = FEATURES_DIR, *,
            feature_sets: list[str] = ("mfcc",), jobs: int = -1, use_cache: bool = True,
            progress: bool = True, out_dir: str | os.PathLike | None = None,
            backend: str | None = None, scheduler: str | None = None,
            augment: int = 0, csv: str | os.PathLike | None = None,
            max_seconds: float | None = DEFAULT_MAX_SECONDS) -> dict:
    """Extract ``feature_sets`` for every file and write the ``.joblib`` outputs.

    The files are those of the ``Actor_XX`` folders under ``features_dir``, or with ``csv``
    those a CSV corpus lists (:func:`ser.corpora.read_csv_corpus`: its rows' speakers become
    actors 1000+, the ``speaker`` column of ``meta`` keeps their names; the per-file cache is
    then under ``out_dir``).

    With ``augment`` = N > 0, also N augmented copies of every file (:func:`augment`) go to
    ``features_<set>_aug.joblib``: ``X`` of shape (N, n_files, dim), row-aligned with
    ``features_<set>.joblib`` (same ``path`` order), for training folds only.

    A file longer than ``max_seconds`` (judged from its header before decoding) or whose
    header states a rate outside 4-384 kHz is skipped with a one-line reason.

    With ``scheduler`` (a Dask scheduler address) the files not in the cache are processed by
    that cluster's workers (joblib's ``dask`` backend); the outputs are the same.

    Returns
    -------
    dict
        ``files`` (rows written), ``computed`` (files actually processed this run),
        ``skipped`` (list of one-line messages), ``seconds``, ``outputs`` (paths).

    Raises
    ------
    NoRowsError
        Every file was skipped: nothing is written, the previous outputs stay as they were.
    """

    t0 = time.perf_counter()
    features_dir = Path(features_dir)
    if scheduler:   # workers have another working directory
        features_dir = features_dir.absolute()
    out_dir = Path(out_dir) if out_dir else features_dir
    feature_sets = list(feature_sets)
    for f in feature_sets:
        feature_params(f)  # raises on an unknown set before any work
    if augment < 0:
        raise ValueError(f"augment: the number of augmented copies must be >= 0, got {augment}")
    files, skipped, speaker, features_dir = _list_files(features_dir, csv, absolute=bool(
        scheduler))
    cache_dir = None
    if use_cache:
        cache_dir = (out_dir if csv is not None else features_dir) / CACHE_DIRNAME
    bases = base_sets(feature_sets)
    # where the work goes is checked before the work: one line, not a traceback at the end
    ser_files.check_writable(out_dir, what="--out folder",
                         need_bytes=output_bytes(len(files), feature_sets, augment))
    clean_stale_tmp(out_dir)
    if cache_dir is not None:
        ser_files.check_writable(cache_dir, what="cache folder")
        clean_stale_tmp(cache_dir, recursive=True)
    bad: list[str] = []
    results, tasks, keys = _from_cache(files, bases, cache_dir, bad, max_seconds=max_seconds)

    errors = _compute(tasks, results, keys, cache_dir, jobs=jobs, backend=backend,
                      scheduler=scheduler, see=features_dir, progress=progress)
    skipped += [errors[rel] for _, rel, _ in files if rel in errors]

    rows = [(p, rel, name) for p, rel, name in files if rel not in errors]
    if not rows:          # never replace a good features file with an empty one
        raise NoRowsError(skipped, [output_path(out_dir, f) for f in feature_sets])
    # (data, destination), written all together
    pending = [(_table(f, rows, results, speaker), output_path(out_dir, f))
               for f in feature_sets]
    n_augmented, fallbacks = 0, []
    if augment > 0:
        aug, fallbacks, n_augmented = _augmented(
            rows, results, bases, augment, cache_dir, jobs=jobs, backend=backend,
            scheduler=scheduler, see=features_dir, progress=progress, bad=bad,
            max_seconds=max_seconds)
        pending += [(_aug_table(f, rows, aug, augment), aug_output_path(out_dir, f))
                    for f in feature_sets]
    outputs = write_all(pending)
    return {"files": len(rows), "computed": len(tasks), "cached": len(files) - len(tasks),
            "augmented": n_augmented,
            "aug_fallbacks": fallbacks,
            "skipped": skipped, "bad_cache": bad,
            "seconds": time.perf_counter() - t0, "outputs": outputs}


def _list_files(features_dir: Path, csv: str | os.PathLike | None, *, absolute: bool
                ) -> tuple[list, list[str], dict[str, str], Path]:
    """The files to featurise: ``(path, rel, RavdessName)`` rows, the one-line reasons of those
    left out, the CSV's speaker name per ``rel``, and the folder the workers must see."""
    if csv is None:
        if not features_dir.is_dir():
            raise FileNotFoundError(f"{features_dir}: features folder not found "
                                    f"(run download_data.py and tess_pipeline.py first)")
        files, skipped = collect_files(features_dir)
        if not files:
            raise ValueError(f"{features_dir}: no audio files with RAVDESS-style names under "
                             f"Actor_XX/ folders")
        return files, skipped, {}, features_dir
    csv = Path(csv).absolute() if absolute else Path(csv)
    listed, skipped = read_csv_corpus(csv)
    if not listed:
        raise ValueError(f"{csv}: no usable rows ({len(skipped)} left out)")
    return ([(r.path, r.rel, r.name) for r in listed], skipped,
            {r.rel: r.speaker for r in listed}, csv.parent)


def _from_cache(files: list, bases: list[str], cache_dir: Path | None, bad: list[str], *,
                max_seconds: float | None) -> tuple[dict, list, dict[str, str]]:
    """What the per-file cache already holds: ``results`` (rel -> {set: vector}), the
    ``tasks`` for :func:`_process` (the sets still to compute per file) and the cache ``keys``
    of the files to compute. Damaged entries are named in ``bad`` and computed again."""
    results: dict[str, dict[str, np.ndarray]] = {}
    tasks = []
    keys: dict[str, str] = {}            # rel -> cache key, for the files to compute
    # a set whose cache folder does not exist has nothing cached: no look-up per file
    present = ({b for b in bases if _cache_file(cache_dir, b, "00").parent.parent.is_dir()}
               if cache_dir is not None else set())
    for path, rel, _ in files:
        have, todo, key = {}, [], None
        try:
            key = _file_key(path, rel) if cache_dir is not None else None
        except OSError:          # not there (a CSV's row): the worker names the problem
            key = None
        if key is not None:
            for b in bases:
                v = (_cache_lookup(_cache_file(cache_dir, b, key), FEATURE_DIMS[b], bad)
                     if b in present else None)
                if v is None:
                    todo.append(b)
                else:
                    have[b] = v
        else:
            todo = list(bases)
        results[rel] = have
        if todo:
            tasks.append((str(path), rel, todo, None, None, max_seconds))
            if key:
                keys[rel] = key
    return results, tasks, keys


def _compute(tasks: list, results: dict, keys: dict[str, str], cache_dir: Path | None, *,
             jobs: int, backend: str | None, scheduler: str | None, see: Path,
             progress: bool) -> dict[str, str]:
    """Run the ``tasks`` (:func:`run_tasks`), adding each file's vectors to ``results`` and to
    the cache; returns the one-line error of each file that failed (rel -> message)."""
    # the cache entries are written here, as the results come in, not by the workers: a file's
    # creation can wait on the file system's journal (measured: 0.07 ms alone, up to 0.85 ms
    # per file in a worker under load), and a worker that waits leaves its core idle while
    # this process mostly waits for results anyway
    errors: dict[str, str] = {}
    for rel, vecs, err in run_tasks(_process, tasks, jobs=jobs, backend=backend,
                                     scheduler=scheduler, see=see, desc="features",
                                     progress=progress,
                                     librosa=False,   # no set needs librosa
                                     batch=_batch_size(len(tasks), jobs),
                                     single_threaded=True):
        if err:
            errors[rel] = err
        else:
            results[rel].update(vecs)
            if rel in keys:
                for base, v in vecs.items():
                    _cache_write(_cache_file(cache_dir, base, keys[rel]), v)
    return errors


def _table(feature: str, rows: list, results: dict, speaker: dict[str, str]) -> dict:
    """The ``features_<set>.joblib`` content for ``rows`` (see the module's docstring)."""
    X = np.stack([set_vector(feature, results[rel].__getitem__) for _, rel, _ in rows])
    X = X.astype(np.float32)
    if not np.all(np.isfinite(X)):   # every vector was checked: a bug, not bad input
        raise RuntimeError(f"{feature}: non-finite feature values reached the output")
    names = [n for _, _, n in rows]
    return {"X": X,
            "y": np.array([n.label for n in names], dtype=np.int64),
            "meta": {"path": np.array([rel for _, rel, _ in rows]),
                     "corpus": np.array([n.corpus for n in names]),
                     "actor": np.array([n.actor for n in names], dtype=np.int64),
                     "vocal_channel": np.array([n.vocal_channel for n in names],
                                               dtype=np.int64),
                     "intensity": np.array([n.intensity for n in names], np.int64),
                     "statement": np.array([n.statement for n in names], np.int64),
                     "repetition": np.array([n.repetition for n in names], np.int64),
                     "speaker": np.array([speaker.get(rel, f"{n.actor:02d}")
                                          for _, rel, n in rows])},
            "feature": feature, "params": feature_params(feature)}


def _aug_table(feature: str, rows: list, aug: dict, copies: int) -> dict:
    """The ``features_<set>_aug.joblib`` content: ``X`` (copies, n_rows, dim), row-aligned."""
    Xa = np.stack([np.stack([set_vector(feature, lambda b: aug[rel][c, b])
                             for _, rel, _ in rows])
                   for c in range(1, copies + 1)]).astype(np.float32)
    return {"X": Xa, "path": np.array([rel for _, rel, _ in rows]),
            "feature": feature, "params": feature_params(feature),
            "augment": {"copies": copies, "version": AUGMENT_VERSION,
                        "speed": list(AUGMENT_SPEED)}}
