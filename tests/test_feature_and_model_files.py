"""The training pipeline's own files (create_features.py's features and extraction cache,
neural_network.py's models and reports) under hostile and broken conditions (issue 15):
features files from elsewhere, damaged cache entries, shipped models, full and read-only
disks, killed runs. (The result files of live_predictions.py: test_result_files.py.)"""
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import neural_network
import ser.audio
import ser.extract
import ser.features
import ser.protocols
import ser.store
from conftest import ROOT
from ser import files as ser_files
from test_neural_network import synthetic_features

SAFETY = 600   # seconds: a net for a hung process, never a speed requirement


def tone(freq, seconds=1.0, sr=ser.audio.SAMPLE_RATE):
    t = np.arange(int(sr * seconds)) / sr
    return (0.3 * np.sin(2 * np.pi * freq * t)
            + 0.01 * np.random.default_rng(int(freq)).standard_normal(t.size)).astype(np.float32)


def corpus(root: Path, n: int = 4) -> Path:
    a = root / "Actor_01"
    a.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        sf.write(a / f"03-01-0{1 + i % 8}-01-01-0{1 + i // 8}-01.wav", tone(200 + 40 * i),
                 ser.audio.SAMPLE_RATE)
    return root


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


# --------------------------------------------------------------------------------------------
# 2. a features file from elsewhere is never unpickled
# --------------------------------------------------------------------------------------------
class _Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_received_features_file_cannot_run_code(tmp_path, capsys):
    import joblib
    feats = tmp_path / "features"
    feats.mkdir()
    marker = tmp_path / "pwned"
    joblib.dump({"X": _Payload(marker)}, feats / "features_mfcc.joblib")
    rc = neural_network.main(["--features-dir", str(feats), "--epochs", "1", "--no-save",
                  "--media-dir", str(tmp_path / "media")])
    err = capsys.readouterr().err
    assert rc == 1 and not marker.exists()
    assert "features_mfcc.joblib: not written by this installation" in err
    assert "--trust-features" in err and len(err.strip().splitlines()) == 1


def test_trusted_features_load_and_foreign_ones_only_when_trusted(tmp_path):
    import joblib
    synthetic_features(tmp_path / "ours")          # written through ser.files.dump_trusted
    assert len(ser.protocols.load_dataset("mfcc", "speech+song+tess", features_dir=tmp_path / "ours")) > 0
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    data = joblib.load(tmp_path / "ours" / "features_mfcc.joblib")
    # another file, as a colleague would send it (new bytes each run: the record is per user)
    data["X"] = data["X"] + np.random.default_rng().uniform(1, 2, size=(1, data["X"].shape[1]))
    joblib.dump(data, theirs / "features_mfcc.joblib")
    with pytest.raises(ser_files.UntrustedFileError, match="not written by this installation"):
        ser.protocols.load_dataset("mfcc", "speech+song+tess", features_dir=theirs)
    d = ser.store.load_features("mfcc", features_dir=theirs, trust=True)
    np.testing.assert_array_equal(d["X"], data["X"])
    # the command line's --trust-features records them, so later runs read them too
    rc = neural_network.main(["--features-dir", str(theirs), "--trust-features", "--epochs", "1",
                  "--no-save", "--media-dir", str(tmp_path / "media"), "--quiet"])
    assert rc == 0 and ser_files.is_trusted(theirs / "features_mfcc.joblib")


# --------------------------------------------------------------------------------------------
# 6. damaged cache entries are named and recomputed
# --------------------------------------------------------------------------------------------
def test_damaged_cache_entries_are_named_and_recomputed(tmp_path):
    feats = corpus(tmp_path / "features")
    first = ser.extract.extract(feats, feature_sets=["mfcc"], jobs=1, progress=False)
    X0 = ser.store.load_features("mfcc", features_dir=feats)["X"]
    entries = sorted((feats / ser.extract.CACHE_DIRNAME).rglob("*.f32"))
    assert first["bad_cache"] == [] and len(entries) == 4
    good = entries[0].read_bytes()
    nan = np.full(ser.features.FEATURE_DIMS["mfcc"], np.nan, "<f4").tobytes()
    import zlib
    damage = {
        entries[0]: b"",                                              # 0 bytes
        entries[1]: nan + zlib.crc32(nan).to_bytes(4, "little"),      # NaN with a valid CRC
        entries[2]: good[:40],                                        # wrong shape
        entries[3]: bytes(len(good)),                                 # zeros
    }
    for p, b in damage.items():
        p.write_bytes(b)
    r = ser.extract.extract(feats, feature_sets=["mfcc"], jobs=1, progress=False)
    assert r["computed"] == 4 and len(r["bad_cache"]) == 4
    assert {line.split(":")[0] for line in r["bad_cache"]} == {str(p) for p in damage}
    np.testing.assert_array_equal(ser.store.load_features("mfcc", features_dir=feats)["X"],
                                  X0)
    # one flipped bit in a value
    b = bytearray(entries[1].read_bytes())
    b[5] ^= 0x10
    entries[1].write_bytes(bytes(b))
    r = ser.extract.extract(feats, feature_sets=["mfcc"], jobs=1, progress=False)
    assert r["computed"] == 1 and "checksum mismatch" in r["bad_cache"][0]
    np.testing.assert_array_equal(ser.store.load_features("mfcc", features_dir=feats)["X"],
                                  X0)


# --------------------------------------------------------------------------------------------
# 7. an experiment never replaces a shipped model; a replaced model is kept
# --------------------------------------------------------------------------------------------
def _repo_copy(dest: Path) -> Path:
    for p in ROOT.glob("*.py"):
        shutil.copy2(p, dest / p.name)
    shutil.copytree(ROOT / "ser", dest / "ser", ignore=shutil.ignore_patterns("__pycache__"))
    (dest / "models").mkdir()
    for p in ("Emotion_Voice_Detection_Model.h5", "Emotion_Voice_Detection_Model.json"):
        shutil.copy2(ROOT / "models" / p, dest / "models" / p)
    synthetic_features(dest / "features")
    return dest


def _tree_digest(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): sha(p) for p in sorted(folder.rglob("*"))
            if p.is_file()}


def test_an_experiment_never_replaces_the_shipped_model(tmp_path):
    """... nor a tracked report: its reports and its model go to its own run folder, and the
    copy's media/ (the tracked one) stays byte for byte what it was (issue 29)."""
    repo = _repo_copy(tmp_path)
    shutil.copytree(ROOT / "media", repo / "media")
    media_before = _tree_digest(repo / "media")
    shipped = repo / "models" / "Emotion_Voice_Detection_Model.h5"
    before = sha(shipped), sha(shipped.with_suffix(".json"))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    run = [sys.executable, "neural_network.py", "--epochs", "1", "--quiet"]
    p = subprocess.run([*run, "--subset", "speech"], cwd=repo, env=env, capture_output=True,
                       text=True, timeout=SAFETY)
    assert p.returncode == 0, p.stderr
    assert (sha(shipped), sha(shipped.with_suffix(".json"))) == before
    (model,) = (repo / "models" / "runs").glob("improved_cnn_mfcc_random_*/improved_cnn.h5")
    assert model.with_suffix(".json").exists()
    assert f"differs from the shipped recipe cnn (--subset speech, --epochs 1): its model is " \
           f"{model.relative_to(repo)}, not Emotion_Voice_Detection_Model.h5" in p.stderr
    reports = {q.name for q in model.parent.iterdir()}
    assert {"results.json", "results.md", "confusion_matrix.png", "loss.png"} <= reports
    assert f"reports in {model.parent.relative_to(repo)}" in p.stdout
    # naming the shipped model replaces it, and the previous one is kept, sidecar included
    p = subprocess.run([*run, "--save", str(shipped)], cwd=repo, env=env, capture_output=True,
                       text=True, timeout=SAFETY)
    assert p.returncode == 0, p.stderr
    assert sha(shipped) != before[0]
    kept = list((repo / "models" / "previous").glob("Emotion_Voice_Detection_Model.*.h5"))
    assert len(kept) == 1 and "previous model is kept as" in p.stdout
    assert (sha(kept[0]), sha(kept[0].with_suffix(".json"))) == before
    assert "differs" not in p.stderr                      # --save chose the place
    assert len(list((repo / "models" / "runs").iterdir())) == 2    # its reports: a folder too
    assert _tree_digest(repo / "media") == media_before


# --------------------------------------------------------------------------------------------
# 8. full and read-only disks: one line before the work, never a partial set
# --------------------------------------------------------------------------------------------
@pytest.fixture
def tiny_disk(tmp_path):
    """A real 1 MB tmpfs (needs root's mount; skipped elsewhere)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1M", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {p.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _cli(args, **kw):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), timeout=SAFETY, **kw)


def test_full_and_read_only_disks_are_refused_before_the_work(tmp_path, tiny_disk):
    feats = corpus(tmp_path / "features")
    p = _cli(["create_features.py", "--features-dir", str(feats), "--out", str(tiny_disk),
              "--feature", "all", "--quiet"])
    assert p.returncode == 1 and p.stderr.count("\n") == 1, p.stderr
    assert f"--out folder {tiny_disk}: only" in p.stderr and "MB needed" in p.stderr
    assert not (feats / ser.extract.CACHE_DIRNAME).exists()     # refused before the work
    subprocess.run(["mount", "-o", "remount,ro", str(tiny_disk)], check=True)
    p = _cli(["create_features.py", "--features-dir", str(feats), "--out",
              str(tiny_disk / "sub"), "--quiet"])
    assert p.returncode == 1 and "read-only file system" in p.stderr, p.stderr
    synthetic_features(tmp_path / "nn")
    for opt in (["--media-dir", str(tiny_disk / "media")],
                ["--save", str(tiny_disk / "m.h5"), "--media-dir", str(tmp_path / "media")]):
        p = _cli(["neural_network.py", "--features-dir", str(tmp_path / "nn"), "--epochs", "1",
                  "--quiet", *opt])
        assert p.returncode == 1 and "read-only file system" in p.stderr, p.stderr
        assert "Traceback" not in p.stderr and "epoch" not in p.stdout.lower()


def test_a_failed_write_leaves_no_partial_set(tmp_path):
    feats = corpus(tmp_path / "features")
    ser.extract.extract(feats, feature_sets=["mfcc"], jobs=1, progress=False)
    before = sha(feats / "features_mfcc.joblib")
    (feats / "features_stats.joblib").mkdir()     # the last output cannot be renamed into place
    with pytest.raises(ser_files.OutputError, match="no feature file was written or changed"):
        ser.extract.extract(feats, feature_sets=["mfcc", "chroma", "stats"], jobs=1,
                                progress=False)
    assert sha(feats / "features_mfcc.joblib") == before
    assert not (feats / "features_chroma.joblib").exists()
    assert not [p for p in feats.iterdir() if ".tmp" in p.name]


# --------------------------------------------------------------------------------------------
# 10. killed runs: workers end with their parent; leftovers are cleaned
# --------------------------------------------------------------------------------------------
def test_stale_temporary_files_are_cleaned_on_the_next_run(tmp_path):
    feats = corpus(tmp_path / "features")
    ser.extract.extract(feats, feature_sets=["mfcc"], jobs=1, progress=False)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    cache = next((feats / ser.extract.CACHE_DIRNAME).rglob("*.f32")).parent
    stale = [cache / f".x.f32.{dead}.abcd1234.tmp.f32",
             feats / f".features_mfcc.joblib.{dead}.abcd1234.tmp"]
    mine = cache / f".y.f32.{os.getpid()}.abcd1234.tmp.f32"      # a live writer's: kept
    for p in (*stale, mine):
        p.write_bytes(b"half")
    ser.extract.extract(feats, feature_sets=["mfcc"], jobs=1, progress=False)
    assert not any(p.exists() for p in stale) and mine.exists()


def test_workers_exit_when_the_extraction_is_killed(tmp_path):
    import psutil
    feats = corpus(tmp_path / "features", n=40)
    proc = subprocess.Popen([sys.executable, "create_features.py", "--features-dir", str(feats),
                             "--feature", "stats", "--no-cache", "--jobs", "2", "--quiet",
                             "--augment", "8"], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    parent = psutil.Process(proc.pid)
    deadline = time.monotonic() + SAFETY
    workers = []
    while time.monotonic() < deadline and proc.poll() is None:
        workers = [c for c in parent.children(recursive=True)
                   if "loky" in " ".join(c.cmdline())]
        if workers:
            break
        time.sleep(0.2)
    assert workers, "the extraction ended before its workers could be seen"
    time.sleep(1.0)     # the workers are at work
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    gone, alive = psutil.wait_procs(workers, timeout=SAFETY)
    assert not alive


# --------------------------------------------------------------------------------------------
# 5. unreadable folders and files are named and counted, never dropped without a word
# --------------------------------------------------------------------------------------------
def test_unreadable_actor_folders_and_files_are_named(tmp_path, unprivileged):
    root, prefix, env = unprivileged
    feats = corpus(root / "features", n=3)
    corpus(root / "features2", n=1)
    shutil.move(root / "features2" / "Actor_01", feats / "Actor_02")
    locked = sorted((feats / "Actor_01").iterdir())[0]
    for p in [root, feats, *feats.rglob("*")]:
        p.chmod(0o777 if p.is_dir() else 0o666)
    locked.chmod(0)
    (feats / "Actor_02").chmod(0)
    r = subprocess.run([*prefix, sys.executable, str(ROOT / "create_features.py"),
                        "--features-dir", str(feats), "--quiet", "--jobs", "1"],
                       capture_output=True, text=True, env=env, timeout=SAFETY)
    (feats / "Actor_02").chmod(0o777)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert f"skipped: {feats / 'Actor_02'}: cannot read the folder (permission denied)" \
        in r.stderr
    lines = [line for line in r.stderr.splitlines() if line.startswith(f"skipped: {locked}")]
    assert len(lines) == 1 and "permission denied" in lines[0] and "System error" not in lines[0]
    assert "2 rows, 2 skipped" in r.stdout


def test_no_progress_bar_when_stderr_is_not_a_terminal(tmp_path):
    """A log file gets the summary, not a thousand progress updates."""
    feats = corpus(tmp_path / "features", n=3)
    p = _cli(["create_features.py", "--features-dir", str(feats), "--jobs", "1"])
    assert p.returncode == 0, p.stderr
    assert "\r" not in p.stderr and "file/s]" not in p.stderr
    assert "create_features: 3 files, 3 rows" in p.stdout
