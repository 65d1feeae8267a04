"""Running the scripts without root's power over file permissions (``chmod 000`` means nothing
to root): as user nobody, through ``setpriv`` where there is one, else ``os.setuid``."""
import contextlib
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import ROOT


def _as_nobody() -> None:
    pw = pwd.getpwnam("nobody")
    os.setgroups([])
    os.setgid(pw.pw_gid)
    os.setuid(pw.pw_uid)


def run_unprivileged(*args: str, unset: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """``python *args`` in the repository, as user nobody when we are root; ``unset`` names
    environment variables the child must not see."""
    cmd, preexec = [sys.executable, *args], None
    if os.geteuid() == 0:
        pw = pwd.getpwnam("nobody")
        if shutil.which("setpriv"):
            cmd = ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}",
                   "--clear-groups", *cmd]
        else:
            preexec = _as_nobody
    env = {**os.environ, "HOME": tempfile.gettempdir()}
    for name in unset:
        env.pop(name, None)
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, preexec_fn=preexec,
                          env=env, timeout=300)


@pytest.fixture
def open_tmp():
    """A folder user nobody can use (pytest's tmp_path is private to root); the test makes
    some entries unreadable. Skips where permissions cannot be tested."""
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("nobody")
        except KeyError:
            pytest.skip("no user nobody to drop root's privileges to")
    d = Path(tempfile.mkdtemp(prefix="ser-perm-"))
    os.chmod(d, 0o777)
    probe = d / "probe"
    probe.mkdir(mode=0o000)
    try:
        r = run_unprivileged("-c", f"import os, ser.paths; os.listdir({str(probe)!r})")
    except OSError as e:
        r = subprocess.CompletedProcess([], 1, "", str(e))
    probe.rmdir()
    if "PermissionError" not in r.stderr:
        shutil.rmtree(d)
        pytest.skip(f"cannot run the scripts without root's privileges here "
                    f"({(r.stderr.strip().splitlines() or ['it could read the folder'])[-1]})")
    yield d
    for p in [d, *d.rglob("*")]:
        if not p.is_symlink():
            os.chmod(p, 0o777)
    shutil.rmtree(d)


@contextlib.contextmanager
def _world_readable_dir():
    """A fresh folder in /tmp that another user can enter (pytest's tmp_path is root's 0700)."""
    d = Path(tempfile.mkdtemp(prefix="ser-unreadable-", dir="/tmp"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        for p in [d, *d.rglob("*")]:
            if not p.is_symlink():
                p.chmod(0o755)
        shutil.rmtree(d)


def _unprivileged(where: Path) -> tuple[list[str], dict] | None:
    """A command prefix (and environment) under which ``chmod 000`` really denies access.

    As root: the user nobody (setpriv), else root without the two capabilities that bypass
    file permissions (when the interpreter lives where nobody cannot reach it, e.g. /root).
    """
    env = dict(os.environ)
    if os.geteuid() != 0:
        return [], env
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    probe = where / "probe"
    probe.write_bytes(b"x")
    probe.chmod(0)
    home = where / "home"
    home.mkdir(mode=0o777)
    home.chmod(0o777)
    candidates = [([setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups"],
                   {**env, "HOME": str(home), "SER_CACHE_DIR": str(home / "cache")}),
                  ([setpriv, "--bounding-set", "-dac_override,-dac_read_search"], env)]
    # the probe: the chmod 000 file is refused, and the interpreter can start itself again
    # (the numba cache builds in a child; nobody may reach setpriv's exec but not that one)
    code = (f"import subprocess, sys\n"
            f"subprocess.run([sys.executable, '-c', 'pass'], check=True)\n"
            f"open({str(probe)!r}, 'rb')\n")
    try:
        for prefix, penv in candidates:
            r = subprocess.run([*prefix, sys.executable, "-c", code], capture_output=True,
                               text=True, env=penv, timeout=600)
            if r.stderr.strip().splitlines()[-1:] == [
                    f"PermissionError: [Errno 13] Permission denied: {str(probe)!r}"]:
                return prefix, penv
        return None
    finally:
        probe.unlink()


@pytest.fixture
def unprivileged():
    """``(folder, command prefix, environment)``: a folder another user can enter and a way to
    run a command there for which ``chmod 000`` really denies access; skips where there is
    none."""
    with _world_readable_dir() as root:
        how = _unprivileged(root)
        if how is None:
            pytest.skip("cannot drop root's access to files here (no setpriv, and neither the "
                        "user nobody nor a capability drop denies a chmod 000 file)")
        yield (root, *how)
