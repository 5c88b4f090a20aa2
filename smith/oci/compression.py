"""The layer compressions by name, apart from the compressors (smith/oci/compress.py): the
settings table names them, and loading the compressors for them was part of the start of
every command that takes a setting, `smith closure` among them."""

from __future__ import annotations

from enum import StrEnum


class Compression(StrEnum):
    GZIP = "gzip"
    ZSTD = "zstd"
    NONE = "none"
