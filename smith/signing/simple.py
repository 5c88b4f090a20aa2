"""Simple-signing payloads, signed and checked as cosign and containers/image do.

The payload names the image by its manifest digest and by the reference it was signed for
(`docker-reference`); the signature is ECDSA P-256 over the payload's SHA-256, ASN.1 DER,
base64 in the layer annotation `dev.cosignproject.cosign/signature`.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from smith.oci.image import canonical_json

MEDIA_SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
ANNOTATION_SIGNATURE = "dev.cosignproject.cosign/signature"
SIGNATURE_TYPE = "cosign container image signature"


def signature_tag(manifest_digest: str) -> str:
    """The tag that holds the signatures of an image: `sha256-<hex>.sig`."""
    return manifest_digest.replace(":", "-", 1) + ".sig"


def make_payload(manifest_digest: str, docker_reference: str) -> bytes:
    # "optional" must be present (containers/image reads the two fields exactly); an
    # empty object rather than a creator and timestamp keeps the payload reproducible.
    return canonical_json(
        {
            "critical": {
                "identity": {"docker-reference": docker_reference},
                "image": {"docker-manifest-digest": manifest_digest},
                "type": SIGNATURE_TYPE,
            },
            "optional": {},
        }
    )


def sign_payload(payload: bytes, key: ec.EllipticCurvePrivateKey) -> str:
    # RFC 6979 signatures: signing the same image with the same key twice gives the same
    # bytes, so a repeated `smith sign` adds nothing to the signature tag.
    signature = key.sign(payload, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
    return base64.b64encode(signature).decode()


@dataclass(frozen=True)
class Claim:
    """What a verified payload says."""

    manifest_digest: str
    docker_reference: str


def verify_payload(payload: bytes, signature: str, key: ec.EllipticCurvePublicKey) -> Claim | None:
    """The claim of `payload` if `signature` is the key's over it, else None."""
    try:
        key.verify(base64.b64decode(signature, validate=True), payload, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, binascii.Error, ValueError):
        return None
    try:
        critical: Any = json.loads(payload)["critical"]
        if critical["type"] != SIGNATURE_TYPE:
            return None
        return Claim(
            str(critical["image"]["docker-manifest-digest"]),
            str(critical["identity"]["docker-reference"]),
        )
    except (ValueError, KeyError, TypeError):
        return None


def identity_matches(claimed: str, repository: str, tag: str) -> bool:
    """containers/image's default `matchRepoDigestOrExact`: a reference by tag needs the
    same repository and tag, a reference by digest the same repository."""
    if tag:
        return claimed == f"{repository}:{tag}"
    name = claimed.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return (name.rsplit(":", 1)[0] if ":" in last else name) == repository
