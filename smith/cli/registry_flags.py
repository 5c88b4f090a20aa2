"""The registry settings a command's keyword arguments hold, as RegistryOptions. The flags
themselves are rows of the settings table (smith/settings.py) that name every command that
talks to a registry, so that upload, download, and the commands that read images (build,
minimize, verify-signature, ...) agree."""

from __future__ import annotations

from typing import Any

from smith.oci.registry_options import RegistryOptions


def registry_options(kwargs: dict[str, Any], **extra: Any) -> RegistryOptions:
    """Take the registry flags out of a command's keyword arguments."""
    creds = kwargs.pop("creds")
    if creds:
        from smith.oci.auth import parse_creds  # on use: a build without --creds needs none
    return RegistryOptions(
        creds=parse_creds(creds) if creds else None,
        authfile=kwargs.pop("authfile") or "",
        insecure=kwargs.pop("insecure"),
        cert_dir=kwargs.pop("cert_dir") or "",
        timeout=kwargs.pop("timeout"),
        retries=kwargs.pop("retries"),
        **extra,
    )
