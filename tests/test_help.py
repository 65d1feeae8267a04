"""Every script and benchmark answers ``--help`` (a usage line, exit 0) without running work.

A refactor once left two benchmarks failing before they parsed their arguments (a function-local
``import ser.training`` made the name ``ser`` local to ``main``): this catches that class.
"""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p.relative_to(ROOT).as_posix()
                 for p in [*ROOT.glob("*.py"), *ROOT.glob("benchmarks/*.py")]
                 if p.name not in ("setup.py", "conftest.py"))


@pytest.mark.parametrize("script", SCRIPTS)
def test_help(script):
    p = subprocess.run([sys.executable, script, "--help"], cwd=ROOT, capture_output=True,
                       text=True)
    assert p.returncode == 0, f"{script} --help failed:\n{p.stderr[-2000:]}"
    assert p.stdout.startswith("usage:"), p.stdout[:200]
