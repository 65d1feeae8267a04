"""Feature extraction and model comparisons on a real Dask cluster (loopback only).

A ``dask scheduler`` and two ``dask worker`` processes (tests/dask_cluster.py) run the work;
every result is compared with the same work done locally, bit for bit.
"""
import json
import os
import shutil
import subprocess
import sys
import threading
import time

import joblib
import numpy as np
import pytest
import soundfile as sf

from conftest import ROOT
from dask_cluster import Cluster, have_distributed

pytestmark = pytest.mark.skipif(have_distributed() is not None,
                                reason=have_distributed() or "")

import create_features  # noqa: E402
import neural_network  # noqa: E402
import ser.audio  # noqa: E402
import ser.checkpoint  # noqa: E402
import ser.cluster  # noqa: E402
import ser.extract  # noqa: E402
import ser.features  # noqa: E402
import ser.models  # noqa: E402
import ser.protocols  # noqa: E402
import ser.store  # noqa: E402
from test_neural_network import synthetic_features  # noqa: E402

TIMING = ("train_seconds", "seconds_per_epoch")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with Cluster(tmp_path_factory.mktemp("cluster"), n_workers=2) as c:
        yield c


def _same_features(dir_a, dir_b, sets):
    for f in sets:
        a = joblib.load(ser.store.output_path(dir_a, f))
        b = joblib.load(ser.store.output_path(dir_b, f))
        assert a["X"].dtype == b["X"].dtype == np.float32
        np.testing.assert_array_equal(a["X"], b["X"], err_msg=f)
        np.testing.assert_array_equal(a["y"], b["y"])
        assert a["meta"].keys() == b["meta"].keys()
        for k in a["meta"]:
            np.testing.assert_array_equal(a["meta"][k], b["meta"][k], err_msg=k)
        assert (a["feature"], a["params"]) == (b["feature"], b["params"])


def _summary(out: str) -> str:
    return [l for l in out.splitlines() if l.startswith("create_features:")][-1]


def _skipped(err: str) -> list[str]:
    return [l for l in err.splitlines() if l.startswith("skipped:")]


def test_without_scheduler_dask_is_not_imported(tmp_path):
    root = tmp_path / "features" / "Actor_01"
    root.mkdir(parents=True)
    t = np.arange(ser.audio.SAMPLE_RATE) / ser.audio.SAMPLE_RATE
    sf.write(root / "03-01-05-01-01-01-01.wav", 0.3 * np.sin(2 * np.pi * 220 * t), ser.audio.SAMPLE_RATE)
    code = ("import sys, create_features, neural_network\n"
            f"assert create_features.main(['--features-dir', {str(root.parent)!r}, '--jobs', '1',"
            " '--quiet']) == 0\n"
            "neural_network.build_parser()\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed'))\n"
            "assert not bad, bad\n")
    env = {k: v for k, v in os.environ.items() if k != ser.cluster.SCHEDULER_ENV}
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr


def test_extraction_on_the_cluster_equals_local(cluster, shared_data, tmp_path, capsys,
                                                monkeypatch):
    """Real files and a bad one: same rows, order, metadata, values and skip messages; the
    cache written by the workers is honoured (only new files are sent)."""
    root = tmp_path / "features"
    src = [sorted((shared_data / "ravdess_speech" / a).glob("*.flac"))[:16]
           for a in ("Actor_01", "Actor_02")]
    later = [src[0].pop(), src[1].pop()]             # added before the second run
    for p in src[0] + src[1]:
        (root / p.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(p, root / p.parent.name / p.name)
    (root / "Actor_02" / "03-01-01-01-01-01-02.wav").write_bytes(b"RIFF not audio" * 40)
    shutil.copy(src[0][0], root / "Actor_01" / "hello.flac")            # unparseable name
    args = ["--features-dir", str(root), "--feature", "all", "--quiet"]

    # first cluster run (--scheduler): every file goes to the workers, which fill the cache
    assert create_features.main([*args, "--scheduler", cluster.address]) == 0
    out = capsys.readouterr()
    assert "32 files, 30 rows, 2 skipped, 31 processed, 0 from cache" in _summary(out.out)
    # two new files; the scheduler from $DASK_SCHEDULER_ADDRESS: only 3 files are sent (the
    # new ones and the bad one, whose failure is not cached)
    for p in later:
        shutil.copy(p, root / p.parent.name / p.name)
    monkeypatch.setenv(ser.cluster.SCHEDULER_ENV, cluster.address)
    assert create_features.main(args) == 0
    cl = capsys.readouterr()
    assert "34 files, 32 rows, 2 skipped, 3 processed, 30 from cache" in _summary(cl.out)
    monkeypatch.delenv(ser.cluster.SCHEDULER_ENV)

    # the same files locally, nothing from the cache
    local = tmp_path / "local"
    local.mkdir()
    assert create_features.main([*args, "--no-cache", "--jobs", "2", "--out", str(local)]) == 0
    lo = capsys.readouterr()
    assert "34 files, 32 rows, 2 skipped, 33 processed" in _summary(lo.out)
    _same_features(root, local, ser.features.FEATURE_SETS)
    assert _skipped(cl.err) == _skipped(lo.err)
    assert any("03-01-01-01-01-01-02.wav: not readable audio" in l for l in _skipped(cl.err))
    assert any("hello.flac: not a RAVDESS-style name" in l for l in _skipped(cl.err))


def test_comparison_on_the_cluster_equals_local(cluster, tmp_path):
    """2 folds x 4 models as cluster tasks: the same results.json records (but the timing),
    reports and plots as locally; a model trained on the cluster is saved as locally."""
    feats = synthetic_features(tmp_path / "features")
    common = ["--features-dir", str(feats), "--epochs", "2", "--quiet"]
    runs = {"cluster": ["--scheduler", cluster.address], "local": []}
    for where, extra in runs.items():
        media = tmp_path / f"media_{where}"
        assert neural_network.main(["--model", "all", "--protocol", "speaker", "--folds", "2", "--no-save",
                        "--media-dir", str(media), *common, *extra]) == 0
        assert neural_network.main(["--model", "improved_cnn", "--protocol", "random",
                        "--save", str(tmp_path / f"{where}.h5"),
                        "--media-dir", str(tmp_path / f"random_{where}"), *common, *extra]) == 0
    mc, ml = tmp_path / "media_cluster", tmp_path / "media_local"
    rc, rl = (json.loads((m / "results.json").read_text()) for m in (mc, ml))
    assert [r["model"] for r in rc] == list(ser.models.ORIGINAL_MODELS) == [r["model"] for r in rl]
    for a, b in zip(rc, rl):
        assert len(a["folds"]) == 2
        assert {k: v for k, v in a.items() if k not in TIMING} == \
            {k: v for k, v in b.items() if k not in TIMING}
    files = sorted(p.name for p in ml.iterdir())
    assert files == sorted(p.name for p in mc.iterdir())
    assert {"results.json", "model_comparison.png", "lstm_confusion_matrix.png"} <= set(files)
    for name in files:
        if name not in ("results.json", "results.md"):
            assert (mc / name).read_bytes() == (ml / name).read_bytes(), name
    # the model of the random protocol: rebuilt from the worker's weights, saved as locally
    (m1, s1), (m2, s2) = (ser.checkpoint.load_model(tmp_path / f"{w}.h5") for w in runs)
    # each has its own export, named after its own file
    assert [s["litert"]["file"] for s in (s1, s2)] == [f"{w}.tflite" for w in runs]
    assert {k: v for k, v in s1.items() if k != "litert"} == \
        {k: v for k, v in s2.items() if k != "litert"}
    ds = ser.protocols.load_dataset("mfcc", "song+tess", features_dir=feats)
    X = ser.checkpoint.model_input(ds.X, s1)
    np.testing.assert_array_equal(m1.predict(X, verbose=0), m2.predict(X, verbose=0))


def test_an_adapted_ensemble_on_the_cluster_equals_local(cluster, tmp_path):
    """An ensemble of 2 MLPs with per-speaker normalisation, its folds trained as cluster
    tasks: the same record (but the timing) as locally, members and adaptation included."""
    feats = synthetic_features(tmp_path / "features")
    args = ["--model", "mlp", "--ensemble", "2", "--norm", "speaker", "--protocol", "speaker",
            "--folds", "2", "--features-dir", str(feats), "--epochs", "2", "--quiet",
            "--no-save"]
    records = {}
    for where, extra in {"cluster": ["--scheduler", cluster.address], "local": []}.items():
        media = tmp_path / f"media_{where}"
        assert neural_network.main([*args, "--media-dir", str(media), *extra]) == 0
        [records[where]] = json.loads((media / "results.json").read_text())
    rc, rl = records["cluster"], records["local"]
    assert rc["ensemble"] == 2 and rc["adaptation"] == "speaker" and len(rc["folds"]) == 2
    assert {k: v for k, v in rc.items() if k not in TIMING} == \
        {k: v for k, v in rl.items() if k not in TIMING}


def _tones(folder, n, seconds=3.0):
    folder.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(ser.audio.SAMPLE_RATE * seconds)) / ser.audio.SAMPLE_RATE
    for i in range(n):
        y = 0.3 * np.sin(2 * np.pi * (150 + 3 * i) * t) * (1 + 0.5 * np.sin(2 * np.pi * t * i / n))
        sf.write(folder / f"03-01-0{1 + i % 8}-01-{1 + i // 99:02d}-{1 + i % 99:02d}-03.wav",
                 y.astype(np.float32), ser.audio.SAMPLE_RATE, subtype="PCM_16")


def test_a_worker_killed_mid_extraction_loses_nothing(tmp_path):
    """SIGKILL one of two workers once results arrive: Dask re-runs its tasks on the other
    one; the output is complete and equal to an undisturbed (local) run."""
    n = 240
    root = tmp_path / "features"
    _tones(root / "Actor_03", n)
    cache = root / ser.extract.CACHE_DIRNAME
    result, error = {}, []
    with Cluster(tmp_path / "cluster", n_workers=2) as cluster:
        def go():
            try:
                result.update(ser.extract.extract(root, feature_sets=["stats"], progress=False,
                                         scheduler=cluster.address))
            except BaseException as e:   # reported by the assertion below
                error.append(e)
        th = threading.Thread(target=go)
        th.start()
        deadline = time.monotonic() + 120
        done, busy = 0, []
        while time.monotonic() < deadline and th.is_alive():
            done = len(list(cache.rglob("*.f32"))) if cache.exists() else 0
            if done >= 8:   # results arrive: kill the worker while it has a task
                busy = cluster.in_flight(0)
                if busy:
                    break
            else:
                time.sleep(0.02)
        cluster.kill_worker(0)
        th.join(timeout=180)
        assert not th.is_alive() and not error, error
        assert 8 <= done < n * 3 // 4, f"the kill should land mid-run ({done} of {n} done)"
        assert busy, "the killed worker should have had tasks in flight"
        assert cluster.n_alive() == 1
    assert result["files"] == n and result["computed"] == n and not result["skipped"]
    local = tmp_path / "local"
    local.mkdir()
    ser.extract.extract(root, feature_sets=["stats"], jobs=2, use_cache=False, progress=False,
               out_dir=local)
    _same_features(root, local, ["stats"])
