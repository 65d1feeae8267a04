"""A real Dask cluster on the loopback interface for the tests and benchmarks.

``dask scheduler`` and ``dask worker`` run as separate processes, as on real machines: every
listening socket (scheduler, workers, their HTTP/diagnostics servers) is bound to 127.0.0.1.
The scheduler and the workers get the repository on their ``PYTHONPATH`` (tasks refer to
``create_features``/``neural_network`` by name) and run in another working directory.

Workers run without a nanny (``--no-nanny``), so that killing a worker's process kills the
worker itself (a machine that dies), and get ``OMP/MKL/OPENBLAS_NUM_THREADS=1``, what a nanny
sets by default (``distributed.nanny.pre-spawn-environ``) and what joblib's loky workers get on
the local path: the same BLAS threading, hence bit-identical numbers.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def have_distributed() -> str | None:
    """None if dask.distributed can be used, else why not."""
    try:
        import distributed  # noqa: F401
    except ImportError as e:
        return f"dask.distributed is not installed ({e}); pip install 'dask[distributed]'"
    return None


class Cluster:
    """``with Cluster(tmp, n_workers=2) as c:`` ... ``c.address``, ``c.kill_worker(0)``."""

    def __init__(self, tmp: Path, n_workers: int = 2, *, nthreads: int = 1,
                 timeout: float = 60.0):
        self.tmp = Path(tmp)
        self.n_workers, self.nthreads, self.timeout = n_workers, nthreads, timeout
        self.scheduler: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []
        self.address: str | None = None

    def _env(self) -> dict:
        env = {**os.environ, **THREAD_ENV, "TF_CPP_MIN_LOG_LEVEL": "3"}
        # no PYTHONPATH: `make setup` installs the project (pip install -e .), so the
        # scheduler and the workers import its modules like any installed package
        env.pop("PYTHONPATH", None)
        env.pop("DASK_SCHEDULER_ADDRESS", None)
        return env

    def _dask(self, *args: str, log: str) -> subprocess.Popen:
        self.tmp.mkdir(parents=True, exist_ok=True)
        out = open(self.tmp / log, "wb")
        try:
            return subprocess.Popen([sys.executable, "-m", "dask", *args], cwd=self.tmp,
                                    env=self._env(), stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        finally:
            out.close()

    def start(self) -> "Cluster":
        sfile = self.tmp / "scheduler.json"
        sfile.unlink(missing_ok=True)
        self.scheduler = self._dask("scheduler", "--host", "127.0.0.1", "--port", "0",
                                    "--dashboard-address", "127.0.0.1:0",
                                    "--scheduler-file", str(sfile), log="scheduler.log")
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.scheduler.poll() is not None:
                raise RuntimeError("dask scheduler exited: "
                                   + (self.tmp / "scheduler.log").read_text()[-2000:])
            try:
                self.address = json.loads(sfile.read_text())["address"]
                break
            except (FileNotFoundError, json.JSONDecodeError, KeyError):
                time.sleep(0.1)
        else:
            raise RuntimeError("dask scheduler did not start")
        for _ in range(self.n_workers):
            self.add_worker()
        self.wait_for_workers(self.n_workers)
        return self

    def add_worker(self) -> subprocess.Popen:
        i = len(self.workers)
        p = self._dask("worker", self.address, "--nthreads", str(self.nthreads),
                       "--host", "127.0.0.1", "--dashboard-address", "127.0.0.1:0",
                       "--no-nanny", "--name", f"w{i}",
                       "--local-directory", str(self.tmp / f"w{i}"), log=f"worker{i}.log")
        self.workers.append(p)
        return p

    def n_alive(self) -> int:
        from distributed import Client
        with Client(self.address, timeout="20s", set_as_default=False) as c:
            return len(c.scheduler_info()["workers"])

    def wait_for_workers(self, n: int) -> None:
        from distributed import Client
        with Client(self.address, timeout="20s", set_as_default=False) as c:
            c.wait_for_workers(n, timeout=self.timeout)

    def in_flight(self, i: int) -> list:
        """The tasks the scheduler has assigned to worker ``i`` and not yet seen finish."""
        from distributed import Client
        with Client(self.address, timeout="20s", set_as_default=False) as c:
            addr = [a for a, w in c.scheduler_info()["workers"].items()
                    if w.get("name") == f"w{i}"]
            return list(c.processing(addr).get(addr[0], ())) if addr else []

    def kill_worker(self, i: int) -> None:
        """SIGKILL worker ``i``: no goodbye to the scheduler, its tasks are lost."""
        self.workers[i].send_signal(signal.SIGKILL)
        self.workers[i].wait()

    def stop(self) -> None:
        procs = [*self.workers, *([self.scheduler] if self.scheduler else [])]
        for p in procs:
            if p.poll() is None:
                p.terminate()
        deadline = time.monotonic() + 10
        for p in procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def __enter__(self) -> "Cluster":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()
