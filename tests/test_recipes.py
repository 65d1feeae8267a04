"""The shipped recipes as one table (ser/recipes.py, issue 30): what ``--recipe NAME`` stands
for, that the Makefile trains them by name, that "is this a shipped recipe" comes from the table,
and where each kind of run writes (issue 29: experiments never rewrite media/)."""
import dataclasses
import json
import re
import shlex
from pathlib import Path

import pytest

import neural_network
import ser.paths
import ser.recipes
from conftest import ROOT

# the Makefile's train target before the table (RECOMMENDED and ADAPTIVE were flag strings):
# `--recipe NAME --all-data` must stand for exactly these, so the models re-train byte for byte
BEFORE = {
    "cnn": "--model improved_cnn --all-data",
    "recommended": "--model mlp --ensemble 5 --feature stats_whisper --augment 4 --all-data "
                   "--save models/emotion_mlp_stats_whisper.h5",
    "adaptive": "--model mlp --ensemble 5 --feature stats_whisper --augment 4 --norm speaker "
                "--all-data "
                "--save models/emotion_mlp_stats_whisper_speaker.h5",
}
EVALUATION_BEFORE = "--no-save --protocol random"     # the train target's evaluation run


def _plan(argv):
    args, parser = neural_network.parse(argv)
    return args, neural_network.plan(args, parser)


def _resolved(plan):
    return dataclasses.replace(plan, save_to=None if plan.save_to is None
                               else Path(plan.save_to).resolve())


@pytest.mark.parametrize("name", sorted(BEFORE))
def test_a_recipe_is_exactly_the_flags_the_makefile_passed(name, monkeypatch):
    monkeypatch.chdir(ROOT)              # make ran the old flag strings from the repository
    new_args, new = _plan(["--recipe", name, "--all-data"])
    old_args, old = _plan(shlex.split(BEFORE[name]))
    skip = {"recipe", "save"}
    assert {k: v for k, v in vars(new_args).items() if k not in skip} == \
        {k: v for k, v in vars(old_args).items() if k not in skip}
    assert _resolved(new) == _resolved(old)
    assert new.recipe == old.recipe == name and new.notice is None
    assert Path(new.save_to) == ser.recipes.RECIPES[name].model
    assert new.reports_dir == new.records_dir == ser.paths.MEDIA_DIR   # its calibration records
    # the evaluation run
    _, ev_new = _plan(["--recipe", "cnn", *shlex.split(EVALUATION_BEFORE)])
    _, ev_old = _plan(shlex.split(EVALUATION_BEFORE))
    assert ev_new == ev_old and ev_new.recipe == "cnn" and ev_new.save_to is None


@pytest.mark.parametrize("name", [n for n, r in ser.recipes.RECIPES.items() if r.model])
def test_each_recipe_is_what_its_shipped_model_was_trained_with(name):
    """The table against the committed sidecars: model, features, ensemble, copies, norm."""
    side = json.loads(ser.recipes.RECIPES[name].model.with_suffix(".json").read_text())
    _, p = _plan(["--recipe", name, "--all-data"])
    assert (p.models, p.feature, p.subset) == \
        ([side["model"]], side["feature"], side["trained_on"]["subset"])
    want = {k: side["training"][k] for k in ("batch_size", "augment", "ensemble",
                                             "learning_rate", "seed", "norm")}
    assert {k: getattr(p.cfg, k) for k in want} == want


def test_the_makefile_trains_the_table_by_name():
    text = (ROOT / "Makefile").read_text()
    target = re.search(r"^train:.*\n((?:\t.*\n)+)", text, re.M).group(1)
    lines = [shlex.split(line.split("neural_network.py", 1)[1].replace("$(TRAIN_ARGS)", ""))
             for line in target.splitlines() if "neural_network.py" in line]
    assert lines and all(a[:1] == ["--recipe"] and a[1] in ser.recipes.RECIPES for a in lines)
    saved = {a[1] for a in lines if "--all-data" in a}
    assert saved == {n for n, r in ser.recipes.RECIPES.items() if r.model is not None}
    assert not any(opt in a for a in lines for opt in ("--model", "--feature", "--save"))
    assert not re.search(r"^(RECOMMENDED|ADAPTIVE)\s*:?=", text, re.M)


def test_shipped_or_not_comes_from_the_table(monkeypatch, tmp_path):
    """A new entry makes its options a shipped recipe (media/, its model file); without it
    the same run is an experiment with a run folder."""
    argv = ["--model", "lstm", "--epochs", "7", "--all-data"]
    _, p = _plan(argv)
    assert p.recipe is None and p.save_to.parent == p.run_dir
    assert p.run_dir.parent == ser.recipes.RUNS_DIR and not p.run_dir.exists()
    assert p.notice.startswith("no shipped recipe trains lstm: its model is models/runs/")
    table = {**ser.recipes.RECIPES, "lstm7": ser.recipes.Recipe(
        ("--model", "lstm", "--epochs", "7"), tmp_path / "lstm7.h5", "a test entry")}
    monkeypatch.setattr(neural_network, "RECIPES", table)
    _, p = _plan(argv)
    assert (p.recipe, p.save_to, p.reports_dir, p.notice) == \
        ("lstm7", tmp_path / "lstm7.h5", ser.paths.MEDIA_DIR, None)
    _, q = _plan(["--recipe", "lstm7", "--all-data"])
    assert q == p
    assert "lstm7" in neural_network.build_parser().format_help()


@pytest.mark.parametrize("argv, shipped", [
    ([], "cnn"),
    (["--protocol", "speaker"], "cnn"),
    (["--recipe", "adaptive", "--protocol", "corpus"], "adaptive"),
    (["--model", "all", "--protocol", "speaker"], "comparison"),
    (["--recipe", "recommended", "--epochs", "3"], None),
    (["--epochs", "1", "--subset", "speech"], None),
    (["--features-dir", "my_features", "--subset", "csv", "--model", "mlp"], None),
    (["--model", "mlp"], None),
])
def test_only_the_shipped_recipes_write_media(argv, shipped, tmp_path):
    _, p = _plan(argv)
    assert p.recipe == shipped
    if shipped:
        assert p.reports_dir == ser.paths.MEDIA_DIR and p.run_dir is None
    else:
        assert p.reports_dir == p.run_dir and p.run_dir.parent == ser.recipes.RUNS_DIR
        assert p.run_dir.name.startswith(f"{p.models[0] if len(p.models) == 1 else 'all'}_")
        assert p.save_to is None or p.save_to.parent == p.run_dir
    _, q = _plan([*argv, "--media-dir", str(tmp_path)])      # --media-dir still overrides
    assert q.reports_dir == q.records_dir == tmp_path


def test_options_beside_a_recipe_win_and_make_an_experiment():
    args, p = _plan(["--epochs", "3", "--recipe", "recommended", "--all-data"])
    assert (args.model, args.feature, args.ensemble, args.augment, args.epochs) == \
        ("mlp", "stats_whisper", 5, 4, 3)
    assert p.recipe is None and p.epochs == 3
    assert p.notice.startswith("this run differs from the shipped recipe recommended "
                               "(--epochs 3): its model is models/runs/mlp_stats_whisper_all-data_")
    assert "not emotion_mlp_stats_whisper.h5" in p.notice


def test_run_folders_are_new_and_not_made_in_advance(tmp_path):
    a = ser.recipes.run_folder("mlp", "stats", "speaker", "r1", runs_dir=tmp_path)
    assert a == tmp_path / "mlp_stats_speaker_r1" and not a.exists()
    a.mkdir()
    b = ser.recipes.run_folder("mlp", "stats", "speaker", "r1", runs_dir=tmp_path)
    assert b == tmp_path / "mlp_stats_speaker_r1-2"


def test_every_recipe_parses_and_is_listed_in_help():
    parser = neural_network.build_parser()
    text = " ".join(parser.format_help().split())
    for name, r in ser.recipes.RECIPES.items():
        assert vars(parser.parse_args(list(r.args)))   # no SystemExit: valid options
        assert f"{name} {' '.join(r.args)}" in text
        if r.model is not None:
            assert f"--all-data saves {r.model.relative_to(ROOT)}" in text
    assert "models/runs/<model>_<feature>_<protocol>_<run>/" in text
