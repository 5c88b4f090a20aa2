"""`smith keygen`: a signing key pair that smith, cosign and skopeo all use."""

from __future__ import annotations

import os

import click

from smith.atomic import atomic_path
from smith.cli.main import cli
from smith.errors import UsageError


@cli.command("keygen")
@click.option(
    "-o",
    "--output",
    "prefix",
    default="smith",
    show_default=True,
    metavar="PREFIX",
    help="Write PREFIX.key (private, mode 0600) and PREFIX.pub.",
)
@click.option(
    "--passphrase-file",
    metavar="FILE",
    help="The private key's passphrase: FILE's first line (else $SMITH_PASSPHRASE, else empty).",
)
@click.option("--force", is_flag=True, help="Replace existing key files.")
def keygen_command(prefix: str, passphrase_file: str | None, force: bool) -> None:
    """Generate an ECDSA P-256 key pair in cosign's format: `skopeo copy
    --sign-by-sigstore-private-key PREFIX.key` signs with it, a policy.json `sigstoreSigned`
    entry with `keyPath: PREFIX.pub` checks it."""
    from smith.signing.keys import generate_keypair, read_passphrase  # cryptography: when run

    private, public = f"{prefix}.key", f"{prefix}.pub"
    for path in (private, public):
        if os.path.lexists(path) and not force:
            raise UsageError(f"{path} exists (--force replaces it)")
    pair = generate_keypair(read_passphrase(passphrase_file))
    with atomic_path(private, mode=0o600) as tmp, open(tmp, "wb") as f:
        f.write(pair.private_pem)
    with atomic_path(public) as tmp, open(tmp, "wb") as f:
        f.write(pair.public_pem)
    click.echo(f"{private}\n{public}")
