"""`smith sign REF --key KEY`: sign an image in a registry, as cosign and skopeo do."""

from __future__ import annotations

from typing import Any

import click

from smith.cli.limit_flags import limit_option
from smith.cli.main import cli
from smith.cli.registry_flags import registry_options
from smith.cli.settings_options import setting_options


@cli.command("sign")
@click.argument("ref")
@click.option("--key", required=True, metavar="KEY", help="A private key from `smith keygen`.")
@click.option(
    "--passphrase-file",
    metavar="FILE",
    help="The key's passphrase: FILE's first line (else $SMITH_PASSPHRASE, else empty).",
)
@setting_options("sign")
@limit_option  # what the command reads is untrusted: its bounds, as flags
def sign_command(ref: str, key: str, passphrase_file: str | None, **flags: Any) -> None:
    """Sign the image at the registry reference REF: a simple-signing payload for its
    manifest digest and name, stored as the `sha256-<digest>.sig` tag beside it. Prints
    REPO@DIGEST and the tag."""
    # The signing stack (cryptography, the registry client) loads when the command runs,
    # not for --help.
    from smith.signing.keys import load_signer
    from smith.signing.store import registry_reference, sign_reference

    target = registry_reference(ref)
    private = load_signer(key, passphrase_file)
    signed = sign_reference(target, private, registry_options(flags))
    click.echo(f"{target.registry}/{target.repository}@{signed.digest}")
    note = "" if signed.added else " (that signature was there already)"
    click.echo(f"signed as {signed.identity} in tag {signed.tag}{note}", err=True)
