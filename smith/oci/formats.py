"""An output's format, from its name and --format: what a build decides before any work.

Apart from the writer (smith/oci/layout.py), so that a warm build can know the format its
key holds without importing the image writer.
"""

from __future__ import annotations

import os
from enum import StrEnum

from smith.errors import UsageError


class OutputFormat(StrEnum):
    OCI = "oci"
    OCI_ARCHIVE = "oci-archive"
    DOCKER_ARCHIVE = "docker-archive"


# Suffixes of archive and compression formats that are not smith's outputs.
NOT_WRITTEN = frozenset(
    (".zst", ".zstd", ".zip", ".xz", ".bz2", ".lz4", ".7z", ".gz", ".tzst", ".txz", ".rar")
)


def choose_format(output: str, explicit: str | None) -> tuple[OutputFormat, bool]:
    """The format of `output` and whether the archive is gzip-compressed."""
    gz = output.endswith((".tar.gz", ".tgz"))
    suffix = os.path.splitext(output.rstrip("/"))[1]
    if suffix in NOT_WRITTEN and not gz:
        # A name that promises a format smith does not write would silently become an OCI
        # layout directory of that name.
        raise UsageError(
            f"the output {output!r} asks for a {suffix} file, which smith does not write: "
            "name a directory (OCI layout), NAME.tar or NAME.tar.gz (oci-archive, or "
            "docker-archive with --format docker-archive)"
        )
    if explicit:
        try:
            fmt = OutputFormat(explicit)
        except ValueError:
            known = ", ".join(f.value for f in OutputFormat)
            raise UsageError(f"unknown output format {explicit!r} (known: {known})") from None
        if fmt is OutputFormat.OCI and (gz or output.endswith(".tar")):
            raise UsageError(f"format 'oci' is a directory, but the output is named {output!r}")
        return fmt, gz
    if gz or output.endswith(".tar"):
        return OutputFormat.OCI_ARCHIVE, gz
    return OutputFormat.OCI, False
