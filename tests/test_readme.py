"""The README's examples run as written, from a folder outside the repository (on a real clip
instead of the user's recording)."""
import os
import re
import shlex
import shutil
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
    env = dict(os.environ, PYTHONPATH="",      # `ser` as with the environment active
               PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
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


@needs_data
def test_own_data_section_runs_from_another_folder(tmp_path):
    """The README's own-data commands, as written, on a CSV corpus of five speakers and all
    eight emotions (RAVDESS actors 1-5, one file each), from a folder outside the repository."""
    data = tmp_path / "my_data"
    rows = ["path,emotion,speaker"]
    for actor in range(1, 6):
        folder = SHARED_DATA / "ravdess_speech" / f"Actor_{actor:02d}"
        for code, emotion in enumerate(EMOTIONS, start=1):
            src = sorted(folder.glob(f"03-01-{code:02d}-*"))[0]
            dest = data / f"speaker{actor}" / f"{emotion}{src.suffix}"
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(src.read_bytes())
            rows.append(f"speaker{actor}/{dest.name},{emotion},speaker{actor}")
    (data / "labels.csv").write_text("\n".join(rows) + "\n")
    text = (ROOT / "README.md").read_text()
    section = text.split("## Your own recordings", 1)[1].split("\n## ", 1)[0]
    assert "path,emotion,speaker" in section       # the CSV's columns are those written here
    lines = _shell_block("Your own recordings")
    assert [line.split()[:2] for line in lines] == [["ser", "features"], ["ser", "train"],
                                                    ["ser", "train"], ["ser", "predict"]]
    clip = sorted((SHARED_DATA / "ravdess_speech" / "Actor_06").glob("*.flac"))[0]
    media = {p: p.read_bytes() for p in (ROOT / "media").rglob("*") if p.is_file()}
    outputs = []
    for line in lines:
        r = _run_as_user(line, tmp_path, {"my_recording.wav": shlex.quote(str(clip))})
        assert r.returncode == 0, (line, r.stderr[-2000:])
        outputs.append(r)
    assert (data / "labels_features" / "features_stats_whisper.joblib").is_file()
    # the evaluation's reports: in their own run folder, named as the user can find it from
    # here, the CSV's speaker names in its records
    reports = [Path(line.split("reports in ", 1)[1]) for r in outputs
               for line in r.stdout.splitlines() if line.startswith("reports in ")]
    try:
        assert reports and all(p.is_absolute() and p.is_dir() for p in reports), reports
        assert reports[0].parent == ROOT / "models" / "runs"
        assert '"speaker1"' in (reports[0] / "results.json").read_text()
    finally:                                   # the repository's runs/ keeps no test leftovers
        for folder in reports:
            if folder.parent == ROOT / "models" / "runs":
                shutil.rmtree(folder, ignore_errors=True)
    assert (tmp_path / "my_model.h5").is_file() and (tmp_path / "my_model.json").is_file()
    file, emotion, confidence = outputs[3].stdout.split()[:3]
    assert file == f"{clip}:" and emotion in EMOTIONS and 0 < float(confidence) <= 1
    # an experiment on one's own data leaves the shipped reports as they were
    assert {p: p.read_bytes() for p in (ROOT / "media").rglob("*") if p.is_file()} == media
