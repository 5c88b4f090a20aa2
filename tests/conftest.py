from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.containers import DockerDaemon, start_dockerd
from tests.debian_image import DebianImages, debian_images
from tests.rpm_universe import (  # noqa: F401 - the session's package universes
    frozen_universe,
    rpm_universe,
)
from tests.tools import SHARED, require_shared

# The properties test what comes out, never how fast: on a loaded machine (CI runners with
# other work on them) hypothesis' default 200 ms deadline and its too_slow check would fail a
# correct test. Per-test @settings still set the example counts.
settings.register_profile("smith", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("smith")


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


@pytest.fixture(scope="session")
def debian(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> DebianImages:
    """The images made from one mmdebstrap root of real Debian software (nginx, python3):
    built once per session (and, outside CI, cached in pytest's cache directory)."""
    scratch = tmp_path_factory.mktemp("debian")
    store = getattr(request.config, "cache", None)  # absent with -p no:cacheprovider
    cache = Path(store.mkdir("smith-debian")) if store is not None else scratch
    return debian_images(cache, scratch)
