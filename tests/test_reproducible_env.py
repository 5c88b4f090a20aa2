"""The same digests whatever the environment: umask, TZ, locale, cwd, hash seed, Python.

Each variation runs `python -m tests.trees` (which writes the golden trees in every
compression) as a separate process and must print exactly tests/golden/writer.json.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.other_pythons import other_python
from tests.tools import PROJECT

GOLDEN = json.loads((PROJECT / "tests" / "golden" / "writer.json").read_text())

VARIATIONS = {
    "umask-002": {"umask": 0o002},
    "umask-077": {"umask": 0o077},
    "tz-and-locale": {"env": {"TZ": "Pacific/Chatham", "LC_ALL": "C.UTF-8", "LANG": "de_DE.UTF-8"}},
    "hash-seed": {"env": {"PYTHONHASHSEED": "12345"}},
    "other-cwd": {"cwd": "/"},
}


def run_trees(
    python: str, *, umask: int = 0o022, env: dict[str, str] | None = None, cwd: str | None = None
) -> object:
    full_env = {**os.environ, "PYTHONPATH": str(PROJECT), **(env or {})}
    proc = subprocess.run(
        [python, "-m", "tests.trees"],
        cwd=cwd or str(PROJECT),
        env=full_env,
        capture_output=True,
        text=True,
        check=False,
        preexec_fn=lambda: os.umask(umask),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


@pytest.mark.parametrize("name", sorted(VARIATIONS))
def test_same_digests_under_changed_environment(name: str, tmp_path: Path) -> None:
    variation: dict[str, object] = dict(VARIATIONS[name])
    if variation.get("cwd") == "/":
        variation["cwd"] = str(tmp_path)
    assert run_trees(sys.executable, **variation) == GOLDEN  # type: ignore[arg-type]


@pytest.mark.parametrize("version", ["3.12", "3.13"])
def test_same_digests_under_other_pythons(version: str) -> None:
    assert run_trees(other_python(version)) == GOLDEN
