"""From a FileTree to an OCI image: layer blob, config, manifest, index, in one directory."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

from smith.oci.blobs import BlobStore
from smith.oci.compress import (
    MEDIA_TYPE_SUFFIX,
    CompressedWriter,
    Compression,
    compressor_info,
)
from smith.oci.image import (
    ANNOTATION_REF_NAME,
    MEDIA_OCI_CONFIG,
    MEDIA_OCI_INDEX,
    MEDIA_OCI_LAYER,
    MEDIA_OCI_MANIFEST,
    Descriptor,
    ImageConfig,
    canonical_json,
    config_document,
    index_document,
    manifest_document,
)
from smith.oci.tarball import stream_layer
from smith.tree import FileTree

# Small tar headers are gathered into pieces of this size before they reach the hasher and
# compressor: fewer calls, same bytes.
COALESCE = 1 << 20
OCI_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'


@dataclass(frozen=True)
class Layer:
    descriptor: Descriptor
    diff_id: str  # sha256 of the uncompressed tar: the cross-machine contract


@dataclass(frozen=True)
class ImageResult:
    manifest: Descriptor
    config: Descriptor
    layers: tuple[Layer, ...]
    index: str = ""  # digest of index.json, once it is written


def write_layer(tree: FileTree, store: BlobStore, compression: Compression, epoch: int) -> Layer:
    uncompressed = hashlib.sha256()

    def fill(out: BinaryIO, observe: Any) -> None:
        writer = CompressedWriter(out, compression, observe)
        try:
            # Small pieces (headers, small files) are joined before they are hashed and
            # compressed; a 1 MiB piece of a large file goes through as it was read, not
            # copied twice into a buffer and out of it.
            pending: list[bytes] = []
            size = 0
            for chunk in stream_layer(tree, epoch):
                pending.append(chunk)
                size += len(chunk)
                if size >= COALESCE:
                    data = pending[0] if len(pending) == 1 else b"".join(pending)
                    uncompressed.update(data)
                    writer.write(data)
                    pending.clear()
                    size = 0
            data = b"".join(pending)
            uncompressed.update(data)
            writer.write(data)
            writer.close()
        except BaseException:
            writer.abort()
            raise

    digest, size = store.add_stream(fill)
    info = compressor_info(compression)
    annotations = tuple(sorted(info.annotations().items())) if info else ()
    media_type = MEDIA_OCI_LAYER + MEDIA_TYPE_SUFFIX[compression]
    descriptor = Descriptor(media_type, digest, size, annotations)
    return Layer(descriptor, "sha256:" + uncompressed.hexdigest())


def write_manifest(
    store: BlobStore,
    layers: Sequence[Layer],
    config: ImageConfig,
    epoch: int,
    *,
    history: Sequence[Mapping[str, Any]] = (),
    annotations: Mapping[str, str] | None = None,
) -> ImageResult:
    """Write config and manifest blobs for `layers`; return their descriptors."""
    config_doc = config_document(config, [layer.diff_id for layer in layers], epoch, history)
    config_digest, config_size = store.add_bytes(canonical_json(config_doc))
    config_desc = Descriptor(MEDIA_OCI_CONFIG, config_digest, config_size)
    manifest_doc = manifest_document(
        config_desc, [layer.descriptor for layer in layers], annotations
    )
    manifest_digest, manifest_size = store.add_bytes(canonical_json(manifest_doc))
    manifest_desc = Descriptor(
        MEDIA_OCI_MANIFEST, manifest_digest, manifest_size, platform=config.platform
    )
    return ImageResult(manifest_desc, config_desc, tuple(layers))


def write_index(
    store: BlobStore,
    result: ImageResult,
    tag: str = "",
    extra: Sequence[Mapping[str, Any]] = (),
) -> bytes:
    """Write `index.json` and `oci-layout` at the store's root; return the index bytes.
    `extra` entries (attached artifacts) follow the image, which stays the first."""
    return write_top_index(store, result.manifest, tag, extra)


def write_platform_index(
    store: BlobStore,
    results: Sequence[ImageResult],
    tag: str = "",
    extra: Sequence[Mapping[str, Any]] = (),
) -> tuple[Descriptor, bytes]:
    """An image index blob listing one manifest per platform (in the order given), and an
    `index.json` naming it: (the index blob's descriptor, the index.json bytes).

    The platforms are one image under one name, so index.json holds one entry, the nested
    index, as registries serve it: a reader picks a platform inside it (skopeo's
    --override-arch, podman's --arch), and a tag names the whole image. `extra` entries
    (each platform's attached artifacts, whose subject is that platform's manifest) follow.
    """
    doc = index_document([r.manifest for r in results])
    digest, size = store.add_bytes(canonical_json(doc))
    nested = Descriptor(MEDIA_OCI_INDEX, digest, size)
    return nested, write_top_index(store, nested, tag, extra)


DEFAULT_REF_NAME = "latest"


def write_top_index(
    store: BlobStore,
    manifest: Descriptor,
    tag: str = "",
    extra: Sequence[Mapping[str, Any]] = (),
) -> bytes:
    """`index.json` naming `manifest` (with the tag as its ref.name), then `extra`, and
    `oci-layout`.

    Without a tag the image is named `latest`, as the original smith named it, so that
    `skopeo inspect oci:DIR:latest` and umoci find every layout smith writes (built,
    minimized or downloaded) by one name, also beside attached artifacts, where skopeo's
    bare oci:DIR cannot choose."""
    manifest = Descriptor(
        manifest.media_type,
        manifest.digest,
        manifest.size,
        ((ANNOTATION_REF_NAME, tag or DEFAULT_REF_NAME),),
        manifest.platform,
    )
    doc = index_document([manifest])
    doc["manifests"].extend(extra)
    index = canonical_json(doc)
    with open(f"{store.root}/index.json", "wb") as f:
        f.write(index)
    with open(f"{store.root}/oci-layout", "wb") as f:
        f.write(OCI_LAYOUT)
    return index
