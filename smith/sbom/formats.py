"""The SBOM formats smith writes (a module of its own: the flags and options name them
without importing the renderers)."""

from __future__ import annotations

from enum import StrEnum


class SbomFormat(StrEnum):
    SPDX = "spdx"
    CYCLONEDX = "cyclonedx"
