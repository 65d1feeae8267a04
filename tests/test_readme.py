"""The README's Python API example runs as written (on a real clip instead of the user's)."""
import re

from conftest import ROOT, needs_data, SHARED_DATA


def _block(heading: str) -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split(f"## {heading}\n", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@needs_data
def test_python_api_example_runs(capsys, monkeypatch):
    clip = sorted((SHARED_DATA / "ravdess_speech" / "Actor_01").glob("*.flac"))[0]
    code = _block("Python API")
    assert "my_recording.wav" in code
    monkeypatch.chdir(ROOT)
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
