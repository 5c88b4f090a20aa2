"""A registry as the build cache that CI machines share: one OCI artifact under a tag.

The artifact is an image manifest with `artifactType` application/vnd.smith.cache.v1+json,
the empty config, and as layers: first the cache map (a JSON blob), then every layer blob
the map names, so that the registry keeps them as long as the tag names the artifact. The
map holds two tables:

- `layers`: a layer key (the sha256 of what decides the layer's bytes: smith's layer
  format, the compressor and its level, the epoch, and every path of the layer with its
  kind, mode, owner and content digest; smith/oci/layer_cache.py) -> the layer's
  descriptor and diff_id;
- `plans`: a build-inputs key (smith/buildkey.py) -> which layers (by key) make that
  build's image, and the image's small blobs (config, manifest, index), so that a machine
  whose own cache is empty takes the layers from the registry and writes the image
  without extracting a package; and for a partial hit (smith/partial.py), per layer its
  key, packages and paths, and the listing of what the build's packages put in its tree;
- `families`: a family key (the build key without packages and rootfs/) -> the plan of
  its latest build, which a build with other packages or application files starts from.

Whatever is read from a registry is untrusted: the manifest must have the artifact type,
the map its media type and a size below DOCUMENT_BYTES, each descriptor a sha256 digest,
and every blob taken from it is checked against its digest as it arrives (pull.fetch_blob).
Anything else is refused in one line, and the build goes on without the cache.
"""

from __future__ import annotations

import base64
import logging
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from smith.errors import SmithError
from smith.limits import DOCUMENT_BYTES, json_document
from smith.oci.blobs import BlobStore
from smith.oci.image import MEDIA_OCI_MANIFEST, Descriptor, canonical_json, sha256_digest
from smith.oci.pull import check_descriptor, fetch_blob, fetch_manifest
from smith.oci.push import push_blob, push_manifest
from smith.oci.reference import Reference
from smith.oci.referrers import EMPTY_DIGEST, EMPTY_JSON, MEDIA_EMPTY
from smith.oci.registry import RegistryClient, RegistryOptions, RegistryRequestError
from smith.oci.writer import Layer
from smith.partial import Listing, NotReusable, checked_records

log = logging.getLogger(__name__)

CACHE_ARTIFACT_TYPE = "application/vnd.smith.cache.v1+json"
CACHE_MAP_TYPE = "application/vnd.smith.cache.map.v1+json"
MAP_VERSION = 2  # 2: families, and plans with a listing and layer records


class CacheRefused(Exception):
    """A cache artifact that is not one smith can trust (the message says why)."""


@dataclass(frozen=True)
class Plan:
    """One build's image as the registry cache has it."""

    layers: tuple[str, ...]  # layer keys, bottom first
    blobs: Mapping[str, bytes]  # digest -> the image's small blobs (config, manifest...)
    index: bytes  # index.json
    result: Mapping[str, Any]  # what the build reported (smith/buildcache.py)
    listing: Listing | None = None  # what its packages put in its tree
    records: tuple[Mapping[str, Any], ...] = ()  # per layer: key, packages, paths

    def to_json(self) -> dict[str, Any]:
        return {
            "layers": list(self.layers),
            "blobs": {d: base64.b64encode(b).decode() for d, b in sorted(self.blobs.items())},
            "index": base64.b64encode(self.index).decode(),
            "result": dict(self.result),
            **({"listing": self.listing.to_json()} if self.listing is not None else {}),
            **({"records": list(self.records)} if self.records else {}),
        }

    @classmethod
    def from_json(cls, doc: Any) -> Plan:
        blobs = {str(d): base64.b64decode(b, validate=True) for d, b in doc["blobs"].items()}
        for digest, data in blobs.items():
            if sha256_digest(data) != digest:
                raise CacheRefused(f"the plan's blob {digest[:19]} does not match its digest")
        layers = doc["layers"]
        if not isinstance(layers, list) or not all(isinstance(k, str) for k in layers):
            raise CacheRefused("a plan's layers are not a list of keys")
        if not isinstance(doc["result"], dict):
            raise CacheRefused("a plan's result is not an object")
        listing, records = None, doc.get("records", [])
        try:
            if "listing" in doc:
                listing = Listing.from_json(doc["listing"])
                checked_records(records, layers, {n for n, _pin in listing.packages})
        except NotReusable as err:
            raise CacheRefused(str(err)) from None
        index = base64.b64decode(doc["index"], validate=True)
        return cls(tuple(layers), blobs, index, doc["result"], listing, tuple(records))


@dataclass
class CacheMap:
    layers: dict[str, Layer] = field(default_factory=dict)
    plans: dict[str, Plan] = field(default_factory=dict)
    families: dict[str, str] = field(default_factory=dict)  # family key -> plan key

    def to_bytes(self) -> bytes:
        return canonical_json(
            {
                "version": MAP_VERSION,
                "layers": {
                    k: {"descriptor": layer.descriptor.to_json(), "diff_id": layer.diff_id}
                    for k, layer in sorted(self.layers.items())
                },
                "plans": {k: plan.to_json() for k, plan in sorted(self.plans.items())},
                "families": dict(sorted(self.families.items())),
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes, what: str) -> CacheMap:
        doc = json_document(data, what)
        if not isinstance(doc, dict) or doc.get("version") != MAP_VERSION:
            raise CacheRefused(f"{what} is not a smith cache map of version {MAP_VERSION}")
        out = cls()
        for key, entry in doc["layers"].items():
            desc = Descriptor.from_json(entry["descriptor"])
            check_descriptor(desc, what)
            diff_id = str(entry["diff_id"])
            check_descriptor(Descriptor("", diff_id, 0), what)
            out.layers[str(key)] = Layer(desc, diff_id)
        for key, plan in doc["plans"].items():
            out.plans[str(key)] = Plan.from_json(plan)
        out.families = {str(f): str(k) for f, k in doc["families"].items() if k in out.plans}
        return out


def open_client(ref: Reference, options: RegistryOptions, *, push: bool = False) -> RegistryClient:
    return RegistryClient(ref, options, push=push)


def read_cache(client: RegistryClient) -> CacheMap | None:
    """The cache map under the client's reference: None (warned) when there is none or it
    cannot be trusted."""
    ref = client.ref
    try:
        return read_map(client)
    except RegistryRequestError as err:
        if err.status == 404:
            log.info("%s: no build cache there yet", ref)
        else:
            log.warning("%s: cannot read the build cache (%s): building without it", ref, err)
    except (CacheRefused, SmithError, KeyError, TypeError, ValueError, AttributeError) as err:
        log.warning("%s: build cache refused (%s): building without it", ref, err)
    return None


def read_map(client: RegistryClient) -> CacheMap:
    ref = client.ref
    data = fetch_manifest(client, ref.reference)
    doc = json_document(data, f"{ref}: cache manifest")
    if not isinstance(doc, dict) or doc.get("artifactType") != CACHE_ARTIFACT_TYPE:
        kind = doc.get("artifactType") if isinstance(doc, dict) else None
        raise CacheRefused(f"artifactType {kind!r}, not {CACHE_ARTIFACT_TYPE}")
    layers = doc.get("layers")
    if not isinstance(layers, list) or not layers:
        raise CacheRefused("the cache manifest has no map")
    desc = Descriptor.from_json(layers[0])
    check_descriptor(desc, f"{ref}: cache manifest")
    if desc.media_type != CACHE_MAP_TYPE:
        raise CacheRefused(f"the map's media type is {desc.media_type!r}, not {CACHE_MAP_TYPE}")
    if desc.size > DOCUMENT_BYTES.count():
        raise CacheRefused(f"the map is {desc.size} bytes, more than {DOCUMENT_BYTES.count()}")
    with tempfile.TemporaryDirectory(prefix="smith-cache-map-") as tmp:
        store = BlobStore(tmp)
        fetch_blob(client, store, desc, threading.Event())
        with open(store.path(desc.digest), "rb") as f:
            data = f.read()
    return CacheMap.from_bytes(data, f"{ref}: cache map {desc.digest[:19]}")


def pull_layers(client: RegistryClient, store: BlobStore, layers: Sequence[Layer]) -> int:
    """Fetch layer blobs into `store`, each checked against its digest: the bytes fetched."""
    stop = threading.Event()
    return sum(fetch_blob(client, store, layer.descriptor, stop) for layer in layers)


def write_cache(
    client: RegistryClient, cache: CacheMap, blob_paths: Mapping[str, str]
) -> tuple[int, int]:
    """Push the map and the layers it names (`blob_paths`: digest -> file, for the layers
    the registry may not have yet) under the client's tag: (bytes uploaded, blobs skipped)."""
    stop = threading.Event()
    uploaded = skipped = 0
    data = cache.to_bytes()
    if len(data) > DOCUMENT_BYTES.count():
        raise SmithError(f"{client.ref}: the cache map would be {len(data)} bytes: not pushed")
    with tempfile.TemporaryDirectory(prefix="smith-cache-push-") as tmp:
        store = BlobStore(tmp)
        small = [store.add_bytes(EMPTY_JSON), store.add_bytes(data)]
        map_desc = Descriptor(CACHE_MAP_TYPE, *small[1])
        sends = [
            (Descriptor(MEDIA_EMPTY, *small[0]), store.path(small[0][0])),
            (map_desc, store.path(map_desc.digest)),
        ]
        layer_descs = list(
            {layer.descriptor.digest: layer.descriptor for layer in cache.layers.values()}.values()
        )
        sends += [(d, blob_paths[d.digest]) for d in layer_descs if d.digest in blob_paths]
        for desc, path in sends:
            state, sent = push_blob(client, desc, path, (), stop)
            uploaded += sent
            skipped += state == "skipped"
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_OCI_MANIFEST,
        "artifactType": CACHE_ARTIFACT_TYPE,
        "config": {"mediaType": MEDIA_EMPTY, "digest": EMPTY_DIGEST, "size": len(EMPTY_JSON)},
        "layers": [map_desc.to_json(), *(d.to_json() for d in layer_descs)],
    }
    push_manifest(client, client.ref, canonical_json(manifest), MEDIA_OCI_MANIFEST)
    return uploaded, skipped
