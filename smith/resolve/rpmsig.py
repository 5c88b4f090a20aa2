"""Check an RPM's OpenPGP signature against a repository's keys (`gpgcheck`).

rpm keeps header-only signatures (RSAHEADER, DSAHEADER: the latter also holds EdDSA;
rpm 6 adds OPENPGP, several base64 signatures) and,
in older packages, header+payload signatures (PGP, GPG). A header-only signature covers the
payload too, through the payload digest inside the signed header, which `verify_digests`
checks; so both digests and one good signature are required.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence

from smith.errors import PackageError
from smith.resolve.pgp import PublicKey, parse_public_keys, parse_signature, verify
from smith.resolve.rpm import (
    SIG_DSA,
    SIG_GPG,
    SIG_OPENPGP,
    SIG_PGP,
    SIG_RSA,
    RpmPackage,
    verify_digests,
)

HEADER_ONLY = (SIG_RSA, SIG_DSA)
HEADER_AND_PAYLOAD = (SIG_PGP, SIG_GPG)


def load_keys(armored: Sequence[bytes]) -> tuple[PublicKey, ...]:
    return tuple(k for block in armored for k in parse_public_keys(block))


def signature_blobs(pkg: RpmPackage) -> list[tuple[int, bytes]]:
    """(tag, OpenPGP signature packet) for every signature the package carries.

    rpm 6 keeps any number of header signatures in OPENPGP as base64 strings; older rpm
    one binary packet per tag.
    """
    out = []
    for tag in HEADER_ONLY + HEADER_AND_PAYLOAD:
        blob = pkg.signature.binary(tag)
        if blob is not None:
            out.append((tag, blob))
    for text in pkg.signature.strings(SIG_OPENPGP):
        try:
            out.append((SIG_OPENPGP, base64.b64decode(text, validate=True)))
        except ValueError:
            raise PackageError(f"{pkg.nevra}: OPENPGP signature is not base64") from None
    return out


def verify_signature(pkg: RpmPackage, keys: Sequence[PublicKey]) -> str:
    """Raise unless `pkg` carries a good signature by one of `keys`; return the key id."""
    name = os.path.basename(pkg.path)
    verify_digests(pkg)
    found: list[str] = []
    for tag, blob in signature_blobs(pkg):
        sig = parse_signature(blob, f"{name}: signature tag {tag}")
        data = pkg.header.raw
        if tag in HEADER_AND_PAYLOAD:
            with open(pkg.path, "rb") as f:
                f.seek(pkg.payload_offset)
                data += f.read()
        candidates = [k for k in keys if not sig.issuer or k.key_id == sig.issuer]
        for key in candidates:
            if verify(sig, data, key):
                return key.key_id.hex()
        who = sig.issuer.hex() if sig.issuer else "an unnamed key"
        found.append(f"bad signature by {who}" if candidates else f"signed by unknown key {who}")
    if not found:
        raise PackageError(f"package {pkg.nevra} is not signed, and gpgcheck is on")
    raise PackageError(f"package {pkg.nevra}: {'; '.join(found)}")
