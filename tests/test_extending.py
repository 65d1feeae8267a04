"""Extending the pipeline is one entry in one table (the README's "Extending" section).

Each test copies the package and the scripts, adds the entry the way a user would (one block of
source inserted into one file), and runs the unchanged scripts on small audio with known
answers: a fifth model, a new feature set, a new corpus.
"""
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import joblib
import numpy as np
import soundfile as sf

from conftest import ROOT

SCRIPTS = ("create_features.py", "neural_network.py", "live_predictions.py")
SR = 22050


def _copy(tmp: Path) -> Path:
    repo = tmp / "repo"
    shutil.copytree(ROOT / "ser", repo / "ser", ignore=shutil.ignore_patterns("__pycache__"))
    for s in SCRIPTS:
        shutil.copy(ROOT / s, repo / s)
    return repo


def _insert_after(path: Path, marker: str, text: str, *, skip: int = 0) -> None:
    """Insert ``text`` after the one line containing ``marker`` (and ``skip`` more lines)."""
    lines = path.read_text().splitlines(keepends=True)
    at = [i for i, line in enumerate(lines) if marker in line]
    assert len(at) == 1, f"{path}: marker {marker!r} found {len(at)} times"
    i = at[0] + 1 + skip
    path.write_text("".join(lines[:i]) + textwrap.dedent(text) + "".join(lines[i:]))


def _run(repo: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(repo), "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("DASK_SCHEDULER_ADDRESS", None)
    p = subprocess.run([sys.executable, *args], cwd=repo, env=env, capture_output=True,
                       text=True, timeout=900)
    assert "Traceback" not in p.stderr, p.stderr[-3000:]
    return p


def _tones(folder: Path, actors, *, amplitude=lambda actor, emotion: 0.3) -> dict[str, float]:
    """One second of a tone per (actor, emotion) with a RAVDESS-style name; returns each
    file's relative path -> its amplitude."""
    t = np.arange(SR) / SR
    made = {}
    for a in actors:
        d = folder / f"Actor_{a:02d}"
        d.mkdir(parents=True, exist_ok=True)
        for e in range(1, 9):
            amp = amplitude(a, e)
            y = amp * np.sin(2 * np.pi * (110.0 * e + 7.0 * a) * t)
            name = f"03-01-{e:02d}-01-01-01-{a:02d}.wav"
            sf.write(d / name, y.astype(np.float32), SR, subtype="FLOAT")
            made[f"Actor_{a:02d}/{name}"] = amp
    return made


def test_a_fifth_model_is_one_registered_function(tmp_path):
    repo = _copy(tmp_path)
    _insert_after(repo / "ser" / "models.py", "ORIGINAL_MODELS = ", """

        @register("tiny_dense")
        def tiny_dense(input_shape, n_classes=N_CLASSES):
            \"\"\"One softmax layer on the flattened features.\"\"\"
            keras, L = _layers()
            return keras.Sequential([keras.Input(input_shape), L.Flatten(),
                                     L.Dense(n_classes, activation="softmax")], name="tiny_dense")
    """)
    feats = tmp_path / "features"
    _tones(feats, range(1, 7))
    assert _run(repo, "create_features.py", "--features-dir", str(feats), "--jobs", "1",
                "--quiet").returncode == 0
    media = tmp_path / "media"
    p = _run(repo, "neural_network.py", "--model", "tiny_dense", "--protocol", "speaker",
             "--subset", "speech", "--folds", "2", "--epochs", "2", "--features-dir", str(feats),
             "--media-dir", str(media), "--no-save", "--quiet")
    assert p.returncode == 0, p.stderr
    rec = [r for r in json.loads((media / "results.json").read_text())
           if r["model"] == "tiny_dense"]
    assert len(rec) == 1 and rec[0]["protocol"] == "speaker" and len(rec[0]["folds"]) == 2
    out = tmp_path / "tiny.h5"
    p = _run(repo, "neural_network.py", "--model", "tiny_dense", "--all-data", "--subset",
             "speech", "--epochs", "2", "--features-dir", str(feats), "--media-dir",
             str(media), "--save", str(out), "--quiet")
    assert p.returncode == 0, p.stderr
    assert json.loads(out.with_suffix(".json").read_text())["model"] == "tiny_dense"
    p = _run(repo, "live_predictions.py", "--model", str(out), "--json",
             str(feats / "Actor_01" / "03-01-05-01-01-01-01.wav"))
    assert p.returncode == 0, p.stderr
    row = json.loads(p.stdout)
    assert row["emotion"] in row["probabilities"] and len(row["probabilities"]) == 8


def test_a_new_feature_set_is_one_table_entry(tmp_path):
    repo = _copy(tmp_path)
    # a set with a known answer: the RMS level of a sine of amplitude a is a / sqrt(2)
    _insert_after(repo / "ser" / "features.py", 'FeatureSet("stats_byols"', """\
        FeatureSet("rms_level", 1, 1, "RMS level",
                   lambda u: np.sqrt(np.mean(np.square(u.y, dtype=np.float64)))[None]),
    """)
    feats = tmp_path / "features"
    amps = _tones(feats, range(1, 6), amplitude=lambda a, e: 0.05 * a + 0.01 * e)
    p = _run(repo, "create_features.py", "--help")
    assert "rms_level (RMS level, 1)" in " ".join(p.stdout.split())
    assert _run(repo, "create_features.py", "--feature", "rms_level", "--features-dir",
                str(feats), "--jobs", "1", "--quiet").returncode == 0
    d = joblib.load(feats / "features_rms_level.joblib")
    assert d["X"].shape == (40, 1) and d["params"]["feature"] == "rms_level"
    want = np.array([amps[p] for p in d["meta"]["path"]]) / np.sqrt(2)
    np.testing.assert_allclose(d["X"][:, 0], want, rtol=1e-3)
    p = _run(repo, "neural_network.py", "--model", "mlp", "--feature", "rms_level",
             "--protocol", "speaker", "--subset", "speech", "--folds", "2", "--epochs", "2",
             "--features-dir", str(feats), "--media-dir", str(tmp_path / "media"),
             "--no-save", "--quiet")
    assert p.returncode == 0, p.stderr
    rec = json.loads((tmp_path / "media" / "results.json").read_text())
    assert [r["feature"] for r in rec] == ["rms_level"]


LEVELS_MODULE = '''\
"""A third encoder: the RMS level of each 20 ms frame (no weights)."""
import numpy as np


class LevelEncoder:
    name = "levels"
    dim = 1
    sample_rate = 16000
    poolings = {"mean": 1, "mean_max": 2}

    def params(self):
        return {"encoder": self.name, "frame_ms": 20}

    def check_weights(self):
        pass

    def frames(self, y, *, sr):
        n = sr // 50
        f = np.asarray(y, np.float64)[: len(y) // n * n].reshape(-1, n)
        return np.sqrt(np.mean(f * f, axis=1))[:, None].astype(np.float32)

    def pool(self, frames, *, method):
        parts = [frames.mean(axis=0)] + ([frames.max(axis=0)] if method == "mean_max" else [])
        return np.concatenate(parts).astype(np.float32)
'''


def test_a_third_encoder_is_one_module_and_one_table_entry(tmp_path):
    """An encoder implementing ser.encoders.Encoder, in its own module, and one encoder_set
    entry: extraction, its parameters in the features and the sidecar, training and
    prediction follow with the unchanged scripts."""
    repo = _copy(tmp_path)
    (repo / "ser" / "encoders" / "levels.py").write_text(LEVELS_MODULE)
    _insert_after(repo / "ser" / "features.py", "from ser.encoders.byols import BYOLSEncoder",
                  "from ser.encoders.levels import LevelEncoder\n")
    _insert_after(repo / "ser" / "features.py", "pooling=byols_encoder.POOLING),", """\
            encoder_set("levels", 1, "frame levels", LevelEncoder(), pooling="mean_max"),
    """)
    feats = tmp_path / "features"
    amps = _tones(feats, range(1, 6), amplitude=lambda a, e: 0.05 * a + 0.01 * e)
    assert "levels (frame levels, 2)" in " ".join(_run(repo, "create_features.py",
                                                       "--help").stdout.split())
    assert _run(repo, "create_features.py", "--feature", "levels", "--features-dir",
                str(feats), "--jobs", "2", "--quiet").returncode == 0
    d = joblib.load(feats / "features_levels.joblib")
    assert d["X"].shape == (40, 2)
    assert d["params"] == {"feature": "levels", "dim": 2, "version": 1, "encoder": "levels",
                           "frame_ms": 20, "pooling": "mean_max"}
    # a sine of amplitude a: every 20 ms frame's RMS is a / sqrt(2) (within a part cycle)
    want = np.array([amps[p] for p in d["meta"]["path"]]) / np.sqrt(2)
    np.testing.assert_allclose(d["X"][:, 0], want, rtol=0.02)
    assert np.all(d["X"][:, 1] >= d["X"][:, 0])
    out, media = tmp_path / "levels.h5", tmp_path / "media"
    p = _run(repo, "neural_network.py", "--model", "mlp", "--feature", "levels", "--all-data",
             "--subset", "speech", "--epochs", "2", "--features-dir", str(feats),
             "--media-dir", str(media), "--save", str(out), "--quiet")
    assert p.returncode == 0, p.stderr
    assert json.loads(out.with_suffix(".json").read_text())["feature_params"] == d["params"]
    p = _run(repo, "live_predictions.py", "--model", str(out), "--json",
             str(feats / "Actor_01" / "03-01-05-01-01-01-01.wav"))
    assert p.returncode == 0, p.stderr
    assert len(json.loads(p.stdout)["probabilities"]) == 8


def test_a_new_corpus_is_one_table_entry(tmp_path):
    feats = tmp_path / "features"
    _tones(feats, range(1, 5))            # RAVDESS speech actors
    _tones(feats, range(30, 34))          # another corpus's speakers, renamed the same way
    # before the entry: actors 30-33 belong to no corpus and are named and skipped
    repo = _copy(tmp_path)
    p = _run(repo, "create_features.py", "--features-dir", str(feats), "--jobs", "1",
             "--quiet", "--no-cache")
    assert p.returncode == 0, p.stderr
    skipped = [line for line in p.stderr.splitlines() if line.startswith("skipped:")]
    assert len(skipped) == 32 and all("belongs to no corpus" in line for line in skipped)
    _insert_after(repo / "ser" / "corpora.py", 'Corpus("tess"', """\
        Corpus("toy", "toy", "toy", EMOTIONS, True, lambda f: 30 <= f.actor <= 39),
    """, skip=1)
    p = _run(repo, "create_features.py", "--features-dir", str(feats), "--jobs", "1", "--quiet")
    assert p.returncode == 0 and "skipped:" not in p.stderr, p.stderr
    d = joblib.load(feats / "features_mfcc.joblib")
    corpus = dict(zip(d["meta"]["actor"].tolist(), d["meta"]["corpus"].tolist()))
    assert corpus == {**{a: "ravdess_speech" for a in range(1, 5)},
                      **{a: "toy" for a in range(30, 34)}}
    media = tmp_path / "media"
    p = _run(repo, "neural_network.py", "--model", "mlp", "--protocol", "corpus",
             "--train-corpus", "toy", "--subset", "speech+toy", "--epochs", "2",
             "--features-dir", str(feats), "--media-dir", str(media), "--no-save", "--quiet")
    assert p.returncode == 0, p.stderr
    rec = json.loads((media / "results.json").read_text())
    assert [(r["train_corpus"], r["test_corpus"], r["n_test"]) for r in rec] == \
        [("toy", "ravdess", 32)]
