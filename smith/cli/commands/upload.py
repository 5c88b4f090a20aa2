"""`smith upload -i IMAGE -r REF`: push an image to a registry."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click

from smith.cli import progress
from smith.cli.limit_flags import limit_option
from smith.cli.main import cli
from smith.cli.registry_flags import registry_options
from smith.cli.settings_options import setting_options
from smith.errors import UsageError

if TYPE_CHECKING:
    from smith.oci.push_referrers import Attached
    from smith.oci.reference import Reference
    from smith.oci.registry_options import RegistryOptions


@cli.command()
@click.option(
    "-i", "--image", required=True, metavar="IMAGE", help="Layout, archive or registry reference."
)
@click.option(
    "-r",
    "--remote",
    required=True,
    metavar="REF",
    help="Where to push: [docker://]HOST[:PORT]/REPO[:TAG] or https://[USER:PASS@]HOST/REPO:TAG.",
)
@click.option(
    "-d",
    "--docker",
    "docker_media",
    is_flag=True,
    help="Push Docker schema 2 media types (without it, only when the registry refuses OCI).",
)
@click.option(
    "--platform", metavar="OS/ARCH[/VARIANT]", help="Which image of a multi-platform index."
)
@click.option(
    "--all",
    "all_platforms",
    is_flag=True,
    help="Push every image of a multi-platform IMAGE, then its index.",
)
@click.option(
    "--mount-from",
    multiple=True,
    metavar="REPO",
    help="Another repository of the same registry that may hold the blobs (repeatable).",
)
@click.option(
    "--chunk-size",
    type=click.IntRange(min=1 << 20),
    default=64 << 20,
    show_default=True,
    help="Blobs larger than this many bytes are uploaded in chunks.",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar (none without a terminal).")
@click.option(
    "--sign-key",
    metavar="KEY",
    help="Also sign the pushed image with this private key (from `smith keygen`), as "
    "`smith sign` does.",
)
@click.option(
    "--passphrase-file",
    metavar="FILE",
    help="The signing key's passphrase: FILE's first line (else $SMITH_PASSPHRASE).",
)
@setting_options("upload")
@limit_option  # what the command reads is untrusted: its bounds, as flags
def upload(
    image: str,
    remote: str,
    docker_media: bool,
    all_platforms: bool,
    platform: str | None,
    mount_from: tuple[str, ...],
    chunk_size: int,
    quiet: bool,
    jobs: int,
    sign_key: str | None,
    passphrase_file: str | None,
    **flags: Any,
) -> None:
    """Push IMAGE to the registry reference REF; print REF@DIGEST. Artifacts attached to
    IMAGE (an SBOM from `smith build --sbom`) are pushed as its referrers."""
    # The image and registry stacks load when the command runs, not for --help.
    from smith.oci.image import parse_platform
    from smith.oci.index import index_children
    from smith.oci.push import push_image, push_index
    from smith.oci.push_referrers import push_referrers
    from smith.oci.reference import parse_reference

    options = registry_options(flags, chunk_size=chunk_size, jobs=jobs)
    target = parse_reference(remote)
    signer = None
    if sign_key:
        from smith.signing.keys import load_signer  # cryptography only to sign

        signer = load_signer(sign_key, passphrase_file)  # a wrong passphrase: before any push
    if all_platforms and (platform or docker_media):
        raise UsageError("--all pushes the index as it is: it takes no --platform or -d")
    if all_platforms:
        with progress.showing("uploading", quiet=quiet):
            result = push_index(image, target, options=options, mount_from=mount_from)
            # Each platform's artifacts (smith build --sbom) go with its manifest.
            attached = [
                a
                for child in index_children(image)
                for a in push_referrers(image, target, child.digest, options)
            ]
        report_attached(target, attached)
        if signer is not None:  # the index, as cosign signs a multi-platform image
            sign_pushed(target, signer, options, result.digest)
        click.echo(f"{target.registry}/{target.repository}@{result.digest}")
        return
    with progress.showing("uploading", quiet=quiet):
        result = push_image(
            image,
            target,
            options=options,
            platform=parse_platform(platform) if platform else None,
            docker_media=docker_media,
            mount_from=mount_from,
        )
    name = f"{target.registry}/{target.repository}"
    report_attached(target, push_referrers(image, target, result.digest, options))
    if signer is not None:
        sign_pushed(target, signer, options, result.digest)
    click.echo(f"{name}@{result.digest}")


def report_attached(target: Reference, attached: Sequence[Attached]) -> None:
    name = f"{target.registry}/{target.repository}"
    for a in attached:
        click.echo(f"{name}@{a.digest} ({a.artifact_type}, {a.listed})", err=True)


def sign_pushed(target: Reference, signer: Any, options: RegistryOptions, digest: str) -> None:
    from smith.signing.store import sign_reference

    signed = sign_reference(target, signer, options, digest=digest)
    click.echo(f"signed as {signed.identity} in tag {signed.tag}", err=True)
