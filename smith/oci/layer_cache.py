"""A cache of finished layer blobs, keyed by what decides their bytes.

A layer's bytes are a pure function of the tree (paths, kinds, modes, owners, link targets,
contents), the epoch and the compressor. So the key is a digest of exactly those, and a
rebuild whose kept tree did not change copies the blob instead of compressing it again.
Entries are written atomically; a blob is checked against its digest before it is used, so
a damaged cache costs a rebuild, never a wrong image.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os

from smith.atomic import remove_path
from smith.cache_prune import cache_lock
from smith.errors import ImageFormatError
from smith.leftovers import sweep, tagged
from smith.oci.blobs import BlobStore, verify_blob
from smith.oci.compress import Compression, compressor_info
from smith.oci.image import Descriptor
from smith.oci.writer import Layer, write_layer
from smith.tree import FileTree, Kind, content_digest

# Bump when the tar writer changes its output for the same inputs.
FORMAT_VERSION = 1


def layer_key(tree: FileTree, compression: Compression, epoch: int) -> str:
    info = compressor_info(compression)
    head = [FORMAT_VERSION, compression.value, epoch, info.annotations() if info else {}]
    hasher = hashlib.sha256(json.dumps(head, sort_keys=True).encode())
    for e in tree:
        digest = content_digest(e.content) if e.kind is Kind.FILE and e.content else ""
        row = [e.path, e.kind.value, e.mode, e.uid, e.gid, e.size, e.target, digest]
        hasher.update(json.dumps(row, ensure_ascii=False).encode("utf-8", "surrogateescape"))
        hasher.update(b"\n")
    return hasher.hexdigest()


class LayerCache:
    def __init__(self, root: str) -> None:
        self.cache_dir = root
        self.root = os.path.join(root, "layers")

    def write_layer(
        self, tree: FileTree, store: BlobStore, compression: Compression, epoch: int
    ) -> Layer:
        with cache_lock(self.cache_dir):  # not pruned between its check and its copy
            return self._write_layer(tree, store, compression, epoch)

    def _write_layer(
        self, tree: FileTree, store: BlobStore, compression: Compression, epoch: int
    ) -> Layer:
        key = layer_key(tree, compression, epoch)
        record = os.path.join(self.root, key + ".json")
        blob = os.path.join(self.root, key + ".blob")
        cached = self._load(record, blob)
        if cached is not None:
            store.add_file(blob, cached.descriptor.digest, cached.descriptor.size)
            return cached
        layer = write_layer(tree, store, compression, epoch)
        self._save(layer, store.path(layer.descriptor.digest), record, blob)
        return layer

    def add(self, key: str, layer: Layer, path: str) -> None:
        """Record a layer blob written elsewhere (a registry cache's, checked against its
        key by the caller) under `key`."""
        with cache_lock(self.cache_dir):
            self._save(
                layer,
                path,
                os.path.join(self.root, key + ".json"),
                os.path.join(self.root, key + ".blob"),
            )

    def _load(self, record: str, blob: str) -> Layer | None:
        try:
            with open(record, "rb") as f:
                doc = json.loads(f.read())
            layer = Layer(Descriptor.from_json(doc["descriptor"]), str(doc["diff_id"]))
            verify_blob(blob, layer.descriptor.digest, layer.descriptor.size, "cached layer")
        except (OSError, ValueError, KeyError, TypeError, ImageFormatError):
            return None
        with contextlib.suppress(OSError):
            os.utime(record)  # used now: `smith cache prune` evicts the least recently used
        return layer

    def _save(self, layer: Layer, source: str, record: str, blob: str) -> None:
        os.makedirs(self.root, exist_ok=True)
        sweep(os.path.dirname(blob))  # what a killed run left
        tmp_blob, tmp_record = tagged(f"{blob}.tmp-"), tagged(f"{record}.tmp-")
        try:
            try:
                os.link(source, tmp_blob)
            except OSError:
                with open(source, "rb") as src, open(tmp_blob, "wb") as dst:
                    while chunk := src.read(1 << 20):
                        dst.write(chunk)
            os.replace(tmp_blob, blob)
            doc = {"descriptor": layer.descriptor.to_json(), "diff_id": layer.diff_id}
            with open(tmp_record, "w") as f:
                json.dump(doc, f, sort_keys=True)
            os.replace(tmp_record, record)  # the record last: it vouches for the blob
        except OSError:
            remove_path(tmp_blob)
            remove_path(tmp_record)  # a cache that cannot be written only costs speed
