"""The linters are part of the suite: a style or typing error fails like any other test."""

from __future__ import annotations

import subprocess
import sys

from tests.tools import PROJECT


def run_tool(*args: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", *args], cwd=PROJECT, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_check() -> None:
    run_tool("ruff", "check", "smith", "crashcart", "tests", "bench")


def test_ruff_format() -> None:
    run_tool("ruff", "format", "--check", "smith", "crashcart", "tests", "bench")


def test_mypy_strict() -> None:
    run_tool("mypy")
