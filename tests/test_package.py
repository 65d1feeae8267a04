"""The package as a whole: its public face, one error root, no import cycle, short functions,
and the installed ``ser`` command (issues 29 and 30)."""
from __future__ import annotations

import ast
import importlib
import inspect
import os
import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import ser
from ser.errors import SerError

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ["download_data", "tess_pipeline", "create_features", "neural_network",
           "live_predictions", "plot_model"]


def _modules() -> dict[str, Path]:
    """Every module of the package: dotted name -> file."""
    out = {}
    for f in (ROOT / "ser").rglob("*.py"):
        parts = f.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = f
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that ``name`` imports anywhere in its file (inside functions too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in modules else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m in modules and m != name and m != "ser"}


def test_public_face_is_light_and_complete():
    # a fresh interpreter: importing ser loads neither TensorFlow nor librosa
    code = ("import sys, ser; heavy = [m for m in ('tensorflow', 'keras', 'librosa', 'numba') "
            "if m in sys.modules]; print(heavy)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr
    from ser import Prediction, Predictor, extract_features, load_audio
    from ser.audio import load_audio as audio_load
    from ser.predict import Predictor as P
    assert Predictor is P and load_audio is audio_load and callable(extract_features)
    assert Prediction.__module__ == "ser.predict"
    assert set(ser.__all__) <= set(dir(ser))
    assert ser.__version__ and ser.__version__[0].isdigit()
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        ser.nonsense  # noqa: B018


def test_every_exception_descends_from_ser_error():
    classes = []
    for info in pkgutil.walk_packages(ser.__path__, "ser."):
        module = importlib.import_module(info.name)
        for obj in vars(module).values():
            if (inspect.isclass(obj) and issubclass(obj, BaseException)
                    and obj.__module__ == info.name):
                classes.append(obj)
    assert len(classes) >= 15                      # the walk saw the package's errors
    strays = [f"{c.__module__}.{c.__qualname__}" for c in classes if not issubclass(c, SerError)]
    assert not strays, f"exceptions outside SerError: {strays}"
    # the builtin each resembles still catches it
    from ser.audio import AudioError
    from ser.files import OutputError
    assert issubclass(AudioError, ValueError) and issubclass(OutputError, OSError)


def test_no_import_cycle_among_the_package_modules():
    modules = _modules()
    graph = {m: _imports(m, f, modules) for m, f in modules.items()}
    assert graph["ser.byols"] and graph["ser.checkpoint"]     # the walk sees imports
    state: dict[str, int] = {}
    cycles = []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycles.append(stack[stack.index(n):] + [n])
            elif n not in state:
                visit(n, stack + [n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_no_function_over_100_lines():
    files = [*(ROOT / "ser").rglob("*.py"), *(ROOT / f"{s}.py" for s in SCRIPTS)]
    long = []
    for f in files:
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > 100 and node.name != "build_parser":    # argument tables are exempt
                    long.append(f"{f.relative_to(ROOT)}:{node.lineno} {node.name} ({n} lines)")
    assert not long, long


def _ser_command() -> str:
    exe = Path(sys.executable).with_name("ser")
    if exe.exists():
        return str(exe)
    found = shutil.which("ser")
    if found is None:
        pytest.skip("the ser command is not installed (pip install -e .)")
    return found


def test_ser_command_runs_each_script_from_any_folder(tmp_path):
    ser_cmd = _ser_command()
    env = dict(os.environ, HOME=str(tmp_path))
    r = subprocess.run([ser_cmd, "--version"], capture_output=True, text=True, cwd=tmp_path,
                       env=env)
    assert r.returncode == 0 and r.stdout.strip() == f"ser {ser.__version__}", r
    r = subprocess.run([ser_cmd, "--help"], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0
    for name, (module, _) in __import__("ser.cli", fromlist=["COMMANDS"]).COMMANDS.items():
        assert f"  {name} " in r.stdout
        # each subcommand is its script: the same options in its --help
        sub = subprocess.run([ser_cmd, name, "--help"], capture_output=True, text=True,
                             cwd=tmp_path, env=env)
        assert sub.returncode == 0, (name, sub.stderr)
        parser = importlib.import_module(module)
        if hasattr(parser, "build_parser"):
            for action in parser.build_parser()._actions:
                for opt in action.option_strings:
                    assert opt in sub.stdout, (name, opt)
    r = subprocess.run([ser_cmd, "nonsense"], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2 and "unknown command 'nonsense'" in r.stderr
    r = subprocess.run([ser_cmd], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2 and "usage: ser COMMAND" in r.stdout


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_script_has_version_and_exit_codes(script):
    r = subprocess.run([sys.executable, str(ROOT / f"{script}.py"), "--version"],
                       capture_output=True, text=True, cwd="/")
    assert r.returncode == 0 and r.stdout.split() == [f"{script}.py", ser.__version__], r
    r = subprocess.run([sys.executable, str(ROOT / f"{script}.py"), "--help"],
                       capture_output=True, text=True, cwd="/")
    text = " ".join(r.stdout.split())
    assert r.returncode == 0 and "Exit status: 0" in text, text[-300:]
    after = text[text.index("Exit status: 0"):]
    assert " 2 " in after or "2 bad arguments" in after, after     # argparse's usage error


def test_only_the_command_line_layer_reads_an_argparse_namespace():
    """argparse and an ``args`` namespace parameter belong to the scripts and ``ser/cli/``;
    the library takes plain keyword arguments."""
    leaks = []
    for name, path in _modules().items():
        if name == "ser.cli" or name.startswith("ser.cli."):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import) and any(a.name == "argparse" for a in node.names):
                leaks.append(f"{name}: imports argparse")
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                params = [a.arg for a in node.args.args + node.args.kwonlyargs]
                if "args" in params:
                    leaks.append(f"{name}.{node.name}: takes an args namespace")
    assert not leaks, leaks


def test_no_assert_guards_data_in_the_library():
    """``python -O`` strips asserts: the library checks with an if and raises a named error."""
    found = [f"{name}:{node.lineno}" for name, path in _modules().items()
             for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Assert)]
    assert not found, found


@pytest.mark.skipif(shutil.which("make") is None, reason="GNU make is not installed")
def test_make_predict_finds_the_demo_clips_when_it_runs(tmp_path):
    """`make predict` looks for its clips when its recipe runs (in `make all` the data step
    comes first in the same make); without them it says what to do, not a usage error."""
    data = ROOT.parent / "shared" / "data" / "ravdess_speech" / "Actor_01"
    if not data.is_dir():
        pytest.skip(f"{data}: the corpora are not beside the repository")
    (tmp_path / "live_predictions.py").symlink_to(ROOT / "live_predictions.py")
    make = ["make", "-f", str(ROOT / "Makefile"), "-o", "setup", f"PY={sys.executable}",
            "predict"]
    r = subprocess.run(make, cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode != 0 and "no demo clips in features/Actor_01 yet" in r.stderr, r
    assert "usage:" not in r.stderr
    demo = tmp_path / "features" / "Actor_01"
    demo.mkdir(parents=True)
    for name in ("03-01-01-01-01-01-01", "03-01-03-02-01-01-01", "03-01-03-01-01-01-01",
                 "03-01-04-02-01-01-01", "03-01-05-02-01-01-01"):
        shutil.copy(data / f"{name}.flac", demo)
    r = subprocess.run(make, cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    judged = [line.split(":")[0] for line in r.stdout.splitlines() if line.startswith("features/")]
    assert judged == [f"features/Actor_01/{n}.flac" for n in (
        "03-01-01-01-01-01-01", "03-01-03-02-01-01-01", "03-01-04-02-01-01-01",
        "03-01-05-02-01-01-01")]                 # the strong intensity where there is one
