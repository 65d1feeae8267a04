import os
import shutil
import signal
import subprocess
import sys
import time

import joblib
import numpy as np
import pytest
import soundfile as sf

import create_features
import ser.audio
import ser.extract
import ser.features
from conftest import ROOT, needs_data

SR = ser.audio.SAMPLE_RATE


def tone(freq=440.0, seconds=1.0, sr=SR, amp=0.3):
    t = np.arange(int(sr * seconds)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def put(folder, name, y, sr=SR, subtype="PCM_16", fmt=None):
    folder.mkdir(parents=True, exist_ok=True)
    sf.write(folder / name, y, sr, subtype=subtype, format=fmt)
    return folder / name


def test_pure_tone_known_answers():
    y = tone(440.0)   # A4
    f = ser.features.extract_features(y, sets=ser.features.FEATURE_SETS)
    for name in ser.features.FEATURE_SETS:
        assert f[name].shape == (ser.features.FEATURE_DIMS[name],) and f[name].dtype == np.float32
        assert np.all(np.isfinite(f[name]))
    # chroma bins start at C: A is pitch class 9
    assert int(np.argmax(f["chroma"])) == 9
    assert int(np.argmax(ser.features.extract_features(tone(261.63), sets=("chroma",))["chroma"])) == 0
    np.testing.assert_array_equal(f["combined"],
                                  np.concatenate([f["mfcc"], f["chroma"], f["contrast"]]))
    # a louder tone has a higher first MFCC (log energy); the others barely move
    g = ser.features.extract_features(tone(440.0, amp=0.9), sets=("mfcc",))["mfcc"]
    assert g[0] > f["mfcc"][0] + 5


def test_unknown_feature_set_is_refused_before_work(tmp_path):
    with pytest.raises(ValueError, match="unknown feature set"):
        ser.extract.extract(tmp_path, feature_sets=["mfccs"])


def _tiny_corpus(root):
    a = root / "Actor_01"
    put(a, "03-01-05-01-01-01-01.wav", tone(220))
    put(a, "03-01-03-02-01-01-01.wav", tone(330, sr=48000), sr=48000)
    put(root / "Actor_25", "03-01-04-01-01-01-25.wav", tone(440))
    return root


def test_outputs_metadata_and_cache(tmp_path):
    root = _tiny_corpus(tmp_path / "features")
    r = ser.extract.extract(root, feature_sets=["mfcc", "combined"], jobs=1,
                                progress=False)
    assert r["files"] == 3 and r["computed"] == 3 and not r["skipped"]
    d = joblib.load(root / "features_combined.joblib")
    assert d["X"].shape == (3, 59) and d["X"].dtype == np.float32
    order = list(d["meta"]["path"])
    assert order == sorted(order)
    i = order.index("Actor_25/03-01-04-01-01-01-25.wav")
    assert d["y"][i] == 3 and d["meta"]["corpus"][i] == "tess" and d["meta"]["actor"][i] == 25
    j = order.index("Actor_01/03-01-03-02-01-01-01.wav")
    assert d["y"][j] == 2 and d["meta"]["intensity"][j] == 2
    assert d["meta"]["corpus"][j] == "ravdess_speech"
    assert d["params"] == ser.features.feature_params("combined")
    # second run: nothing processed, same output
    r2 = ser.extract.extract(root, feature_sets=["mfcc", "combined"], jobs=1,
                                 progress=False)
    assert r2["computed"] == 0
    np.testing.assert_array_equal(joblib.load(root / "features_combined.joblib")["X"], d["X"])
    # a touched (changed) file is redone, and only it
    f = root / "Actor_01" / "03-01-05-01-01-01-01.wav"
    sf.write(f, tone(880), SR)
    os.utime(f, ns=(time.time_ns(), time.time_ns() + 10**9))
    r3 = ser.extract.extract(root, feature_sets=["mfcc"], jobs=1, progress=False)
    assert r3["computed"] == 1
    new = joblib.load(root / "features_mfcc.joblib")["X"]
    assert not np.allclose(new[order.index("Actor_01/03-01-05-01-01-01-01.wav")],
                           d["X"][order.index("Actor_01/03-01-05-01-01-01-01.wav"), :40])


def test_bad_inputs_are_named_skipped_and_counted(tmp_path, capsys):
    root = _tiny_corpus(tmp_path / "features")
    a = root / "Actor_02"
    a.mkdir()
    (a / "03-01-01-01-01-01-02.wav").write_bytes(b"")                           # empty
    full = put(a, "full.wav", tone(300))
    (a / "03-01-02-01-01-01-02.wav").write_bytes(full.read_bytes()[:20000])     # truncated
    full.unlink()
    (a / "03-01-03-01-01-01-02.wav").write_bytes(b"RIFF but not really" * 50)   # non-audio
    put(a, "03-01-04-01-01-01-02.wav", tone(300, seconds=0.02))                 # too short
    put(a, "03-01-05-01-01-01-02.wav", np.zeros(SR, np.float32))               # silence
    bad = tone(300)
    bad[100] = np.nan
    put(a, "03-01-06-01-01-01-02.wav", bad, subtype="FLOAT")                    # NaN
    put(a, "hello.wav", tone(300))                                              # bad name
    # unusual but valid: 8-bit, stereo, 96 kHz, AIFF data named .wav
    put(a, "03-01-07-01-01-01-02.wav", tone(300), subtype="PCM_U8")
    put(a, "03-01-08-01-01-01-02.wav", np.stack([tone(300), tone(300)], 1))
    put(a, "03-01-01-01-02-01-02.wav", tone(300, sr=96000), sr=96000)
    put(a, "03-01-02-01-02-01-02.wav", tone(300), fmt="AIFF")
    assert create_features.main(["--features-dir", str(root), "--quiet", "--jobs", "2"]) == 0
    out = capsys.readouterr()
    expect = {"03-01-01-01-01-01-02.wav": "empty file",
              "03-01-02-01-01-01-02.wav": "truncated",
              "03-01-03-01-01-01-02.wav": "not readable audio",
              "03-01-04-01-01-01-02.wav": "too short",
              "03-01-05-01-01-01-02.wav": "silent",
              "03-01-06-01-01-01-02.wav": "NaN or infinite",
              "hello.wav": "not a RAVDESS-style name"}
    lines = [l for l in out.err.splitlines() if l.startswith("skipped:")]
    assert len(lines) == len(expect)
    for name, why in expect.items():
        assert any(name in l and why in l for l in lines), (name, why, lines)
    assert "14 files, 7 rows, 7 skipped" in out.out
    d = joblib.load(root / "features_mfcc.joblib")
    assert d["X"].shape == (7, 40) and np.all(np.isfinite(d["X"]))
    # the 8-bit, stereo, 96 kHz and AIFF files give the same features as the 16-bit original
    ref = ser.features.extract_features(ser.audio.load_audio(root / "Actor_01" / "03-01-05-01-01-01-01.wav"))
    paths = list(d["meta"]["path"])
    for n in ("03-01-08-01-01-01-02.wav", "03-01-02-01-02-01-02.wav"):
        row = d["X"][paths.index(f"Actor_02/{n}")]
        assert np.allclose(row, ser.features.extract_features(tone(300))["mfcc"], atol=0.5)
    assert len(ref["mfcc"]) == 40


def test_interrupted_run_resumes(tmp_path):
    root = tmp_path / "features"
    for i in range(120):
        put(root / "Actor_03", f"03-01-0{1 + i % 8}-01-{1 + i // 99:02d}-{1 + i % 99:02d}-03.wav",
            tone(200 + i, seconds=3.0))
    cmd = [sys.executable, str(ROOT / "create_features.py"), "--features-dir", str(root),
           "--jobs", "1", "--quiet"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    cache = root / ser.extract.CACHE_DIRNAME
    deadline = time.time() + 120
    while time.time() < deadline:
        n = len(list(cache.rglob("*" + ser.extract.CACHE_SUFFIX))) if cache.exists() else 0
        if n >= 10 or p.poll() is not None:
            break
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    done = len(list(cache.rglob("*" + ser.extract.CACHE_SUFFIX)))
    assert 10 <= done < 120, "the run should have been killed part-way"
    assert not (root / "features_mfcc.joblib").exists()
    assert not list(root.glob("*.tmp*"))
    r = ser.extract.extract(root, jobs=1, progress=False)
    assert r["computed"] == 120 - done and r["files"] == 120


@needs_data
def test_real_files_through_the_script(shared_data, tmp_path):
    root = tmp_path / "features"
    picks = sorted((shared_data / "ravdess_speech" / "Actor_01").glob("*.flac"))[:12]
    picks += sorted((shared_data / "ravdess_song" / "Actor_02").glob("*.flac"))[:12]
    for p in picks:
        dest = root / p.parent.name / p.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(p, dest)
    orig = shared_data / "originals" / "ravdess_speech" / "Actor_01" / "03-01-02-01-01-02-01.wav"
    shutil.copy(orig, root / "Actor_01" / orig.name)   # stereo 48 kHz original
    res = subprocess.run([sys.executable, str(ROOT / "create_features.py"), "--features-dir",
                          str(root), "--feature", "all", "--quiet"], capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "25 files, 25 rows, 0 skipped" in res.stdout
    for f in ser.features.FEATURE_SETS:
        d = joblib.load(root / f"features_{f}.joblib")
        assert d["X"].shape == (25, ser.features.FEATURE_DIMS[f])
        assert set(d["meta"]["corpus"]) == {"ravdess_speech", "ravdess_song"}
        assert set(d["meta"]["actor"]) == {1, 2}
    # the same utterance as distributed (48 kHz stereo WAV) and as the 22050 Hz FLAC copy
    d = joblib.load(root / "features_mfcc.joblib")
    paths = list(d["meta"]["path"])
    wav = d["X"][paths.index("Actor_01/03-01-02-01-01-02-01.wav")]
    flac_path = shared_data / "ravdess_speech" / "Actor_01" / "03-01-02-01-01-02-01.flac"
    flac = ser.features.extract_features(ser.audio.load_audio(flac_path))["mfcc"]
    assert np.corrcoef(wav, flac)[0, 1] > 0.99
