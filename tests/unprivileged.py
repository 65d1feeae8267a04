"""Running the scripts without root's power over file permissions (``chmod 000`` means nothing
to root): as user nobody, through ``setpriv`` where there is one, else ``os.setuid``."""
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
