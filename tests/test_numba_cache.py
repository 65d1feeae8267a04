"""numba's cache under processes that start together (ser/numba_cache.py, numba issue 10128).

Every process here is a real subprocess with its own empty ``NUMBA_CACHE_DIR``, so that a
crash (SIGSEGV from a poisoned cache) is a failed assertion with a message, not a dead runner.
``SER_RACE_ROUNDS`` (default 2) sets the rounds of the new-user check.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path


from conftest import ROOT, SHARED_DATA, needs_data
import ser.features
from ser import numba_cache

PY = sys.executable
# the product's features: numpy alone, no numba (since the encoder's front end went numpy too)
FEATURES = ("import numpy as np, ser.features; "
            "t = np.arange(22050) / 22050; y = (0.3 * np.sin(2 * np.pi * 330 * t)).astype('f4'); "
            "f = ser.features.extract_features(y, sets=ser.features.FEATURE_SETS); "
            "print(' '.join(f'{v.sum():.6f}' for v in f.values()))")
# librosa through the project's guard (what the tests' librosa reference and the augmented
# copies use): the numba functions of the race, float32 and float64 variants
EXTRACT = ("import numpy as np; from ser import numba_cache; librosa = numba_cache.librosa(); "
           "t = np.arange(22050) / 22050; y = (0.3 * np.sin(2 * np.pi * 330 * t)).astype('f4'); "
           "p32, _ = librosa.piptrack(y=y, sr=22050); p64, _ = librosa.piptrack(y=y.astype('f8'), sr=22050); "
           "c = librosa.feature.chroma_stft(y=y, sr=22050); "
           "print(f'{p32.sum():.6f} {p64.sum():.6f} {c.sum():.6f}')")
# librosa alone, without the project's check: what an unprotected process meets
PLAIN_PITCH = ("import numpy as np, librosa; y = np.random.default_rng(0).standard_normal(22050); "
               "librosa.piptrack(y=y.astype('f4'), sr=22050); librosa.piptrack(y=y, sr=22050); "
               "print('ok')")


def fresh_env(tmp: Path) -> dict:
    (tmp / "numba").mkdir(parents=True, exist_ok=True)
    (tmp / "ser").mkdir(parents=True, exist_ok=True)
    return dict(os.environ, NUMBA_CACHE_DIR=str(tmp / "numba"), SER_CACHE_DIR=str(tmp / "ser"),
                PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")


def run(code_or_args, env, **kw):
    args = [PY, "-c", code_or_args] if isinstance(code_or_args, str) else code_or_args
    return subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, **kw)


def explain(p) -> str:
    sig = f" (signal {-p.returncode})" if p.returncode < 0 else ""
    return f"exit {p.returncode}{sig}\n{p.stderr[-2000:]}"


def test_cache_layout_is_numbas(tmp_path, monkeypatch):
    """The files the stamp watches are where numba writes them (its locator's layout)."""
    from numba.core.caching import _CacheLocator
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    mods = numba_cache.cached_modules()
    assert any(name == "librosa.core.pitch" for name, _ in mods)
    for _, src in mods:
        assert numba_cache.cache_dir(src) == tmp_path / _CacheLocator.get_suitable_cache_subpath(
            str(src))


def _swap_gufunc_pair(files: list[Path]) -> Path:
    """Poison the cache as the race does: a gufunc's two variants from different compilations."""
    for f in files:
        if f.name.startswith("guf-pitch.") and f.name.endswith(".1.nbc"):
            other = f.with_name(f.name.replace(".1.nbc", ".2.nbc"))
            shutil.copyfile(f, other)
            return other
    raise AssertionError(f"no gufunc pair of librosa.core.pitch among {[p.name for p in files]}")


def test_the_feature_sets_need_no_numba(tmp_path):
    """Every feature set, the encoder's included, computed on an empty cache: nothing compiled,
    no stamp (so the race of numba issue 10128 cannot reach extraction or prediction)."""
    env = fresh_env(tmp_path)
    p = run(FEATURES + "; import sys; print(sorted(m for m in sys.modules "
                       "if m.split('.')[0] in ('numba', 'librosa')))", env)
    assert p.returncode == 0, explain(p)
    assert p.stdout.strip().splitlines()[-1] == "[]"
    assert not [f for f in (tmp_path / "numba").rglob("*") if f.is_file()]
    assert not list((tmp_path / "ser" / "numba").glob("ready-*.json"))


def test_processes_started_together_on_a_fresh_cache_and_a_poisoned_one(tmp_path):
    env = fresh_env(tmp_path)
    # three processes at once on an empty cache: the first compiles under the lock, the others
    # wait and load; all give the same features
    procs = [subprocess.Popen([PY, "-c", EXTRACT], env=env, cwd=ROOT, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(3)]
    outs = [(p.wait(), *p.communicate()) for p in procs]
    for rc, out, err in outs:
        assert rc == 0, f"exit {rc}: {err[-2000:]}"
    assert len({out for _, out, _ in outs}) == 1
    stamps = list((tmp_path / "ser" / "numba").glob("ready-*.json"))
    assert len(stamps) == 1
    recorded = json.loads(stamps[0].read_text())["files"]
    assert any("guf-pitch." in name for name in recorded)
    assert all(name.startswith(str(tmp_path / "numba")) for name in recorded)

    # a cache poisoned by an unprotected run (here: after the stamp was written) crashes plain
    # librosa, but the project's processes notice, rebuild, and go on
    files = sorted(Path(n) for n in recorded)
    _swap_gufunc_pair(files)
    plain = run(PLAIN_PITCH, env)
    assert plain.returncode != 0, "the poisoned cache was expected to crash plain librosa"
    p = run(EXTRACT, env)
    assert p.returncode == 0, explain(p)
    assert p.stdout == outs[0][1]
    assert "removed" in p.stderr and "broken cache files" in p.stderr
    assert run(PLAIN_PITCH, env).returncode == 0

    # a poisoned cache left by an older version of the project (no stamp at all)
    for s in (tmp_path / "ser" / "numba").glob("ready-*.json"):
        s.unlink()
    _swap_gufunc_pair(numba_cache_files(env))
    assert run(PLAIN_PITCH, env).returncode != 0
    p = run(EXTRACT, env)
    assert p.returncode == 0, explain(p)
    assert p.stdout == outs[0][1]


def numba_cache_files(env) -> list[Path]:
    p = run("from ser import numba_cache as n; print('\\n'.join(map(str, n.cache_files())))", env)
    assert p.returncode == 0, explain(p)
    return [Path(line) for line in p.stdout.split()]


def _small_corpus(dest: Path) -> list[Path]:
    """Two RAVDESS actors (6 files each, speech and song) and 4 TESS files, RAVDESS-style."""
    picked = []
    for actor in ("Actor_01", "Actor_02"):
        out = dest / actor
        out.mkdir(parents=True)
        for sub, n in (("ravdess_speech", 4), ("ravdess_song", 2)):
            for f in sorted((SHARED_DATA / sub / actor).glob("*.flac"))[:: 7][:n]:
                picked.append(Path(shutil.copy(f, out / f.name)))
    return picked


@needs_data
def test_new_user_parallel_extraction_then_every_shipped_model(tmp_path):
    """What a new user meets: an empty cache, parallel extraction of every feature set, then
    every shipped model predicts a few files; several rounds, each a fresh install's cache."""
    rounds = int(os.environ.get("SER_RACE_ROUNDS", "2"))
    models = sorted((ROOT / "models").glob("*.h5"))
    assert len(models) >= 3
    for r in range(rounds):
        base = tmp_path / f"round{r}"
        env = fresh_env(base)
        files = _small_corpus(base / "features")
        p = run([PY, "create_features.py", "--feature", "all", "--jobs", "2", "--quiet",
                 "--features-dir", str(base / "features")], env)
        assert p.returncode == 0, f"round {r}: extraction: {explain(p)}"
        assert len(list((base / "features").glob("features_*.joblib"))) == len(ser.features.FEATURE_SETS)
        for m in models:
            p = run([PY, "live_predictions.py", "--model", str(m), "--json",
                     *map(str, files[:3])], env)
            assert p.returncode == 0, f"round {r}: {m.name}: {explain(p)}"
            lines = [json.loads(line) for line in p.stdout.splitlines()]
            assert len(lines) == 3 and all(line.get("emotion") for line in lines), p.stdout
