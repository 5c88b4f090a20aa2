"""What sits beside an image in a registry: referrers (an SBOM, provenance) and the
`sha256-<hex>` tags that stand in for the referrers API where a registry has none.

A referrer manifest is PUT by digest. A registry with the OCI 1.1 referrers API answers
with an `OCI-Subject` header and lists it under /v2/<repo>/referrers/<digest> by itself;
for one without (Debian's docker-registry 2.8), the distribution spec's fallback is an image
index tagged `sha256-<hex of the subject>` whose entries are the referrers: smith reads it,
adds the new descriptor and puts it back.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from smith.errors import RegistryError
from smith.oci.image import MEDIA_OCI_INDEX, MEDIA_OCI_MANIFEST, Descriptor, canonical_json
from smith.oci.pull import fetch_manifest
from smith.oci.push import push_blob
from smith.oci.reference import Reference
from smith.oci.registry import RegistryClient, RegistryRequestError, decode_json, read_document

log = logging.getLogger("smith.registry")


def fallback_tag(subject_digest: str) -> str:
    """The referrers tag schema of the distribution spec: `sha256-<hex>`."""
    return subject_digest.replace(":", "-", 1)


def push_small_blob(client: RegistryClient, data: bytes, media_type: str) -> Descriptor:
    """Upload a document held in memory (a payload, a config, an SBOM)."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    desc = Descriptor(media_type, digest, len(data))
    with tempfile.NamedTemporaryFile(prefix="smith-blob-") as f:
        f.write(data)
        f.flush()
        push_blob(client, desc, f.name, (), threading.Event())
    return desc


def get_optional_manifest(client: RegistryClient, reference: str, accept: str) -> bytes | None:
    """The manifest at `reference`, or None when the registry has none there."""
    try:
        data, _, _ = client.get_manifest(reference, (accept,))
    except RegistryRequestError as err:
        if err.status == 404:
            return None
        raise
    return data


def manifest_digest(client: RegistryClient, ref: Reference) -> str:
    """The digest of the manifest at `ref` (checked against the digest `ref` names)."""
    data = fetch_manifest(client, ref.reference)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    if ref.digest and ref.digest != digest:
        raise RegistryError(f"{ref}: the registry holds {digest} there")
    return digest


def fetch_referrer(client: RegistryClient, entry: Mapping[str, Any]) -> tuple[str, bytes]:
    """The document of a referrer (its one layer) and that layer's media type."""
    desc = Descriptor.from_json(entry)
    manifest = decode_json(fetch_manifest(client, desc.digest), f"{client.ref}: {desc.digest}")
    layers = manifest.get("layers") if isinstance(manifest, dict) else None
    if not isinstance(layers, list) or len(layers) != 1:
        raise RegistryError(f"{client.ref}: referrer {desc.digest} does not hold one document")
    layer = Descriptor.from_json(layers[0])
    return layer.media_type, get_blob_bytes(client, layer)


def get_blob_bytes(client: RegistryClient, desc: Descriptor) -> bytes:
    data = read_document(client.get_blob(desc.digest), f"blob {desc.digest}")
    if "sha256:" + hashlib.sha256(data).hexdigest() != desc.digest:
        raise RegistryError(f"{client.ref}: blob {desc.digest} arrived with other bytes")
    return data


def put_manifest_by_digest(client: RegistryClient, data: bytes) -> tuple[str, bool]:
    """PUT a manifest under its digest; (digest, whether the registry took its subject)."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    resp = client.put_manifest_answer(digest, data, MEDIA_OCI_MANIFEST, "push referrer manifest")
    return digest, bool(resp.headers.get("OCI-Subject"))


def attach_referrer(
    client: RegistryClient, subject_digest: str, manifest: bytes, entry: Mapping[str, Any]
) -> str:
    """Push a referrer manifest (its blobs are there already) and make it listed: by the
    registry's referrers API, else in the fallback tag's index. Returns how it is listed."""
    digest, has_api = put_manifest_by_digest(client, manifest)
    if has_api:
        return "referrers API"
    tag = fallback_tag(subject_digest)
    current = get_optional_manifest(client, tag, MEDIA_OCI_INDEX)
    index: dict[str, Any] = {"schemaVersion": 2, "mediaType": MEDIA_OCI_INDEX, "manifests": []}
    if current is not None:
        found = decode_json(current, f"{client.ref}: index {tag}")
        index = found if isinstance(found, dict) else index
    entries = list(referrer_entries(index))
    if not any(m.get("digest") == digest for m in entries):
        index["manifests"] = [*entries, dict(entry)]
        client.put_manifest(tag, canonical_json(index), MEDIA_OCI_INDEX)
    return f"tag {tag}"


def list_referrers(client: RegistryClient, subject_digest: str) -> Sequence[Mapping[str, Any]]:
    """The referrer descriptors of an image: from the referrers API, else the fallback tag."""
    try:
        resp = client.request(
            "GET",
            client.url(f"referrers/{subject_digest}"),
            headers={"Accept": MEDIA_OCI_INDEX},
            ok=(200, 404),
            what=f"referrers of {subject_digest}",
        )
    except RegistryRequestError as err:
        if err.status not in (400, 405):
            raise
        resp = None
    if resp is not None and resp.status == 200:
        return referrer_entries(decode_json(resp.data or b"", f"{client.ref}: referrers"))
    current = get_optional_manifest(client, fallback_tag(subject_digest), MEDIA_OCI_INDEX)
    if current is None:
        return ()
    return referrer_entries(decode_json(current, f"{client.ref}: {fallback_tag(subject_digest)}"))


def referrer_entries(index: Any) -> Sequence[Mapping[str, Any]]:
    manifests = index.get("manifests") if isinstance(index, dict) else None
    return [m for m in manifests or [] if isinstance(m, dict)]
