"""`smith upload` of the artifacts a layout attaches to an image (smith build --sbom): each
referrer's blobs, then its manifest, listed by the referrers API or the fallback tag."""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass

from smith.oci.attachments import attach_referrer
from smith.oci.image import Descriptor
from smith.oci.push import push_blob
from smith.oci.reading import split_image_name, unpacked
from smith.oci.reference import Reference, is_registry_reference
from smith.oci.referrers import is_referrer_entry, layout_index_entries, read_checked
from smith.oci.registry import RegistryClient
from smith.oci.registry_options import RegistryOptions


@dataclass(frozen=True)
class Attached:
    artifact_type: str
    digest: str
    listed: str  # "referrers API" or "tag sha256-<hex>"


def push_referrers(
    source: str, target: Reference, subject_digest: str, options: RegistryOptions
) -> tuple[Attached, ...]:
    """Push the referrers of `subject_digest` that the layout or archive `source` holds."""
    if is_registry_reference(source):
        return ()  # copying referrers between registries is not done (yet)
    path, _name = split_image_name(source, "")
    pushed = []
    with unpacked(path) as root:
        entries = [e for e in layout_index_entries(root, source) if is_referrer_entry(e)]
        client: RegistryClient | None = None
        for entry in entries:
            desc = Descriptor.from_json(entry)
            manifest = read_checked(root, desc.digest, desc.size, source)
            doc = json.loads(manifest)
            if (doc.get("subject") or {}).get("digest") != subject_digest:
                continue
            client = client or RegistryClient(target, options, push=True)
            for blob in [doc["config"], *doc.get("layers", [])]:
                blob_desc = Descriptor.from_json(blob)
                blob_path = os.path.join(root, "blobs", "sha256", blob_desc.digest[7:])
                read_checked(root, blob_desc.digest, blob_desc.size, source)
                push_blob(client, blob_desc, blob_path, (), threading.Event())
            listed = attach_referrer(client, subject_digest, manifest, entry)
            pushed.append(Attached(str(entry["artifactType"]), desc.digest, listed))
    return tuple(pushed)
