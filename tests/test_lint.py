"""The linters are part of the suite: a style or typing error fails like any other test."""

from __future__ import annotations

import ast
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


def test_the_library_imports_no_command_line() -> None:
    """Only smith/cli/ (and crashcart's own command line) knows click: the library below
    raises SmithError and reports progress through smith/progress.py's Display."""
    offenders = []
    for path in sorted((PROJECT / "smith").rglob("*.py")):
        if (PROJECT / "smith" / "cli") in path.parents:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            if any(name.split(".")[0] == "click" for name in names):
                offenders.append(f"{path.relative_to(PROJECT)}:{node.lineno}")
    assert not offenders, offenders
