"""OCI 1.1 referrers: artifacts (an SBOM, a provenance statement, a signature) that point at
an image manifest through their `subject`, without changing a byte of the image.

An artifact is an image manifest whose `artifactType` says what it is, whose config is the
empty descriptor and whose one layer is the document. In an OCI layout it is listed in
index.json beside the image (as `oras attach --oci-layout` does), marked by that
`artifactType`, so readers that look for the image skip it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from smith.errors import ImageFormatError
from smith.oci.blobs import BlobStore, check_digest_form, verify_blob
from smith.oci.image import MEDIA_OCI_MANIFEST, Descriptor, canonical_json, sha256_digest

MEDIA_EMPTY = "application/vnd.oci.empty.v1+json"
EMPTY_JSON = b"{}"
EMPTY_DIGEST = sha256_digest(EMPTY_JSON)


@dataclass(frozen=True)
class Artifact:
    """One document to attach: what it is (`artifact_type`), its layer's media type, bytes."""

    artifact_type: str
    media_type: str
    data: bytes
    annotations: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Referrer:
    """An artifact manifest as written: its descriptor (with artifactType) and its bytes."""

    artifact_type: str
    digest: str
    size: int
    manifest: bytes
    annotations: tuple[tuple[str, str], ...] = ()

    def index_entry(self) -> dict[str, Any]:
        """The descriptor as index.json and a referrers list carry it."""
        desc = Descriptor(MEDIA_OCI_MANIFEST, self.digest, self.size, self.annotations)
        return {**desc.to_json(), "artifactType": self.artifact_type}


def artifact_manifest(subject: Descriptor, artifact: Artifact, layer: Descriptor) -> bytes:
    """The manifest of `artifact` (whose document blob `layer` describes) for `subject`."""
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": MEDIA_OCI_MANIFEST,
        "artifactType": artifact.artifact_type,
        "config": {"mediaType": MEDIA_EMPTY, "digest": EMPTY_DIGEST, "size": len(EMPTY_JSON)},
        "layers": [layer.to_json()],
        # The subject as a plain descriptor: no platform or annotations of the image's index
        # entry, so the artifact's digest depends only on the image manifest's bytes.
        "subject": {
            "mediaType": subject.media_type,
            "digest": subject.digest,
            "size": subject.size,
        },
    }
    if artifact.annotations:
        doc["annotations"] = dict(artifact.annotations)
    return canonical_json(doc)


def write_referrer(store: BlobStore, subject: Descriptor, artifact: Artifact) -> Referrer:
    """Write `artifact`'s document, the empty config and its manifest into `store`."""
    digest, size = store.add_bytes(artifact.data)
    store.add_bytes(EMPTY_JSON)
    manifest = artifact_manifest(subject, artifact, Descriptor(artifact.media_type, digest, size))
    manifest_digest, manifest_size = store.add_bytes(manifest)
    return Referrer(
        artifact.artifact_type, manifest_digest, manifest_size, manifest, artifact.annotations
    )


def is_referrer_entry(entry: Any) -> bool:
    """Whether an index.json entry is an attached artifact rather than an image."""
    return isinstance(entry, Mapping) and bool(entry.get("artifactType"))


# -- reading ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FoundArtifact:
    artifact_type: str
    manifest_digest: str
    media_type: str  # of the document layer
    data: bytes


def layout_referrers(
    root: str, subject_digest: str, source: str, artifact_type: str = ""
) -> tuple[FoundArtifact, ...]:
    """The artifacts of the layout at `root` whose subject is `subject_digest` (and whose
    type is `artifact_type`, if given), in index order, each document checked."""
    found = []
    for entry in layout_index_entries(root, source):
        if not is_referrer_entry(entry):
            continue
        if artifact_type and entry.get("artifactType") != artifact_type:
            continue
        desc = Descriptor.from_json(entry)
        manifest = json.loads(read_checked(root, desc.digest, desc.size, source))
        subject = manifest.get("subject") or {}
        if subject.get("digest") != subject_digest:
            continue
        layers = manifest.get("layers") or []
        if len(layers) != 1:
            raise ImageFormatError(
                f"{source}: artifact {desc.digest} has {len(layers)} layers, not one document"
            )
        layer = Descriptor.from_json(layers[0])
        data = read_checked(root, layer.digest, layer.size, source)
        found.append(
            FoundArtifact(
                str(manifest.get("artifactType", "")), desc.digest, layer.media_type, data
            )
        )
    return tuple(found)


def layout_index_entries(root: str, source: str) -> Sequence[Any]:
    try:
        with open(os.path.join(root, "index.json"), "rb") as f:
            index = json.loads(f.read())
    except FileNotFoundError:
        return ()  # a docker-archive without a layout has no referrers
    except ValueError as err:
        raise ImageFormatError(f"{source}: index.json is not valid JSON: {err}") from None
    manifests = index.get("manifests") if isinstance(index, dict) else None
    return manifests if isinstance(manifests, list) else ()


def read_checked(root: str, digest: str, size: int, source: str) -> bytes:
    hexdigest = check_digest_form(digest).removeprefix("sha256:")
    path = os.path.join(root, "blobs", "sha256", hexdigest)
    verify_blob(path, digest, size, f"{source}: artifact")
    with open(path, "rb") as f:
        return f.read()
