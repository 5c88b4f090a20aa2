"""`smith sbom IMAGE`: print the SBOM attached to an image (as `smith build --sbom` writes)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from smith.cli.limit_flags import limit_option
from smith.cli.main import cli
from smith.cli.registry_flags import registry_options
from smith.cli.settings_options import setting_options
from smith.errors import ImageFormatError, UsageError

if TYPE_CHECKING:
    from smith.oci.reference import Reference
    from smith.oci.registry_options import RegistryOptions

# `provenance` is no SBOM, but it is attached and printed the same way. The names only:
# `smith sbom --help` loads no SBOM writer, no image reader (media_type() when it runs).
FORMATS = ("cyclonedx", "provenance", "spdx")


def media_type(fmt: str) -> str:
    from smith import provenance
    from smith.sbom import cyclonedx, spdx

    return {
        "spdx": spdx.MEDIA_TYPE,
        "cyclonedx": cyclonedx.MEDIA_TYPE,
        "provenance": provenance.MEDIA_TYPE,
    }[fmt]


@cli.command("sbom")
@click.argument("image")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="spdx",
    show_default=True,
    help="Which attached SBOM to print.",
)
@click.option(
    "--platform",
    help="OS/ARCH[/VARIANT]: the image of a multi-platform layout whose SBOM to print "
    "(default: the host's).",
)
@setting_options("sbom")
@limit_option  # what the command reads is untrusted: its bounds, as flags
def sbom_command(image: str, fmt: str, platform: str | None, **flags: Any) -> None:
    """Print the SBOM attached to IMAGE (an OCI layout or archive, LAYOUT:NAME, or a registry
    reference: through its referrers, or the `sha256-<digest>` tag where the registry has no
    referrers API) as it is stored: the exact bytes whose digest the referrer names. Of a
    multi-platform image each platform's manifest has its own (--platform; in a registry,
    name that manifest by its digest)."""
    from smith.oci.image import parse_platform
    from smith.oci.reading import read_unpacked, split_image_name, unpacked
    from smith.oci.reference import is_registry_reference, parse_reference
    from smith.oci.referrers import layout_referrers

    if is_registry_reference(image):
        if platform:
            raise UsageError(
                f"--platform reads a layout or archive: name {image}'s manifest @DIGEST"
            )
        data = registry_document(parse_reference(image), media_type(fmt), registry_options(flags))
        if data is None:
            raise ImageFormatError(f"{image} has no {fmt} document attached")
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    path, name = split_image_name(image, "")
    with unpacked(path) as root:
        loaded = read_unpacked(root, path, parse_platform(platform) if platform else None, name)
        found = layout_referrers(root, loaded.manifest_descriptor.digest, image, media_type(fmt))
    if not found:
        raise ImageFormatError(
            f"{image} has no {fmt} SBOM attached",
            hint="build it with `smith build --provenance`"
            if fmt == "provenance"
            else f"build it with `smith build --sbom-format {fmt}`",
        )
    sys.stdout.buffer.write(found[0].data)
    sys.stdout.buffer.flush()


def registry_document(ref: Reference, artifact_type: str, options: RegistryOptions) -> bytes | None:
    # The registry client only for a registry image: a layout is read without it.
    from smith.oci.attachments import fetch_referrer, list_referrers, manifest_digest
    from smith.oci.registry import RegistryClient

    client = RegistryClient(ref, options)
    for entry in list_referrers(client, manifest_digest(client, ref)):
        if entry.get("artifactType") == artifact_type:
            return fetch_referrer(client, entry)[1]
    return None
