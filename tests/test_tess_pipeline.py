import collections

import numpy as np
import soundfile as sf

import ser_common as C
import tess_pipeline
from conftest import needs_data


def _tone(path, sr=24414, seconds=0.5):
    t = np.arange(int(sr * seconds)) / sr
    sf.write(path, 0.3 * np.sin(2 * np.pi * 220 * t), sr)


@needs_data
def test_full_tess_is_placed_and_parses_back(shared_data, tmp_path):
    out = tmp_path / "features"
    assert tess_pipeline.main(["--source", str(shared_data / "tess"), "--out", str(out),
                               "--quiet"]) == 0
    files = C.list_audio_files(out)
    assert len(files) == 2800
    per_actor = collections.Counter(p.parent.name for p in files)
    assert per_actor == {"Actor_25": 1400, "Actor_26": 1400}
    per_emotion = collections.Counter(C.parse_ravdess_name(p).emotion for p in files)
    assert set(per_emotion.values()) == {400} and len(per_emotion) == 7
    manifest = C.read_tess_manifest(out / "tess_manifest.csv")
    assert len(manifest) == 2800
    for p in files:
        back = C.parse_renamed_tess(p, manifest)
        original = C.parse_tess_name(shared_data / "tess" / manifest[p.name]["source"])
        assert back == original
        assert C.parse_ravdess_name(p).actor == C.TESS_ACTORS[back.speaker]
    # a second run changes nothing
    before = {p: p.stat().st_mtime_ns for p in files}
    m_before = (out / "tess_manifest.csv").stat().st_mtime_ns
    tess_pipeline.main(["--source", str(shared_data / "tess"), "--out", str(out), "--quiet"])
    assert {p: p.stat().st_mtime_ns for p in C.list_audio_files(out)} == before
    assert (out / "tess_manifest.csv").stat().st_mtime_ns == m_before


@needs_data
def test_quirks_of_the_real_distribution(shared_data, tmp_path):
    out = tmp_path / "features"
    r = tess_pipeline.run(shared_data / "originals" / "tess", out, progress=False)
    assert r["copied"] == 6 and r["skipped"] == 0
    manifest = C.read_tess_manifest(out / "tess_manifest.csv")
    by_source = {row["source"]: row for row in manifest.values()}
    bite = by_source["OAF_neutral/OA_bite_neutral.wav"]
    assert (bite["speaker"], bite["word"], bite["emotion"], bite["actor"]) == \
        ("OAF", "bite", "neutral", "26")
    # AIFF data named .wav and the 96 kHz file are copied and load through the shared loader
    for src in ("YAF_angry/YAF_germ_angry.wav", "OAF_Fear/OAF_food_fear.wav"):
        row = by_source[src]
        y = C.load_audio(out / f"Actor_{row['actor']}" / row["name"])
        assert y.dtype == np.float32 and len(y) > C.SAMPLE_RATE // 2


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
    assert len(C.list_audio_files(out)) == 2


def test_existing_different_content_is_not_overwritten(tmp_path, capsys):
    src = tmp_path / "tess"
    (src / "YAF_sad").mkdir(parents=True)
    _tone(src / "YAF_sad" / "YAF_bean_sad.wav")
    out = tmp_path / "features"
    tess_pipeline.run(src, out, progress=False)
    (dest,) = C.list_audio_files(out)
    _tone(src / "YAF_sad" / "YAF_bean_sad.wav", seconds=0.7)   # the source changed
    r = tess_pipeline.run(src, out, progress=False)
    assert r["copied"] == 0 and r["skipped"] == 1
    assert "exists with different content" in r["problems"][0]
    assert sf.info(str(dest)).duration == 0.5


def test_missing_source_is_a_clear_error(tmp_path, capsys):
    assert tess_pipeline.main(["--source", str(tmp_path / "nope"), "--out",
                               str(tmp_path / "f")]) == 1
    assert "TESS folder not found" in capsys.readouterr().err
