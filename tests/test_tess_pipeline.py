import collections
import os
import stat
from pathlib import Path

import numpy as np
import soundfile as sf

import tess_pipeline
import ser.audio
import ser.corpora
import ser.scan
import ser.tess
from unprivileged import run_unprivileged
from conftest import needs_data


def _tone(path, sr=24414, seconds=0.5):
    t = np.arange(int(sr * seconds)) / sr
    sf.write(path, 0.3 * np.sin(2 * np.pi * 220 * t), sr)


@needs_data
def test_full_tess_is_placed_and_parses_back(shared_data, tmp_path):
    out = tmp_path / "features"
    assert tess_pipeline.main(["--source", str(shared_data / "tess"), "--out", str(out),
                               "--quiet"]) == 0
    files = ser.scan.list_audio_files(out)
    assert len(files) == 2800
    per_actor = collections.Counter(p.parent.name for p in files)
    assert per_actor == {"Actor_25": 1400, "Actor_26": 1400}
    per_emotion = collections.Counter(ser.corpora.parse_ravdess_name(p).emotion for p in files)
    assert set(per_emotion.values()) == {400} and len(per_emotion) == 7
    manifest = ser.corpora.read_tess_manifest(out / "tess_manifest.csv")
    assert len(manifest) == 2800
    for p in files:
        back = ser.corpora.parse_renamed_tess(p, manifest)
        original = ser.corpora.parse_tess_name(shared_data / "tess" / manifest[p.name]["source"])
        assert back == original
        assert ser.corpora.parse_ravdess_name(p).actor == ser.corpora.TESS_ACTORS[back.speaker]
    # a second run changes nothing
    before = {p: p.stat().st_mtime_ns for p in files}
    m_before = (out / "tess_manifest.csv").stat().st_mtime_ns
    tess_pipeline.main(["--source", str(shared_data / "tess"), "--out", str(out), "--quiet"])
    assert {p: p.stat().st_mtime_ns for p in ser.scan.list_audio_files(out)} == before
    assert (out / "tess_manifest.csv").stat().st_mtime_ns == m_before


@needs_data
def test_quirks_of_the_real_distribution(shared_data, tmp_path):
    out = tmp_path / "features"
    r = ser.tess.run(shared_data / "originals" / "tess", out, progress=False)
    assert r["copied"] == 6 and r["skipped"] == 0
    manifest = ser.corpora.read_tess_manifest(out / "tess_manifest.csv")
    by_source = {row["source"]: row for row in manifest.values()}
    bite = by_source["OAF_neutral/OA_bite_neutral.wav"]
    assert (bite["speaker"], bite["word"], bite["emotion"], bite["actor"]) == \
        ("OAF", "bite", "neutral", "26")
    # AIFF data named .wav and the 96 kHz file are copied and load through the shared loader
    for src in ("YAF_angry/YAF_germ_angry.wav", "OAF_Fear/OAF_food_fear.wav"):
        row = by_source[src]
        y = ser.audio.load_audio(out / f"Actor_{row['actor']}" / row["name"])
        assert y.dtype == np.float32 and len(y) > ser.audio.SAMPLE_RATE // 2


def test_bad_files_are_named_skipped_and_counted(tmp_path, capsys):
    src = tmp_path / "tess"
    (src / "YAF_happy").mkdir(parents=True)
    (src / "OAF_angry").mkdir(parents=True)
    _tone(src / "YAF_happy" / "YAF_dog_happy.wav")
    _tone(src / "OAF_angry" / "OAF_dog_angry.wav")
    (src / "YAF_happy" / "YAF_cat_happy.wav").write_bytes(b"this is not audio" * 20)
    _tone(src / "YAF_happy" / "nonsense.wav")
    out = tmp_path / "features"
    assert tess_pipeline.main(["--source", str(src), "--out", str(out), "--quiet"]) == 0
    err = capsys.readouterr()
    assert "YAF_cat_happy.wav: not readable audio" in err.err
    assert "nonsense.wav: not a TESS name" in err.err
    assert "2 copied, 0 already in place, 2 skipped" in err.out
    assert len(ser.scan.list_audio_files(out)) == 2


def test_existing_different_content_is_not_overwritten(tmp_path, capsys):
    src = tmp_path / "tess"
    (src / "YAF_sad").mkdir(parents=True)
    _tone(src / "YAF_sad" / "YAF_bean_sad.wav")
    out = tmp_path / "features"
    ser.tess.run(src, out, progress=False)
    (dest,) = ser.scan.list_audio_files(out)
    _tone(src / "YAF_sad" / "YAF_bean_sad.wav", seconds=0.7)   # the source changed
    r = ser.tess.run(src, out, progress=False)
    assert r["copied"] == 0 and r["skipped"] == 1
    assert "exists with different content" in r["problems"][0]
    assert sf.info(str(dest)).duration == 0.5


def test_missing_source_is_a_clear_error(tmp_path, capsys):
    assert tess_pipeline.main(["--source", str(tmp_path / "nope"), "--out",
                               str(tmp_path / "f")]) == 1
    assert "TESS folder not found" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# Hostile and broken inputs (issue 15)
# --------------------------------------------------------------------------------------------
ROOT = Path(__file__).resolve().parents[1]


def test_empty_source_is_an_error_and_writes_no_manifest(tmp_path, capsys):
    src = tmp_path / "tess"
    src.mkdir()
    out = tmp_path / "features"
    assert tess_pipeline.main(["--source", str(src), "--out", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(src) in err[0] and "empty" in err[0], err
    assert not out.exists()


def test_nothing_placeable_is_an_error_and_writes_no_manifest(tmp_path, capsys):
    src = tmp_path / "tess"
    (src / "YAF_happy").mkdir(parents=True)
    (src / "YAF_happy" / "YAF_cat_happy.wav").write_bytes(b"this is not audio" * 20)
    _tone(src / "YAF_happy" / "nonsense.wav")
    out = tmp_path / "features"
    assert tess_pipeline.main(["--source", str(src), "--out", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "YAF_cat_happy.wav: not readable audio" in err and "nonsense.wav" in err
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "nothing" in errors[0], err
    assert not (out / "tess_manifest.csv").exists()


def test_symlink_leaving_the_source_is_not_followed(tmp_path, capsys):
    secret = tmp_path / "secret.wav"
    _tone(secret)
    os.chmod(secret, 0o600)
    elsewhere = tmp_path / "elsewhere" / "OAF_sad"
    elsewhere.mkdir(parents=True)
    _tone(elsewhere / "OAF_bean_sad.wav")
    src = tmp_path / "tess"
    (src / "YAF_happy").mkdir(parents=True)
    (src / "YAF_happy" / "YAF_dog_happy.wav").symlink_to(secret)
    (src / "OAF_sad").symlink_to(elsewhere, target_is_directory=True)
    private = src / "YAF_happy" / "YAF_cat_happy.wav"
    _tone(private)
    os.chmod(private, 0o600)
    out = tmp_path / "features"
    assert tess_pipeline.main(["--source", str(src), "--out", str(out), "--quiet"]) == 0
    cap = capsys.readouterr()
    assert str(src / "YAF_happy" / "YAF_dog_happy.wav") in cap.err
    assert str(src / "OAF_sad") in cap.err and "symbolic link" in cap.err
    assert "1 copied, 0 already in place, 2 skipped" in cap.out
    (placed,) = ser.scan.list_audio_files(out)
    assert placed.read_bytes() == private.read_bytes()
    assert stat.S_IMODE(placed.stat().st_mode) == 0o600         # not wider than its source


def test_unreadable_folder_and_file_are_named_and_counted(open_tmp):
    src = open_tmp / "tess"
    for folder, name in (("YAF_happy", "YAF_dog_happy.wav"), ("YAF_happy", "YAF_cat_happy.wav"),
                         ("OAF_angry", "OAF_dog_angry.wav")):
        (src / folder).mkdir(parents=True, exist_ok=True)
        _tone(src / folder / name)
    for p in [src, *src.rglob("*")]:
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    os.chmod(src / "OAF_angry", 0o000)
    locked = src / "YAF_happy" / "YAF_cat_happy.wav"
    os.chmod(locked, 0o000)
    out = open_tmp / "features"
    out.mkdir()
    os.chmod(out, 0o777)
    r = run_unprivileged("tess_pipeline.py", "--source", str(src), "--out", str(out),
                         "--quiet")
    assert r.returncode == 0, r.stderr
    assert f"{src / 'OAF_angry'}: cannot read this folder (permission denied)" in r.stderr
    assert f"{locked}: permission denied" in r.stderr
    assert "System error" not in r.stderr
    assert "1 copied, 0 already in place, 2 skipped" in r.stdout
