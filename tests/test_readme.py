"""The README's examples run as written, from a folder outside the repository (on a real clip
instead of the user's recording)."""
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, needs_data, SHARED_DATA

EMOTIONS = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")


def _shell_block(heading: str) -> list[str]:
    """The command lines of the first bash block under ``heading`` (comments dropped)."""
    text = (ROOT / "README.md").read_text()
    section = text.split(f"## {heading}", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line.split("  #")[0].strip() for line in block.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def _run_as_user(line: str, cwd: Path, subs: dict[str, str]) -> subprocess.CompletedProcess:
    """One README command line in ``cwd``: the repository's ``.venv/bin/`` is the running
    interpreter's folder, the user's files are the ``subs``; nothing else is changed."""
    for old, new in subs.items():
        line = line.replace(old, new)
    line = line.replace(".venv/bin/", str(Path(sys.executable).parent) + "/")
    env = dict(os.environ, PYTHONPATH="")
    return subprocess.run(["bash", "-c", line], cwd=cwd, capture_output=True, text=True,
                          env=env, timeout=1800)


def _block(heading: str) -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split(f"## {heading}\n", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@needs_data
def test_python_api_example_runs(capsys, monkeypatch, tmp_path):
    clip = sorted((SHARED_DATA / "ravdess_speech" / "Actor_01").glob("*.flac"))[0]
    code = _block("Python API")
    assert "my_recording.wav" in code
    monkeypatch.chdir(tmp_path)                     # not the repository: the default model
    exec(compile(code.replace("my_recording.wav", str(clip)), "README.md", "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    emotion, confidence = lines[0].split()[:2]
    assert emotion in ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust",
                       "surprised") and 0 < float(confidence) <= 1
    assert 0 <= float(lines[1]) <= 1
    # two seconds of digital silence through a 1 s window every 0.5 s: three windows judged,
    # each "no speech"
    assert [line.split()[:3] for line in lines[2:]] == \
        [[str(t), "no", "speech"] for t in (1.0, 1.5, 2.0)]


@needs_data
def test_quick_start_runs_from_another_folder(tmp_path):
    lines = _shell_block("Quick start")
    assert lines[0] == "make setup"            # done: the suite runs in that environment
    clip = sorted((SHARED_DATA / "ravdess_speech" / "Actor_01").glob("*.flac"))[0]
    r = _run_as_user(lines[1], tmp_path, {"my_recording.wav": shlex.quote(str(clip))})
    assert r.returncode == 0, r.stderr
    file, emotion, confidence = r.stdout.split()[:3]
    assert file == f"{clip}:" and emotion in EMOTIONS and 0 < float(confidence) <= 1
    # the same answer as the script run from the repository with the recommended model named
    direct = subprocess.run([sys.executable, "live_predictions.py", "--model",
                             "models/emotion_mlp_stats_whisper.h5", str(clip)], cwd=ROOT,
                            capture_output=True, text=True)
    assert direct.returncode == 0 and direct.stdout == r.stdout
