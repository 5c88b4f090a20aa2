"""How to reach registries, apart from the client (smith/oci/registry.py): every command
takes the registry flags, and building these options must not import urllib3."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # A type only: smith.oci.auth (docker config, credential helpers) is read on use.
    from smith.oci.auth import Credentials


@dataclass(frozen=True)
class RegistryOptions:
    """How to reach registries; the same for every command that talks to one."""

    creds: Credentials | None = None  # --creds; wins over the reference and docker config
    authfile: str = ""  # a Docker config.json other than ~/.docker/config.json
    insecure: bool = False  # plain HTTP allowed, TLS certificates not checked
    cert_dir: str = ""  # extra CA certificates (*.crt, *.pem), and NAME.cert + NAME.key
    timeout: float = 60.0  # seconds without progress before a connection counts as stalled
    retries: int = 5  # further attempts after a 408/429/5xx or a dropped connection
    backoff: float = 0.5  # first wait between attempts; doubles each time
    chunk_size: int = 64 << 20  # blobs larger than this are uploaded in PATCH chunks
    jobs: int = 4  # blobs transferred in parallel
