"""`smith verify-signature REF --key KEY`: does a signature by KEY vouch for REF?"""

from __future__ import annotations

from typing import Any

import click

from smith.cli.limit_flags import limit_option
from smith.cli.main import cli
from smith.cli.registry_flags import registry_options
from smith.cli.settings_options import setting_options


@cli.command("verify-signature")
@click.argument("ref")
@click.option("--key", required=True, metavar="KEY", help="A public key (PEM), e.g. PREFIX.pub.")
@setting_options("verify-signature")
@limit_option  # what the command reads is untrusted: its bounds, as flags
def verify_signature_command(ref: str, key: str, **flags: Any) -> None:
    """Check that the image at REF carries a sigstore signature (cosign's or skopeo's format)
    made by KEY for this manifest digest and this name, as a policy.json `sigstoreSigned`
    entry would. Exit 0 and print what was signed; exit 1 and say why not."""
    # The signing stack (cryptography, the registry client) loads when the command runs,
    # not for --help.
    from smith.signing.keys import load_public_key, read_key_file
    from smith.signing.store import registry_reference, verify_reference

    target = registry_reference(ref)
    claim = verify_reference(
        target, load_public_key(read_key_file(key), key), registry_options(flags)
    )
    click.echo(f"{claim.docker_reference}@{claim.manifest_digest}: signature verified")
