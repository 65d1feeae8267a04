#!/usr/bin/env python
"""Step 2: extract feature vectors from every audio file under features/Actor_XX/.

Writes ``features/features_<set>.joblib`` for each feature set asked for: a dict with

- ``X``: float32 array (n_files, dim), one row per audio file;
- ``y``: int64 array (n_files,), labels 0..7 (RAVDESS emotion code - 1);
- ``meta``: dict of arrays (n_files,): ``path`` (relative to the features folder), ``corpus``
  (ravdess_speech, ravdess_song, tess), ``actor`` (1..26), ``vocal_channel``, ``intensity``,
  ``statement``, ``repetition``;
- ``feature`` and ``params``: the feature set and its parameters (ser_common.feature_params).

Files are processed in parallel; every result is cached under ``features/.cache`` keyed by the
file's path, size and modification time and by the feature parameters, so a re-run only
processes new or changed files and an interrupted run resumes where it stopped.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import re
import sys
import threading
import time
import zlib
from functools import partial
from pathlib import Path

import numpy as np

import ser_common as C
from ser import encoder as byols_encoder
from ser import files as ser_files
from ser import numba_cache

CACHE_DIRNAME = ".cache"
META_FIELDS = ("path", "corpus", "actor", "vocal_channel", "intensity", "statement",
               "repetition")


def output_path(features_dir: Path, feature: str) -> Path:
    """Where the feature set ``feature`` is written."""
    return Path(features_dir) / f"features_{feature}.joblib"


def base_sets(feature_sets: list[str]) -> list[str]:
    """The per-file sets to compute and cache (a composite set of
    :data:`ser_common.COMPOSITE_SETS` is built from its parts). When one of them needs the
    BYOL-S encoder, its weights are checked here, once (one line if they are missing), rather
    than failing every file."""
    need = set()
    for f in feature_sets:
        need |= set(C.parts_of(f))
    bases = [f for f in C.CACHED_FEATURES if f in need]
    if any(C.needs_encoder(b) for b in bases):
        byols_encoder.check_ready()
    return bases


def _file_key(path: Path, rel: str) -> str:
    st = path.stat()
    return hashlib.sha1(f"{rel}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()


CACHE_SUFFIX = ".f32"   # float32 little-endian values, then their CRC-32 (4 bytes)


def _cache_file(cache_dir: Path, base: str, key: str) -> Path:
    params = C.feature_params(base)
    return cache_dir / f"{base}-{C.params_hash(params)}" / key[:2] / f"{key}{CACHE_SUFFIX}"


class BadCacheEntry(ValueError):
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


def _process(path: str, rel: str, todo: list[str], cache_dir: str | None) -> tuple:
    """Worker: load one file, compute the missing base sets, cache them.

    Returns ``(rel, {set: vector}, None)`` or ``(rel, None, error message)``.
    """
    try:
        y = C.load_audio(path)
        C.check_signal(y, name=path)
        vecs = C.extract_features(y, sets=tuple(todo))
    except (C.AudioError, ValueError) as e:
        return rel, None, str(e)
    except Exception as e:   # a worker must never take the run down
        return rel, None, f"{path}: {type(e).__name__}: {e}"
    if cache_dir is not None:
        key = _file_key(Path(path), rel)
        for base, v in vecs.items():
            _cache_write(_cache_file(Path(cache_dir), base, key), v)
    return rel, vecs, None


def _cache_write(dest: Path, v: np.ndarray) -> None:
    """One cached vector with its checksum, written atomically (a killed worker leaves no
    half file)."""
    data = np.ascontiguousarray(v, dtype="<f4").tobytes()
    with C.atomic_path(dest) as tmp:
        tmp.write_bytes(data + zlib.crc32(data).to_bytes(4, "little"))


# --------------------------------------------------------------------------------------------
# Augmented copies (training data only: neural_network.py adds them to the training rows of a
# fold after the split; validation and test rows are always the untouched originals)
# --------------------------------------------------------------------------------------------
AUGMENT_VERSION = 1
AUGMENT_SPEED = (0.88, 1.12)   # speed perturbation: pitch and tempo together (another voice)


def augment_chain():
    """The channel an augmented copy goes through (audiomentations): a random 7-band EQ
    (another microphone and room), often band-limiting (telephone, small speaker, rumble
    filter), often noise at 10-35 dB SNR, and a gain change."""
    import audiomentations as A
    return A.Compose([
        A.SevenBandParametricEQ(min_gain_db=-8.0, max_gain_db=8.0, p=1.0),
        A.OneOf([A.LowPassFilter(min_cutoff_freq=3000.0, max_cutoff_freq=7500.0, p=1.0),
                 A.HighPassFilter(min_cutoff_freq=80.0, max_cutoff_freq=400.0, p=1.0),
                 A.BandPassFilter(min_center_freq=800.0, max_center_freq=2000.0, p=1.0)],
                p=0.6),
        A.AddGaussianSNR(min_snr_db=10.0, max_snr_db=35.0, p=0.6),
        A.Gain(min_gain_db=-12.0, max_gain_db=6.0, p=1.0),
    ])


def augment(y: np.ndarray, *, actor: int, copy: int, rel: str, sr: int = C.SAMPLE_RATE
            ) -> np.ndarray:
    """Augmented copy number ``copy`` (1, 2, ...) of one utterance of ``actor``.

    Every utterance of one actor in one copy goes through the same speed factor and the same
    channel (a "virtual speaker" with their own microphone, so that per-speaker statistics
    mean something for copies too); the noise differs per file. Deterministic: the result
    depends only on the audio, ``actor``, ``copy`` and ``rel`` (not on the order of work).

    Parameters
    ----------
    y : np.ndarray, shape (n_samples,)
        Mono audio at ``sr``.
    actor, copy : int, keyword-only
    rel : str, keyword-only
        The file's path relative to the features folder (seeds its noise).

    Returns
    -------
    np.ndarray, shape (about n_samples / speed factor,), float32 in [-1, 1]
    """
    import random
    import zlib
    if copy < 1:
        raise ValueError(f"augmented copy numbers start at 1, got {copy}")
    seed = zlib.crc32(f"aug{AUGMENT_VERSION}|{actor}|{copy}".encode())
    rng = np.random.default_rng(seed)
    factor = float(rng.uniform(*AUGMENT_SPEED))
    y = C.resample(np.asarray(y, np.float32), int(round(sr * factor)), sr=sr)
    chain = augment_chain()
    # audiomentations draws from the global generators: seed them, and give the caller's back
    saved = random.getstate(), np.random.get_state()
    try:
        random.seed(seed)
        np.random.seed(seed)
        chain.randomize_parameters(samples=y, sample_rate=sr)   # the virtual speaker's channel
        chain.freeze_parameters()
        np.random.seed(zlib.crc32(f"{seed}|{rel}".encode()))     # this file's noise
        y = chain(samples=y, sample_rate=sr)
    finally:
        random.setstate(saved[0])
        np.random.set_state(saved[1])
    return np.clip(y, -1.0, 1.0).astype(np.float32)


def aug_output_path(features_dir: Path, feature: str) -> Path:
    """Where the augmented copies of ``feature`` are written."""
    return Path(features_dir) / f"features_{feature}_aug.joblib"


def _aug_cache_file(cache_dir: Path, base: str, key: str, copy: int) -> Path:
    params = C.feature_params(base)
    return (cache_dir / f"{base}-{C.params_hash(params)}-aug{AUGMENT_VERSION}-{copy}"
            / key[:2] / f"{key}{CACHE_SUFFIX}")


def _process_aug(path: str, rel: str, actor: int, todo: list[tuple[int, str]],
                 cache_dir: str | None) -> tuple:
    """Worker: the missing (copy, base set) features of one file's augmented copies.

    Each copy stands or falls alone (a copy the gain made silent does not take the file's
    other copies with it), so the result does not depend on which copies were cached.
    Returns ``(rel, {(copy, set): vector}, [one-line message per failed copy])``.
    """
    out, errors = {}, []
    try:
        y = C.load_audio(path)
    except Exception as e:   # a worker must never take the run down
        return rel, out, [f"{path}: augmented copies: {e}"]
    for copy in sorted({c for c, _ in todo}):
        try:
            ya = augment(y, actor=actor, copy=copy, rel=rel)
            vecs = C.extract_features(ya, sets=tuple(b for c, b in todo if c == copy))
        except (C.AudioError, ValueError) as e:
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


def collect_files(features_dir: Path) -> tuple[list[tuple[Path, str, C.RavdessName]], list[str]]:
    """Audio files of every Actor_XX folder with their parsed names; unparseable ones listed."""
    files, problems = [], []
    for d in C.actor_dirs(features_dir):
        scan = C.scan_audio_files(d)
        # never dropped without a word: folders that cannot be read, files that cannot be looked
        # at (hidden entries and other extensions are left out quietly, as always)
        problems += [f"{q}: cannot read the folder ({why})" for q, why in scan.unreadable]
        problems += [f"{q}: {why}" for q, why in scan.left_out
                     if why.startswith(("cannot", "broken link"))]
        for p in scan.files:
            rel = p.relative_to(features_dir).as_posix()
            try:
                files.append((p, rel, C.parse_ravdess_name(p)))
            except ValueError as e:
                problems.append(str(e))
    return files, problems


SCHEDULER_ENV = "DASK_SCHEDULER_ADDRESS"


def scheduler_default() -> str | None:
    """``$DASK_SCHEDULER_ADDRESS`` if set and not empty (the default of ``--scheduler``)."""
    return os.environ.get(SCHEDULER_ENV) or None


def _module_digests(names: tuple[str, ...]) -> dict[str, str]:
    """SHA-1 of the source file of each module as this process imports it (also run on the
    Dask scheduler and workers, to compare their code with the client's)."""
    import importlib
    return {n: hashlib.sha1(Path(importlib.import_module(n).__file__).read_bytes()).hexdigest()
            for n in names}


@contextlib.contextmanager
def dask_backend(address: str, *, see: Path | None = None, wait_workers: float = 30.0,
                 modules: tuple[str, ...] = ("ser_common", "create_features"),
                 **backend_params):
    """Context manager: joblib.Parallel inside runs on the Dask cluster at ``address``.

    Connects a ``distributed.Client`` (yielded) and enters ``joblib.parallel_config(
    backend="dask", client=client, **backend_params)`` (e.g. ``scatter=[big_object]``); Dask is
    imported here only. Checked before any work: the scheduler and the workers import
    ``modules`` (tasks refer to them by name: start them with this repository on their
    ``PYTHONPATH``), the workers' copies are the client's (else results could differ), and the
    workers see the folder ``see`` (they read files by the same paths).
    """
    import joblib
    try:
        from distributed import Client
    except ImportError:
        raise ValueError("--scheduler needs Dask: pip install 'dask[distributed]'") from None
    try:
        client = Client(address, timeout="20s", set_as_default=False)
    except (OSError, TimeoutError, ValueError) as e:
        raise ValueError(f"cannot connect to the Dask scheduler at {address} "
                         f"({str(e).splitlines()[0] if str(e) else type(e).__name__})"
                         ) from None
    with client:
        try:
            client.wait_for_workers(1, timeout=wait_workers)
        except (TimeoutError, OSError):
            raise ValueError(f"no Dask worker joined the scheduler at {address} within "
                             f"{wait_workers:.0f} s (start some: dask worker {address})"
                             ) from None
        check_cluster_code(client, modules)
        if see is not None:
            check_workers_see(client, see)
        with joblib.parallel_config(backend="dask", client=client, **backend_params):
            yield client


def check_cluster_code(client, modules: tuple[str, ...]) -> None:
    """Refuse to start when the scheduler or a worker cannot import ``modules`` or a worker
    has other versions of them than this process."""
    import create_features   # by reference, also when this file runs as a script
    mine = _module_digests(modules)
    for who, run in (("the Dask scheduler", client.run_on_scheduler),
                     ("a Dask worker", client.run)):
        try:
            theirs = run(create_features._module_digests, modules)
        except Exception as e:   # a worker's import error comes back as a plain Exception
            missing = re.search(r"No module named '([^']+)'", str(e))
            if not missing:
                raise
            raise ValueError(f"{who} cannot import {missing.group(1)!r}: start the scheduler "
                             f"and the workers from this installed repository (make setup)"
                             ) from None
    for worker, digests in sorted(theirs.items()):
        other = [f"{n}.py" for n in modules if digests.get(n) != mine[n]]
        if other:
            raise ValueError(f"Dask worker {worker} has another {', '.join(other)} than this "
                             f"client; update its copy of the repository")


def check_workers_see(client, path: Path) -> None:
    """Refuse to start when a worker cannot see ``path`` (they need the same paths)."""
    seen = client.run(os.path.isdir, str(path))
    blind = sorted(w for w, ok in seen.items() if not ok)
    if blind:
        raise ValueError(f"{path}: not visible on Dask worker(s) {', '.join(blind)}; workers "
                         f"read the audio from the same paths (use a shared file system)")


def _augmented(rows, originals: dict, bases: list[str], copies: int, cache_dir: Path | None,
               *, jobs: int, backend: str | None, scheduler: str | None, see: Path,
               progress: bool, bad: list[str]) -> tuple[dict, list[str], int]:
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
                v = _cache_lookup(_aug_cache_file(cache_dir, b, key, c), C.FEATURE_DIMS[b], bad)
                if v is None:
                    todo.append((c, b))
                else:
                    have[c, b] = v
        aug[rel] = have
        if todo:
            tasks.append((str(path), rel, name.actor, todo,
                          str(cache_dir) if cache_dir is not None else None))
    failed = []
    for rel, vecs, errors in _run_tasks(_process_aug, tasks, jobs=jobs, backend=backend,
                                        scheduler=scheduler, see=see, desc="augmented copies",
                                        progress=progress):
        failed += errors
        aug[rel].update(vecs)
    for _, rel, _ in rows:
        for c, b in wanted:
            aug[rel].setdefault((c, b), originals[rel][b])
    return aug, failed, len(tasks)


_WATCHDOG: list[int] = []


def _orphan_guarded(func, parent: int, *args):
    """Run ``func(*args)`` in a local worker that exits once ``parent`` is gone.

    joblib's workers outlive a killed parent for minutes (~280 MB each); a daemon thread
    polls the worker's parent process once a second and ends the worker when it changes.
    """
    if os.getpid() != parent and not _WATCHDOG:
        _WATCHDOG.append(parent)

        def watch():
            while os.getppid() == parent:
                time.sleep(1.0)
            os._exit(1)
        threading.Thread(target=watch, daemon=True, name="orphan-watchdog").start()
    return func(*args)


def _run_tasks(func, tasks: list[tuple], *, jobs: int, backend: str | None,
               scheduler: str | None, see: Path, desc: str, progress: bool):
    """Yield ``func(*task)`` for every task, in parallel (local processes or the Dask cluster
    at ``scheduler``), in the order they finish, with a progress bar."""
    import joblib
    from tqdm import tqdm
    if not tasks:
        return
    n_jobs = jobs if jobs != 0 else 1
    # numba's cache complete before any worker starts (each worker checks again: Dask's
    # workers may run on other machines); see ser/numba_cache.py
    numba_cache.ensure_ready()
    ctx = (joblib.parallel_config(backend=backend) if backend is not None
           else contextlib.nullcontext())
    if scheduler:   # the worker function by reference to the importable module
        import create_features
        func, n_jobs = getattr(create_features, func.__name__), -1
        ctx = dask_backend(scheduler, see=see)
    elif n_jobs != 1:   # local workers end with this process, even after a kill -9
        func = partial(_orphan_guarded, func, os.getpid())
    with ctx:
        # on a cluster, joblib's dask backend sizes the tasks to 0.2-1 s of work
        batch = "auto" if scheduler else 8 if n_jobs != 1 else 1
        parallel = joblib.Parallel(n_jobs=n_jobs, return_as="generator_unordered",
                                   batch_size=batch)
        gen = parallel(joblib.delayed(func)(*t) for t in tasks)
        yield from tqdm(gen, total=len(tasks), desc=desc, unit="file", disable=not progress)


def _set_vector(feature: str, base) -> np.ndarray:
    """One file's vector of ``feature`` from its base-set vectors (``base(name)``): a
    composite set is the concatenation of its parts (:data:`ser_common.COMPOSITE_SETS`)."""
    if feature in C.COMPOSITE_SETS:
        return np.concatenate([base(b) for b in C.COMPOSITE_SETS[feature]])
    return base(feature)


def extract(features_dir: str | os.PathLike = C.FEATURES_DIR, *,
            feature_sets: list[str] = ("mfcc",), jobs: int = -1, use_cache: bool = True,
            progress: bool = True, out_dir: str | os.PathLike | None = None,
            backend: str | None = None, scheduler: str | None = None,
            augment: int = 0) -> dict:
    """Extract ``feature_sets`` for every file and write the ``.joblib`` outputs.

    With ``augment`` = N > 0, also N augmented copies of every file (:func:`augment`) go to
    ``features_<set>_aug.joblib``: ``X`` of shape (N, n_files, dim), row-aligned with
    ``features_<set>.joblib`` (same ``path`` order), for training folds only.

    With ``scheduler`` (a Dask scheduler address) the files not in the cache are processed by
    that cluster's workers (joblib's ``dask`` backend); the outputs are the same.

    Returns
    -------
    dict
        ``files`` (rows written), ``computed`` (files actually processed this run),
        ``skipped`` (list of one-line messages), ``seconds``, ``outputs`` (paths).
    """

    t0 = time.perf_counter()
    features_dir = Path(features_dir)
    if scheduler:   # workers have another working directory
        features_dir = features_dir.absolute()
    out_dir = Path(out_dir) if out_dir else features_dir
    feature_sets = list(feature_sets)
    for f in feature_sets:
        C.feature_params(f)  # raises on an unknown set before any work
    if augment < 0:
        raise ValueError(f"augment: the number of augmented copies must be >= 0, got {augment}")
    if not features_dir.is_dir():
        raise FileNotFoundError(f"{features_dir}: features folder not found "
                                f"(run download_data.py and tess_pipeline.py first)")
    files, skipped = collect_files(features_dir)
    if not files:
        raise ValueError(f"{features_dir}: no audio files with RAVDESS-style names under "
                         f"Actor_XX/ folders")
    bases = base_sets(feature_sets)
    cache_dir = features_dir / CACHE_DIRNAME if use_cache else None
    # where the work goes is checked before the work: one line, not a traceback at the end
    ser_files.check_writable(out_dir, what="--out folder",
                         need_bytes=_output_bytes(len(files), feature_sets, augment))
    C.clean_stale_tmp(out_dir)
    if cache_dir is not None:
        ser_files.check_writable(cache_dir, what="cache folder")
        C.clean_stale_tmp(cache_dir, recursive=True)
    bad: list[str] = []

    results: dict[str, dict[str, np.ndarray]] = {}
    tasks = []
    for path, rel, _ in files:
        have, todo = {}, []
        if cache_dir is not None:
            key = _file_key(path, rel)
            for b in bases:
                v = _cache_lookup(_cache_file(cache_dir, b, key), C.FEATURE_DIMS[b], bad)
                if v is None:
                    todo.append(b)
                else:
                    have[b] = v
        else:
            todo = list(bases)
        results[rel] = have
        if todo:
            tasks.append((str(path), rel, todo, str(cache_dir) if cache_dir else None))

    errors: dict[str, str] = {}
    for rel, vecs, err in _run_tasks(_process, tasks, jobs=jobs, backend=backend,
                                     scheduler=scheduler, see=features_dir,
                                     desc="features", progress=progress):
        if err:
            errors[rel] = err
        else:
            results[rel].update(vecs)
    skipped += [errors[rel] for _, rel, _ in files if rel in errors]

    rows = [(p, rel, name) for p, rel, name in files if rel not in errors]
    pending: list[tuple[dict, Path]] = []     # (data, destination), written all together
    n_augmented, fallbacks = 0, []
    for f in feature_sets:
        if rows:
            X = np.stack([_set_vector(f, results[rel].__getitem__) for _, rel, _ in rows])
        else:
            X = np.zeros((0, C.FEATURE_DIMS[f]), np.float32)
        X = X.astype(np.float32)
        assert np.all(np.isfinite(X))
        data = {"X": X,
                "y": np.array([n.label for _, _, n in rows], dtype=np.int64),
                "meta": {"path": np.array([rel for _, rel, _ in rows]),
                         "corpus": np.array([n.corpus for _, _, n in rows]),
                         "actor": np.array([n.actor for _, _, n in rows], dtype=np.int64),
                         "vocal_channel": np.array([n.vocal_channel for _, _, n in rows],
                                                   dtype=np.int64),
                         "intensity": np.array([n.intensity for _, _, n in rows], np.int64),
                         "statement": np.array([n.statement for _, _, n in rows], np.int64),
                         "repetition": np.array([n.repetition for _, _, n in rows], np.int64)},
                "feature": f, "params": C.feature_params(f)}
        pending.append((data, output_path(out_dir, f)))
    if augment > 0 and rows:
        aug, fallbacks, n_augmented = _augmented(
            rows, results, bases, augment, cache_dir, jobs=jobs, backend=backend,
            scheduler=scheduler, see=features_dir, progress=progress, bad=bad)
        for f in feature_sets:
            Xa = np.stack([np.stack([_set_vector(f, lambda b: aug[rel][c, b])
                                     for _, rel, _ in rows])
                           for c in range(1, augment + 1)]).astype(np.float32)
            pending.append(({"X": Xa, "path": np.array([rel for _, rel, _ in rows]),
                             "feature": f, "params": C.feature_params(f),
                             "augment": {"copies": augment, "version": AUGMENT_VERSION,
                                         "speed": list(AUGMENT_SPEED)}},
                            aug_output_path(out_dir, f)))
    outputs = _write_all(pending)
    return {"files": len(rows), "computed": len(tasks), "cached": len(files) - len(tasks),
            "augmented": n_augmented,
            "aug_fallbacks": fallbacks,
            "skipped": skipped, "bad_cache": bad,
            "seconds": time.perf_counter() - t0, "outputs": outputs}


def _output_bytes(n_files: int, feature_sets: list[str], augment: int) -> int:
    """Room the outputs need: their arrays, twice (a new file beside the old), plus a margin."""
    dims = sum(C.FEATURE_DIMS[f] for f in feature_sets)
    return 2 * 4 * n_files * dims * (1 + augment) + ser_files.MIN_FREE_BYTES


def _write_all(pending: list[tuple[dict, Path]]) -> list[Path]:
    """Write every output under a temporary name, then move them all into place; a failure
    (a full disk, a folder in the way) restores the previous outputs: never a partial set."""
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
    finally:
        for p in [*tmps, *(b for b in backups.values() if b is not None)]:
            p.unlink(missing_ok=True)
    return [dest for _, dest in pending]


def load_features(feature: str = "mfcc", *, features_dir: str | os.PathLike = C.FEATURES_DIR,
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
    if data.get("params") != C.feature_params(feature):
        raise ValueError(f"{path}: made with other feature parameters than this version's; "
                         f"re-run create_features.py")
    return data


def load_augmented(feature: str = "stats", *, features_dir: str | os.PathLike = C.FEATURES_DIR,
                   copies: int = 1, paths: np.ndarray | None = None,
                   trust: bool = False) -> np.ndarray:
    """The first ``copies`` augmented copies of ``feature``: shape (copies, n_files, dim),
    row-aligned with :func:`load_features` (checked against its ``paths`` if given)."""
    path = aug_output_path(Path(features_dir), feature)
    hint = f"run: python create_features.py --feature {feature} --augment {copies}"
    if not path.exists():
        raise FileNotFoundError(f"{path}: augmented copies not found ({hint})")
    data = ser_files.load_trusted(path, trust=trust, hint=hint)
    if (data.get("params") != C.feature_params(feature)
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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--feature", default="mfcc", choices=[*C.FEATURE_SETS, "all"],
                   help="feature set: mfcc (40), chroma (12), contrast (7), combined (59), "
                        f"stats (pooled statistics, {C.FEATURE_DIMS['stats']}), byols (the "
                        f"BYOL-S encoder, {C.FEATURE_DIMS['byols']}), stats_byols (both, "
                        f"{C.FEATURE_DIMS['stats_byols']}) or all of them (one STFT per file "
                        "for the first four)")
    p.add_argument("--features-dir", type=Path, default=C.FEATURES_DIR,
                   help="folder with the Actor_XX audio folders")
    p.add_argument("--out", type=Path, default=None,
                   help="where the .joblib files go (default: the features folder)")
    p.add_argument("--jobs", type=int, default=-1,
                   help="parallel worker processes (-1: all cores, 1: no parallelism)")
    p.add_argument("--no-cache", action="store_true",
                   help="ignore and do not write the per-file cache")
    p.add_argument("--augment", type=int, default=0, metavar="N",
                   help="also write N augmented copies of every file to "
                        "features_<set>_aug.joblib (speed perturbation and a random "
                        "microphone/room channel per speaker and copy, audiomentations); "
                        "neural_network.py --augment adds them to training folds only")
    p.add_argument("--quiet", action="store_true", help="no progress bar (there is none anyway when stderr is not a terminal)")
    p.add_argument("--scheduler", default=scheduler_default(), metavar="ADDRESS",
                   help="process the files on the Dask cluster of this scheduler (e.g. "
                        f"tcp://10.0.0.5:8786; default ${SCHEDULER_ENV}); its workers need "
                        "the same paths and this repository installed (make setup)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    sets = list(C.FEATURE_SETS) if args.feature == "all" else [args.feature]
    try:
        r = extract(args.features_dir, feature_sets=sets, jobs=args.jobs,
                    use_cache=not args.no_cache, progress=not args.quiet and sys.stderr.isatty(), out_dir=args.out,
                    scheduler=args.scheduler, augment=args.augment)
    except (OSError, ValueError) as e:   # OutputError, FileNotFoundError, bad input
        print(f"error: {e}" if isinstance(e, (ValueError, ser_files.OutputError,
                                                FileNotFoundError))
              else f"error: {ser_files.describe_os_error(e, e.filename)}", file=sys.stderr)
        return 1
    for line in r["bad_cache"]:
        print(f"recomputed a damaged cache entry: {line}", file=sys.stderr)
    for line in r["skipped"]:
        print(f"skipped: {line}", file=sys.stderr)
    for line in r["aug_fallbacks"]:
        print(f"kept the original: {line}", file=sys.stderr)
    n = r["files"] + len(r["skipped"])
    rate = r["computed"] / r["seconds"] if r["seconds"] > 0 else 0.0
    print(f"create_features: {n} files, {r['files']} rows, {len(r['skipped'])} skipped, "
          f"{r['computed']} processed, {r['cached']} from cache, "
          + (f"{r['augmented']} files' augmented copies computed "
             f"({len(r['aug_fallbacks'])} kept the original), " if args.augment else "")
          + f"{r['seconds']:.1f} s, "
          f"{rate:.0f} files/s; wrote "
          + ", ".join(str(o) for o in r["outputs"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
