"""The source's own checks: ruff's lint over the repository, and mypy's type check of
the package (its settings in pyproject.toml), each clean."""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=600)


def test_ruff_finds_nothing():
    got = _run("ruff", "check", "--no-cache", ".")
    assert got.returncode == 0, got.stdout + got.stderr


def test_mypy_finds_nothing(tmp_path):
    got = _run("mypy", "--cache-dir", str(tmp_path / "mypy"))
    assert got.returncode == 0, got.stdout + got.stderr
    assert "Success" in got.stdout
