"""Your own data: a corpus defined by a CSV (path, emotion, speaker), through extraction and the
protocols, tested on real corpus files copied under other names."""
import csv
import json
import shutil

import joblib
import numpy as np
import pytest

import create_features
import neural_network
import ser.corpora
from conftest import needs_data, SHARED_DATA

EMOTION_OF = {1: "neutral", 3: "Happy", 4: "sadness", 5: "angry"}   # names and aliases


def _write_csv(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "emotion", "speaker", "note"])
        w.writerows(rows)


def _my_corpus(root, actors=(1, 2, 3, 4, 5, 6)):
    """Real RAVDESS clips copied to recordings/<speaker>/take_N.flac, listed in a CSV whose
    speakers and emotions say what the RAVDESS names said."""
    rows = []
    for a in actors:
        clips = sorted((SHARED_DATA / "ravdess_speech" / f"Actor_{a:02d}").glob("*.flac"))
        clips = [c for c in clips if int(c.name.split("-")[2]) in EMOTION_OF][:8]
        d = root / "recordings" / f"person{a}"
        d.mkdir(parents=True)
        for i, c in enumerate(clips):
            shutil.copy(c, d / f"take_{i}.flac")
            rows.append((f"recordings/person{a}/take_{i}.flac",
                         EMOTION_OF[int(c.name.split("-")[2])], f"person {a}", "x"))
    return rows


def test_rows_are_read_with_aliases_and_bad_rows_named(tmp_path):
    _write_csv(tmp_path / "c.csv", [("a.wav", "Fear", "ann", ""), ("b.wav", "bored", "bob", ""),
                                    ("c.wav", "calm", "", ""), ("/abs/d.wav", "angry", "bob", "")])
    rows, problems = ser.corpora.read_csv_corpus(tmp_path / "c.csv")
    assert [(r.rel, ser.corpora.EMOTIONS[r.name.label], r.speaker, r.name.actor) for r in rows] \
        == [("a.wav", "fearful", "ann", 1000), ("/abs/d.wav", "angry", "bob", 1001)]
    assert rows[0].path == tmp_path / "a.wav" and str(rows[1].path) == "/abs/d.wav"
    assert all(r.name.corpus == "csv" for r in rows)
    assert len(problems) == 2
    assert problems[0].startswith(f"{tmp_path / 'c.csv'}:3: unknown emotion 'bored'")
    assert problems[1] == f"{tmp_path / 'c.csv'}:4: empty speaker"
    (tmp_path / "bad.csv").write_text("file,label\nx.wav,happy\n")
    with pytest.raises(ValueError, match=r"bad\.csv: the CSV lacks the column\(s\) path, "
                                         r"emotion, speaker"):
        ser.corpora.read_csv_corpus(tmp_path / "bad.csv")
    with pytest.raises(ValueError, match=r"nope\.csv: cannot read the CSV"):
        ser.corpora.read_csv_corpus(tmp_path / "nope.csv")


@needs_data
def test_a_csv_corpus_trains_with_speakers_held_out(tmp_path, capsys):
    rows = _my_corpus(tmp_path)
    rows += [("recordings/missing.flac", "happy", "person 1", ""),
             ("recordings/person1/take_0.flac", "bored", "person 1", "")]
    _write_csv(tmp_path / "mine.csv", rows)
    assert create_features.main(["--csv", str(tmp_path / "mine.csv"), "--feature", "stats",
                                 "--jobs", "1", "--quiet"]) == 0
    out = capsys.readouterr()
    skipped = [line for line in out.err.splitlines() if line.startswith("skipped:")]
    assert len(skipped) == 2
    assert any("mine.csv:" in s and "unknown emotion 'bored'" in s for s in skipped)
    assert any("missing.flac: file not found" in s for s in skipped)
    feats = tmp_path / "mine_features"
    d = joblib.load(feats / "features_stats.joblib")
    n = len(rows) - 2
    assert d["X"].shape[0] == n and set(d["meta"]["corpus"]) == {"csv"}
    assert sorted(set(d["meta"]["speaker"])) == [f"person {a}" for a in range(1, 7)]
    assert d["meta"]["path"][0] == rows[0][0]
    want = [ser.corpora.EMOTIONS.index(
        ser.corpora.EMOTION_ALIASES.get(r[1].lower(), r[1].lower())) for r in rows[:n]]
    np.testing.assert_array_equal(d["y"], want)
    media = tmp_path / "media"
    assert neural_network.main(["--model", "mlp", "--feature", "stats", "--protocol", "speaker",
                                "--subset", "csv", "--folds", "3", "--epochs", "2",
                                "--features-dir", str(feats), "--media-dir", str(media),
                                "--no-save", "--quiet"]) == 0
    rec = json.loads((media / "results.json").read_text())[0]
    assert rec["subset"] == "csv" and len(rec["folds"]) == 3
    held = [set(f["test_actors"]) for f in rec["folds"]]
    assert set().union(*held) == set(range(1000, 1006)) and sum(map(len, held)) == 6
