"""Speaker adaptation: statistics from a speaker's unlabelled audio, model untouched (the
statistics themselves: tests/test_normalization.py)."""
import json
import shutil

import numpy as np
import pytest

import live_predictions
import ser.checkpoint
import ser.corpora
import ser.files
import ser.paths
import ser.predict
from tiny_model import build_tiny_model


@pytest.fixture
def speaker_model(shared_data, tmp_path):
    """The tiny test model, its sidecar turned into a speaker-adaptive one."""
    path = build_tiny_model(tmp_path, shared_data)
    side = json.loads(ser.checkpoint.sidecar_path(path).read_text())
    side["adaptation"] = "speaker"
    side["speaker_prior_weight"] = 10.0
    ser.files.write_json(ser.checkpoint.sidecar_path(path), side)
    return path


def test_enrolment_changes_statistics_not_the_model(speaker_model, shared_data):
    p = ser.predict.Predictor(speaker_model)
    before_norm = p.adaptation.normalization()
    weights = [w.copy() for w in p.model.get_weights()] if hasattr(p, "model") else None
    clip = shared_data / "ravdess_speech" / "Actor_05" / "03-01-05-02-01-01-05.flac"
    before = p.predict_file(clip)
    folder = shared_data / "ravdess_speech" / "Actor_05"
    used, errors = p.enrol(sorted(folder.glob("*.flac"))[:30])
    assert used == 30 and not errors
    after_norm = p.adaptation.normalization()
    assert after_norm["n"] == 30
    assert not np.allclose(after_norm["mean"], before_norm["mean"])
    after = p.predict_file(clip)
    assert after.probabilities != before.probabilities
    if weights is not None:
        for a, b in zip(weights, p.model.get_weights()):
            np.testing.assert_array_equal(a, b)
    # the files on disk are untouched too
    assert json.loads(ser.checkpoint.sidecar_path(speaker_model).read_text())["normalization"] == before_norm


def test_enrol_cli_and_refusal(speaker_model, shared_data, tmp_path, capsys):
    folder = tmp_path / "me"
    folder.mkdir()
    for f in sorted((shared_data / "ravdess_speech" / "Actor_07").glob("*.flac"))[:12]:
        shutil.copy(f, folder / f.name)
    (folder / "broken.wav").write_bytes(b"not audio")
    clip = str(next(folder.glob("*.flac")))
    assert live_predictions.main(["--model", str(speaker_model), "--enrol", str(folder), "--json", clip]) == 0
    out = capsys.readouterr()
    assert "adapted to the speaker from 12 enrolment" in out.err
    assert "broken.wav" in out.err
    assert json.loads(out.out.strip())["emotion"] in ser.corpora.EMOTIONS
    plain = build_tiny_model(tmp_path / "plain", shared_data)
    assert live_predictions.main(["--model", str(plain), "--enrol", str(folder), clip]) == 2
    assert "not trained for speaker adaptation" in capsys.readouterr().err


def test_shipped_speaker_model_adapts(shared_data):
    path = ser.paths.ADAPTIVE_MODEL
    if not path.exists():
        pytest.skip(f"{path} not present")
    p = ser.predict.Predictor(path)
    assert p.adaptation.name == "speaker"
    used, _ = p.enrol(sorted((shared_data / "ravdess_song" / "Actor_03").glob("*.flac"))[:20])
    assert used == 20 and p.adaptation.normalization()["n"] == 20
