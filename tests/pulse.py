"""A real capture device for the microphone tests: a private PulseAudio daemon.

The daemon gets a null sink whose monitor is the default source, so audio played into the sink
(``paplay``, from another process) is what PortAudio/sounddevice records from the default input.
It runs with its own ``XDG_RUNTIME_DIR`` (a private 0700 folder): the variable is set in
``os.environ`` for the test process and every child it starts, and restored at the end, when the
daemon is killed. Nothing here touches another PulseAudio on the machine.

The session fixture ``pulse_server`` is imported by ``conftest.py``: a test asks for it by name.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

SINK = "ser_test_sink"
SINK_RATE = 48000
INSTALL_HINT = ("apt-get install pulseaudio pulseaudio-utils libasound2-plugins libportaudio2 "
                "(tools/install_system_deps.sh does it)")


class PulseUnavailable(RuntimeError):
    pass


@dataclass
class PulseServer:
    runtime_dir: Path
    env: dict
    sink: str = SINK
    source: str = SINK + ".monitor"

    def pid(self) -> int | None:
        try:
            return int((self.runtime_dir / "pulse" / "pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def play(self, path: str | os.PathLike, **kw) -> subprocess.Popen:
        """Start ``paplay`` of ``path`` into the null sink (returns the running process)."""
        return subprocess.Popen(["paplay", f"--device={self.sink}", str(path)], env=self.env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)


def _run(cmd: list[str], env: dict, timeout: float = 15) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def start_pulse() -> PulseServer:
    """Start the daemon; PulseUnavailable (with the reason) when that is not possible."""
    missing = [t for t in ("pulseaudio", "pactl", "paplay") if shutil.which(t) is None]
    if missing:
        raise PulseUnavailable(f"{', '.join(missing)} not installed ({INSTALL_HINT})")
    runtime = Path(tempfile.mkdtemp(prefix="ser-pulse-"))   # short: socket paths are limited
    runtime.chmod(0o700)
    env = {k: v for k, v in os.environ.items() if k not in ("PULSE_SERVER", "PULSE_SINK",
                                                            "PULSE_SOURCE")}
    env["XDG_RUNTIME_DIR"] = str(runtime)
    env["PULSE_STATE_PATH"] = str(runtime / "state")
    server = PulseServer(runtime, env)
    try:
        r = _run(["pulseaudio", "--daemonize=yes", "--exit-idle-time=-1", "--disallow-exit",
                  "-n", "--use-pid-file=yes",
                  "--load=module-native-protocol-unix auth-anonymous=1",
                  f"--load=module-null-sink sink_name={SINK} rate={SINK_RATE} channels=1"],
                 env)
        if r.returncode != 0:
            last = (r.stderr.strip().splitlines() or ["(no message)"])[-1]
            raise PulseUnavailable(f"pulseaudio would not start: {last}")
        deadline = time.monotonic() + 10
        while _run(["pactl", "info"], env).returncode != 0:
            if time.monotonic() > deadline:
                raise PulseUnavailable("pulseaudio started but does not answer pactl")
            time.sleep(0.1)
        for cmd in (["pactl", "set-default-sink", SINK],
                    ["pactl", "set-default-source", SINK + ".monitor"]):
            r = _run(cmd, env)
            if r.returncode != 0:
                raise PulseUnavailable(f"{' '.join(cmd)} failed: {r.stderr.strip()}")
        # PortAudio (through the ALSA pulse plugin) must see it as the default input.
        probe = ("import sounddevice as sd; d = sd.query_devices(kind='input'); "
                 "print(d['name'])")
        r = _run([sys.executable, "-c", probe], env, timeout=30)
        if r.returncode != 0:
            last = (r.stderr.strip().splitlines() or ["(no message)"])[-1]
            raise PulseUnavailable(f"sounddevice sees no input through PulseAudio: {last} "
                                   f"({INSTALL_HINT})")
    except BaseException:
        stop_pulse(server)
        raise
    return server


def stop_pulse(server: PulseServer) -> None:
    pid = server.pid()
    try:
        _run(["pulseaudio", "--kill"], server.env, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        pass
    if pid is not None:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.05)
        if _alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    shutil.rmtree(server.runtime_dir, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:          # a zombie counts as gone
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        try:
            os.kill(pid, 0)
            return True
        except OSError:
            return False


@pytest.fixture(scope="session")
def pulse_server():
    """A running private PulseAudio with a null sink as the default capture source."""
    try:
        server = start_pulse()
    except PulseUnavailable as e:
        pytest.skip(f"no PulseAudio capture device: {e}")
    saved = {k: os.environ.get(k) for k in ("XDG_RUNTIME_DIR", "PULSE_SERVER", "PULSE_SINK",
                                            "PULSE_SOURCE")}
    for k in ("PULSE_SERVER", "PULSE_SINK", "PULSE_SOURCE"):
        os.environ.pop(k, None)
    os.environ["XDG_RUNTIME_DIR"] = str(server.runtime_dir)
    try:
        yield server
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        stop_pulse(server)
