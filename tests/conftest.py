from __future__ import annotations

from pathlib import Path

import pytest

from tests.rpm_universe import rpm_universe  # noqa: F401 - the session's package universe
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
