"""Other interpreters (3.12, 3.13 from pyenv) with smith's run-time pins, for the tests that
show the same inputs give the same bytes under every supported Python.

One venv per version, holding requirements.txt only (the run-time pins: the test tools stay
in the main .venv), made on first use under .venv and shared by every test that needs it.
It is made beside its final name and renamed into place, so an interrupted run leaves no
half-made venv that a later run would trust."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys

from tests.tools import PROJECT, unavailable

PIP_NOISE = "is ignored: it is neither"  # pip's notes on this machine's index configuration


def other_python(version: str) -> str:
    """The python of a venv of pyenv's `version` with smith's run-time pins (smith itself
    comes from the checkout, through PYTHONPATH or the working directory)."""
    found = sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}.*/bin/python*")))
    found = [p for p in found if p.endswith(f"python{version}")]
    if not found:
        unavailable(f"Python {version} is not installed under ~/.pyenv/versions")
    requirements = PROJECT / "requirements.txt"
    pins = requirements.read_text()
    venv = PROJECT / ".venv" / f"aux-python{version}"
    stamp = venv / "requirements.txt"
    if stamp.exists() and stamp.read_text() == pins:
        return str(venv / "bin" / "python")
    work = venv.with_name(f".{venv.name}-{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    try:
        # The venv's scripts name their directory: make it where it will live, then move
        # the old one away first. A venv's python is a symlink, so the move keeps it valid.
        # No pip of its own (ensurepip alone takes ~10 s): the main venv's pip installs
        # into it (`pip --python`); the pins are exact, so no dependency resolution.
        subprocess.run([found[-1], "-m", "venv", "--without-pip", str(work)], check=True)
        pip = subprocess.run(
            [sys.executable, "-m", "pip", "--python", str(work / "bin" / "python"), "install",
             "-q", "--disable-pip-version-check", "--no-deps", "--no-compile",
             "-r", str(requirements)],
            check=False, capture_output=True, text=True,
        )  # fmt: skip
        said = [line for line in pip.stderr.splitlines() if PIP_NOISE not in line]
        assert pip.returncode == 0, f"pip install into {work} failed:\n" + "\n".join(said)
        (work / "requirements.txt").write_text(pins)
        shutil.rmtree(venv, ignore_errors=True)
        os.rename(work, venv)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return str(venv / "bin" / "python")
