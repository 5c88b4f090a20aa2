"""Signatures in a registry, where containers/image (`use-sigstore-attachments: true`) and
cosign look for them: an OCI manifest tagged `sha256-<hex>.sig` beside the image, one layer
per signature (the payload), the signature in the layer's annotation."""

from __future__ import annotations

import os
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec

from smith.errors import SignatureError, UsageError
from smith.oci.attachments import (
    get_blob_bytes,
    get_optional_manifest,
    manifest_digest,
    push_small_blob,
)
from smith.oci.image import MEDIA_OCI_CONFIG, MEDIA_OCI_MANIFEST, Descriptor, canonical_json
from smith.oci.reference import Reference, is_registry_reference, parse_reference
from smith.oci.registry import RegistryClient, decode_json
from smith.oci.registry_options import RegistryOptions
from smith.signing.simple import (
    ANNOTATION_SIGNATURE,
    MEDIA_SIMPLE_SIGNING,
    Claim,
    identity_matches,
    make_payload,
    sign_payload,
    signature_tag,
    verify_payload,
)


@dataclass(frozen=True)
class Signed:
    digest: str  # of the image manifest
    identity: str  # the docker-reference signed for
    tag: str  # where the signature is stored
    added: bool  # False when the same signature was there already


def registry_reference(text: str) -> Reference:
    """REF of `smith sign` and `smith verify-signature`: an image in a registry. A local
    layout or archive is refused with the way to sign it (signatures live in registries)."""
    if not is_registry_reference(text) and os.path.exists(text):
        raise UsageError(
            f"{text} is a local image: signatures are stored in a registry",
            hint="push and sign it with `smith upload -i IMAGE -r REF --sign-key KEY`",
        )
    return parse_reference(text)


def image_identity(ref: Reference) -> str:
    """The docker-reference a signature names: repository and tag, as containers/image
    writes it when it signs on push (a digest-only reference: the repository)."""
    name = f"{ref.registry}/{ref.repository}"
    return f"{name}:{ref.tag}" if ref.tag else name


def sign_reference(
    ref: Reference,
    key: ec.EllipticCurvePrivateKey,
    options: RegistryOptions,
    *,
    digest: str = "",
) -> Signed:
    """Sign the image at `ref` (its manifest `digest`, else the one the registry holds)."""
    client = RegistryClient(ref, options, push=True)
    digest = digest or manifest_digest(client, ref)
    identity = image_identity(ref)
    payload = make_payload(digest, identity)
    signature = sign_payload(payload, key)
    tag = signature_tag(digest)
    layer = push_small_blob(client, payload, MEDIA_SIMPLE_SIGNING)
    layers = existing_layers(client, tag)
    new = {**layer.to_json(), "annotations": {ANNOTATION_SIGNATURE: signature}}
    added = new not in layers
    if added:
        layers.append(new)
        config = canonical_json(
            {
                "architecture": "",
                "config": {},
                "os": "",
                "rootfs": {"type": "layers", "diff_ids": [entry["digest"] for entry in layers]},
            }
        )
        config_desc = push_small_blob(client, config, MEDIA_OCI_CONFIG)
        manifest = {
            "schemaVersion": 2,
            "mediaType": MEDIA_OCI_MANIFEST,
            "config": config_desc.to_json(),
            "layers": layers,
        }
        client.put_manifest(tag, canonical_json(manifest), MEDIA_OCI_MANIFEST)
    return Signed(digest, identity, tag, added)


def existing_layers(client: RegistryClient, tag: str) -> list[dict[str, object]]:
    data = get_optional_manifest(client, tag, MEDIA_OCI_MANIFEST)
    if data is None:
        return []
    doc = decode_json(data, f"{client.ref}: {tag}")
    layers = doc.get("layers") if isinstance(doc, dict) else None
    return [entry for entry in layers or [] if isinstance(entry, dict)]


def verify_reference(
    ref: Reference, key: ec.EllipticCurvePublicKey, options: RegistryOptions
) -> Claim:
    """The claim of a signature of `ref` that `key` made, for this image and this name;
    SignatureError naming what was wrong with each signature found otherwise."""
    client = RegistryClient(ref, options)
    digest = manifest_digest(client, ref)
    tag = signature_tag(digest)
    data = get_optional_manifest(client, tag, MEDIA_OCI_MANIFEST)
    if data is None:
        raise SignatureError(f"{ref} ({digest}) has no signature (no tag {tag})")
    problems = []
    for entry in existing_layers(client, tag):
        if entry.get("mediaType") != MEDIA_SIMPLE_SIGNING:
            continue
        annotations = entry.get("annotations")
        signature = annotations.get(ANNOTATION_SIGNATURE) if isinstance(annotations, dict) else ""
        try:
            desc = Descriptor.from_json(entry)
        except (KeyError, TypeError, ValueError) as err:
            problems.append(f"a malformed layer ({err})")
            continue
        payload = get_blob_bytes(client, desc)
        claim = verify_payload(payload, str(signature or ""), key)
        if claim is None:
            problems.append(f"{desc.digest[:19]}: not signed by this key")
        elif claim.manifest_digest != digest:
            problems.append(f"{desc.digest[:19]}: signs {claim.manifest_digest}, not {digest}")
        elif not identity_matches(
            claim.docker_reference, f"{ref.registry}/{ref.repository}", ref.tag
        ):
            problems.append(f"{desc.digest[:19]}: signed for {claim.docker_reference}")
        else:
            return claim
    found = "; ".join(problems) if problems else "no simple-signing layer"
    raise SignatureError(f"no signature of {ref} ({digest}) verifies: {found}")
