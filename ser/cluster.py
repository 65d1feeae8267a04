"""Where the work runs: local worker processes or a Dask cluster (extraction and training alike)."""
from __future__ import annotations

import contextlib
import hashlib
import os
import re
import sys
import threading
import time
import warnings
from functools import partial
from pathlib import Path

SCHEDULER_ENV = "DASK_SCHEDULER_ADDRESS"


def scheduler_default() -> str | None:
    """``$DASK_SCHEDULER_ADDRESS`` if set and not empty (the default of ``--scheduler``)."""
    return os.environ.get(SCHEDULER_ENV) or None


def package_digests() -> dict[str, str]:
    """SHA-1 of every source file of the ``ser`` package as this process imports it (also run
    on the Dask scheduler and workers, to compare their code with the client's)."""
    import ser
    root = Path(ser.__file__).parent
    return {p.name: hashlib.sha1(p.read_bytes()).hexdigest() for p in sorted(root.glob("*.py"))}


@contextlib.contextmanager
def dask_backend(address: str, *, see: Path | None = None, wait_workers: float = 30.0,
                 **backend_params):
    """Context manager: joblib.Parallel inside runs on the Dask cluster at ``address``.

    Connects a ``distributed.Client`` (yielded) and enters ``joblib.parallel_config(
    backend="dask", client=client, **backend_params)`` (e.g. ``scatter=[big_object]``); Dask is
    imported here only. Checked before any work: the scheduler and the workers import
    the ``ser`` package (tasks refer to its functions by name: install the repository there,
    ``make setup``), the workers' copies are the client's (else results could differ), and the
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
        check_cluster_code(client)
        if see is not None:
            check_workers_see(client, see)
        with joblib.parallel_config(backend="dask", client=client, **backend_params):
            yield client


def check_cluster_code(client) -> None:
    """Refuse to start when the scheduler or a worker cannot import the ``ser`` package or a
    worker has another version of it than this process."""
    mine = package_digests()
    for who, run in (("the Dask scheduler", client.run_on_scheduler),
                     ("a Dask worker", client.run)):
        try:
            theirs = run(package_digests)
        except Exception as e:   # a worker's import error comes back as a plain Exception
            missing = re.search(r"No module named '([^']+)'", str(e))
            if not missing:
                raise
            raise ValueError(f"{who} cannot import {missing.group(1)!r}: start the scheduler "
                             f"and the workers where this repository is installed (make setup)"
                             ) from None
    for worker, digests in sorted(theirs.items()):
        other = [f"ser/{n}" for n in sorted(set(mine) | set(digests))
                 if digests.get(n) != mine.get(n)]
        if other:
            raise ValueError(f"Dask worker {worker} has another {', '.join(other[:3])}"
                             f"{' ...' if len(other) > 3 else ''} than this client; update its "
                             f"copy of the repository")


def check_workers_see(client, path: Path) -> None:
    """Refuse to start when a worker cannot see ``path`` (they need the same paths)."""
    seen = client.run(os.path.isdir, str(path))
    blind = sorted(w for w, ok in seen.items() if not ok)
    if blind:
        raise ValueError(f"{path}: not visible on Dask worker(s) {', '.join(blind)}; workers "
                         f"read the audio from the same paths (use a shared file system)")


_WATCHDOG: list[int] = []
_ALLOCATOR_TUNED: list[bool] = []


def tune_allocator() -> None:
    """In a process that does the extraction's work: let glibc keep freed memory for reuse.

    Each file's arrays (a few MB: frames, spectra) are above glibc's default mmap threshold,
    so every one is a fresh mapping whose pages fault in one by one and is unmapped again when
    freed: measured here, that made a 3 s clip's STFT cost 3.4 ms instead of 1.1 ms. With a
    32 MB threshold and a 128 MB trim threshold the same memory is reused from file to file.
    Once per process; nothing elsewhere than glibc (``mallopt`` missing: left as it is).
    """
    if _ALLOCATOR_TUNED:
        return
    _ALLOCATOR_TUNED.append(True)
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
    mallopt(M_MMAP_THRESHOLD, 32 << 20)
    mallopt(M_TRIM_THRESHOLD, 128 << 20)
    mallopt(M_TOP_PAD, 16 << 20)


def orphan_guarded(func, parent: int, *args):
    """Run ``func(*args)`` in a local worker that exits once ``parent`` is gone.

    joblib's workers outlive a killed parent for minutes (~280 MB each); a daemon thread
    polls the worker's parent process once a second and ends the worker when it changes.
    """
    if os.getpid() != parent and not _WATCHDOG:
        _WATCHDOG.append(parent)
        tune_allocator()

        def watch():
            while os.getppid() == parent:
                time.sleep(1.0)
            os._exit(1)
        threading.Thread(target=watch, daemon=True, name="orphan-watchdog").start()
    return func(*args)


_ONE_THREAD: list[bool] = []


def one_thread(func, *args):
    """Run ``func(*args)`` with the numeric libraries' thread pools (BLAS, OpenMP) at one
    thread, set once per process. Every path of :func:`run_tasks` runs its tasks so: a
    matrix product summed by several BLAS threads differs in its last bits from one summed by
    one, and a file must give the same features whatever ``--jobs`` or ``--scheduler``
    (``run_tasks(..., one_thread=True)``)."""
    if not _ONE_THREAD:
        from threadpoolctl import threadpool_limits
        threadpool_limits(limits=1)
        _ONE_THREAD.append(True)
    return func(*args)


def run_tasks(func, tasks: list[tuple], *, jobs: int, backend: str | None,
               scheduler: str | None, see: Path, desc: str, progress: bool,
               librosa: bool = True, batch: int | None = None, unit: str = "file",
               single_threaded: bool = False):
    """Yield ``func(*task)`` for every task, in parallel (local processes or the Dask cluster
    at ``scheduler``), in the order they finish, with a progress bar.

    ``librosa``: whether the tasks use librosa (then numba's cache is made complete before any
    worker starts). ``batch``: tasks per dispatch to a local worker (default 8). ``unit``:
    what the progress bar counts. ``single_threaded``: every task runs with one BLAS/OpenMP
    thread (:func:`one_thread`), in this process as in local or Dask workers, so that its
    result has the same bits whatever the parallelism.
    """
    import joblib
    from tqdm import tqdm
    if not tasks:
        return
    n_jobs = jobs if jobs != 0 else 1
    if librosa:
        # numba's cache complete before any worker starts (each worker checks again: Dask's
        # workers may run on other machines); see ser/numba_cache.py. Imported here only: a
        # local worker imports this module to start, and numba_cache pulls importlib.metadata
        from ser import numba_cache
        numba_cache.ensure_ready()
    ctx = (joblib.parallel_config(backend=backend) if backend is not None
           else contextlib.nullcontext())
    if single_threaded and (scheduler or n_jobs != 1):
        func = partial(one_thread, func)
    elif single_threaded:      # in this process: one thread while the tasks run
        from threadpoolctl import threadpool_limits
        ctx = _both(ctx, threadpool_limits(limits=1))
    if scheduler:   # the worker function goes by reference to its module in the package
        n_jobs, ctx = -1, dask_backend(scheduler, see=see)
    elif n_jobs != 1:   # local workers end with this process, even after a kill -9
        func = partial(orphan_guarded, func, os.getpid())
        if backend is None:      # and leave Ctrl-C to it: one "interrupted", no tracebacks
            ctx = _both(ctx, joblib.parallel_config(backend="loky",
                                                    initializer=_ignore_sigint))
    with ctx, warnings.catch_warnings():
        # loky replaces a worker that its memory watch or idle timeout ended and says so on
        # stderr; the tasks are re-run and nothing is lost: not the user's business
        warnings.filterwarnings("ignore", message="A worker stopped while some jobs",
                                category=UserWarning)
        # after Ctrl-C joblib counts the tasks it cancelled: the caller says "interrupted"
        # (what was done is cached), one line, not joblib's advice on task iterators
        warnings.filterwarnings("ignore", message=r"\d+ tasks which were still being processed",
                                category=UserWarning)
        # on a cluster, joblib's dask backend sizes the tasks to 0.2-1 s of work
        size = "auto" if scheduler else (batch or 8) if n_jobs != 1 else 1
        parallel = joblib.Parallel(n_jobs=n_jobs, return_as="generator_unordered",
                                   batch_size=size)
        gen = parallel(joblib.delayed(func)(*t) for t in tasks)
        yield from tqdm(gen, total=len(tasks), desc=desc, unit=unit, disable=not progress)


def stop_local_workers() -> None:
    """End this process's local workers now (after Ctrl-C): their pool is shut down and its
    semaphores released, so that nothing is left for loky's resource tracker to report."""
    from joblib.externals.loky import reusable_executor
    executor = reusable_executor._executor
    if executor is not None:
        try:
            executor.shutdown(wait=True, kill_workers=True)
        except Exception:      # noqa: BLE001 - already broken by the interrupt: nothing to free
            pass


def _ignore_sigint() -> None:
    """A local worker's start: Ctrl-C at a terminal reaches the whole process group; the
    parent handles it (and ends its workers), a worker would only print a traceback."""
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def _both(a, b):
    with a, b:
        yield


def exit_with_parent():
    """In a child process of a Dask worker: exit soon after that worker dies (say, killed)
    instead of finishing a training whose result nobody will collect."""
    import threading
    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(1)
    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()
