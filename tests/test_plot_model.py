"""plot_model.py: a real diagram (pydot + Graphviz) of a real model, and clear failures."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import plot_model
import ser.paths
from tiny_model import build_tiny_model

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
needs_dot = pytest.mark.skipif(shutil.which("dot") is None,
                               reason="Graphviz `dot` not installed (apt-get install graphviz)")


@pytest.fixture(scope="session")
def model(tmp_path_factory, shared_data) -> Path:
    return build_tiny_model(tmp_path_factory.getbasetemp() / "tiny_model", shared_data)


def _check_diagram(png: Path) -> None:
    import matplotlib.image as mpimg
    data = png.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    img = mpimg.imread(str(png))                       # floats in [0, 1], (h, w, channels)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    gray = img[..., :3].mean(axis=2)
    dark = float(np.mean(gray < 0.5))
    assert gray.var() > 0.01                           # not a blank page
    assert 0.02 < dark < 0.9                           # boxes and text, not a flood fill


@needs_dot
def test_writes_a_real_diagram(model, tmp_path, capsys):
    out = tmp_path / "media" / "model.png"
    assert plot_model.main(["--model", str(model), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out}"
    _check_diagram(out)
    assert sorted(p.name for p in out.parent.iterdir()) == ["model.png"]   # no temp left
    assert out.stat().st_mode & 0o044                                      # not 0600


@needs_dot
def test_overwrites_and_other_formats(model, tmp_path):
    out = tmp_path / "model.png"
    out.write_bytes(b"old")
    assert plot_model.main(["--model", str(model), "--out", str(out), "--rankdir", "LR"]) == 0
    _check_diagram(out)
    svg = tmp_path / "model.svg"
    assert plot_model.main(["--model", str(model), "--out", str(svg)]) == 0
    assert b"<svg" in svg.read_bytes()[:2000] and b"Dense" in svg.read_bytes()


def test_without_graphviz_says_what_to_install(model, tmp_path, monkeypatch, capsys):
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))             # no `dot` reachable
    out = tmp_path / "model.png"
    rc = plot_model.main(["--model", str(model), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc != 0
    assert "graphviz" in err.lower() and "apt-get install graphviz" in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_missing_model_and_bad_format(tmp_path, capsys):
    assert plot_model.main(["--model", str(tmp_path / "none.h5"),
                            "--out", str(tmp_path / "m.png")]) == 2
    assert "model file not found" in capsys.readouterr().err
    assert plot_model.main(["--out", str(tmp_path / "m.txt")]) == 2
    assert "unsupported picture format" in capsys.readouterr().err


def test_help(capsys):
    with pytest.raises(SystemExit) as e:
        plot_model.main(["--help"])
    assert e.value.code == 0
    for action in plot_model.build_parser()._actions:
        assert action.help


@needs_dot
@pytest.mark.skipif(not ser.paths.CNN_MODEL.exists(), reason=f"{ser.paths.CNN_MODEL} not trained yet")
def test_shipped_model(tmp_path):
    out = tmp_path / "model.png"
    assert plot_model.main(["--out", str(out)]) == 0
    _check_diagram(out)


def test_a_missing_model_is_refused_before_tensorflow(tmp_path):
    import subprocess
    import sys
    from conftest import ROOT
    code = ("import sys, plot_model\n"
            f"rc = plot_model.main(['--model', {str(tmp_path / 'none.h5')!r}, '--out', "
            f"{str(tmp_path / 'm.png')!r}])\n"
            "print(rc, 'tensorflow' in sys.modules, 'keras' in sys.modules)\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    assert r.stdout.split() == ["2", "False", "False"], r.stderr


@needs_dot
def test_an_ensemble_shows_its_members_layers(tmp_path):
    """An ensemble's diagram draws each member's layers, not one opaque box per member."""
    import ser.checkpoint
    import ser.models
    members = [ser.models.build_model("mlp", (40, 1)) for _ in range(2)]
    ens = ser.models.ensemble_of(members, (40, 1))
    path = tmp_path / "ens.h5"
    ser.checkpoint.save_model(ens, path, ser.checkpoint.make_sidecar(
        model="mlp", feature="mfcc", input_shape=[40, 1], normalization=None,
        adaptation="none", trained_on={}, training={}, protocol="test", metrics={}),
        export=False)
    svg = tmp_path / "ens.svg"
    assert plot_model.main(["--model", str(path), "--out", str(svg)]) == 0
    text = svg.read_text()
    assert "member1" in text and "member2" in text
    assert text.count("Dense") >= 6                  # 3 per member (0 when drawn as boxes)
