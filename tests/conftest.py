from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.containers import DockerDaemon, start_dockerd
from tests.rpm_universe import (  # noqa: F401 - the session's package universes
    frozen_universe,
    rpm_universe,
)
from tests.tools import SHARED, require_shared


@pytest.fixture(scope="session")
def oci_schema_dir() -> Path:
    return require_shared("oci-schema")


@pytest.fixture(scope="session")
def rpm_corpus() -> Path:
    return require_shared("rpm-corpus")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return SHARED


@pytest.fixture(scope="session")
def dockerd() -> Iterator[DockerDaemon]:
    """One private dockerd for the whole session (starting one takes seconds)."""
    # mkdtemp under /tmp keeps the socket path short: sun_path holds 108 bytes.
    yield from start_dockerd(Path(tempfile.mkdtemp(prefix="smith-dockerd-")))
