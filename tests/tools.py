"""How tests find the real tools and shared material they need.

Outside CI a missing tool skips the test with a reason; in CI (CI=true) it fails, so that a
missing install step can never hide behind a green run.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent
SHARED = PROJECT.parent / "shared"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(reason: str) -> None:
    """Skip (or, in CI, fail) the current test because something it needs is missing."""
    if in_ci():
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


def require_tool(name: str) -> str:
    """The absolute path of a real tool; skip or fail when it is not installed."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if path is None:
        unavailable(f"the tool {name!r} is not installed (scripts/setup.sh installs it)")
    assert path is not None
    return path


def require_shared(*parts: str, purpose: str = "") -> Path:
    """A path under ../shared, which a user's fresh clone does not have."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        why = f" ({purpose})" if purpose else ""
        unavailable(f"{path} is not present: ../shared exists only beside the project's CI{why}")
    return path


def require_root() -> None:
    if os.geteuid() != 0:
        unavailable("this test needs root (namespaces, mounts, runc)")
