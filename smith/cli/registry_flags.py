"""The command-line flags of every command that talks to a registry, in one place, so that
upload, download, and the commands that read images (minimize, verify, ...) agree."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from smith.cli.limit_flags import limit_option
from smith.oci.registry_options import RegistryOptions

F = TypeVar("F", bound=Callable[..., Any])

# Shared with `smith lock` and build's repository downloads: one count of further attempts.
retries_option = click.option(
    "--retries",
    type=click.IntRange(min=0, max=20),
    default=5,
    show_default=True,
    help="Further attempts after HTTP 429/5xx or a dropped connection (registries and "
    "package repositories).",
)

FLAGS = (
    click.option(
        "--creds",
        metavar="USER:PASSWORD",
        help="Registry credentials (else the reference's user:pass@, else ~/.docker/config.json).",
    ),
    click.option(
        "--authfile", metavar="FILE", help="A Docker config.json to read credentials from."
    ),
    click.option(
        "--insecure",
        is_flag=True,
        help="Allow plain HTTP, and do not check TLS certificates.",
    ),
    click.option(
        "--cert-dir",
        metavar="DIR",
        help="CA certificates (*.crt) and a client certificate (*.cert + *.key) for TLS.",
    ),
    click.option(
        "--timeout",
        type=click.FloatRange(min=0.1),
        default=60.0,
        show_default=True,
        help="Seconds without progress before a connection counts as stalled.",
    ),
    retries_option,
    limit_option,  # what such a command reads is untrusted: its bounds, as flags
)


# Only for the commands that move many blobs (upload, download).
jobs_option = click.option(
    "--jobs",
    type=click.IntRange(1, 16),
    default=4,
    show_default=True,
    help="Blobs transferred at once.",
)


def registry_flags(command: F) -> F:
    for flag in reversed(FLAGS):
        command = flag(command)
    return command


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
