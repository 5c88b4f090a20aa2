"""The `--sbom` and `--sbom-format` flags of `smith build` and `smith minimize`, in one place."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from smith.sbom.formats import SbomFormat

F = TypeVar("F", bound=Callable[..., Any])


def sbom_flags(command: F) -> F:
    command = click.option(
        "--sbom-format",
        "sbom_formats",
        multiple=True,
        type=click.Choice([f.value for f in SbomFormat]),
        help="Which SBOM to attach (repeatable; implies --sbom). Default: spdx.",
    )(command)
    return click.option(
        "--sbom",
        is_flag=True,
        help="Attach an SBOM (packages, kept and left-out files) to the image as an OCI "
        "referrer; `smith sbom IMAGE` prints it.",
    )(command)


def sbom_formats(flags: dict[str, Any]) -> tuple[SbomFormat, ...]:
    """The formats the flags ask for (and remove them from `flags`)."""
    wanted = tuple(SbomFormat(f) for f in flags.pop("sbom_formats", ()))
    asked = flags.pop("sbom", False)
    return wanted or ((SbomFormat.SPDX,) if asked else ())
