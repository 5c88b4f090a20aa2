"""One call from a FileTree to a finished image on disk, in any output format."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from smith.errors import UsageError
from smith.layering import MAX_LAYERS
from smith.oci.blobs import BlobStore
from smith.oci.compress import MEDIA_TYPE_SUFFIX, Compression
from smith.oci.image import Descriptor, ImageConfig, rfc3339
from smith.oci.layer_cache import LayerCache
from smith.oci.layout import (
    OutputFormat,
    choose_format,
    refuse_zstd_docker_archive,
    save_layout,
    staging_layout,
)
from smith.oci.reference import check_tag
from smith.oci.writer import (
    ImageResult,
    Layer,
    write_index,
    write_layer,
    write_manifest,
    write_platform_index,
)
from smith.tree import FileTree

if TYPE_CHECKING:
    # Types only: a parent image and attached artifacts load their modules (the layer
    # reader, the referrers) where they are made; a plain build writes neither.
    from smith.oci.loaded import LoadedImage
    from smith.oci.referrers import Artifact, Referrer

log = logging.getLogger(__name__)


def write_image(
    tree: FileTree,
    config: ImageConfig,
    output: str,
    *,
    fmt: str | None = None,
    compression: Compression = Compression.GZIP,
    epoch: int = 0,
    tag: str = "",
    parent: LoadedImage | None = None,
    annotations: Mapping[str, str] | None = None,
    cache_dir: str | None = None,
    referrers: Callable[[ImageResult], Sequence[Artifact]] | None = None,
    layers: Sequence[FileTree] = (),
) -> ImageResult:
    """Write `tree` as one layer, or `layers` (bottom first: a smith.layering plan's trees)
    if given, on top of `parent`'s layers, if any, to `output`.

    The output appears only when complete; on any error or interrupt nothing is left.
    `referrers` makes the artifacts (an SBOM...) to attach to the finished image manifest:
    they are written beside it and listed in index.json, the image's own bytes unchanged.
    """
    out_format, gz = choose_format(output, fmt)
    check_tag(tag)
    parent_types = [layer.media_type for layer in parent.layers] if parent is not None else []
    refuse_zstd_docker_archive(out_format, [MEDIA_TYPE_SUFFIX[compression], *parent_types])
    with staging_layout(output) as store:
        image = PlatformImage(tree, config, parent, annotations, tuple(layers))
        result = stage_image(store, image, compression, epoch, cache_dir)
        attached = [
            attach(store, result.manifest, artifact)
            for artifact in (referrers(result) if referrers is not None else ())
        ]
        index = write_index(store, result, tag, [r.index_entry() for r in attached])
        result = replace(result, index="sha256:" + hashlib.sha256(index).hexdigest())
        save_layout(store, result, output, out_format, gz=gz, tag=tag, epoch=epoch)
    return result


def attach(store: BlobStore, manifest: Descriptor, artifact: Artifact) -> Referrer:
    """`artifact` written beside the image as a referrer of `manifest`."""
    from smith.oci.referrers import write_referrer  # only a build with artifacts needs it

    return write_referrer(store, manifest, artifact)


@dataclass(frozen=True)
class PlatformImage:
    """What one platform's manifest of an image is written from."""

    tree: FileTree
    config: ImageConfig
    parent: LoadedImage | None = None
    annotations: Mapping[str, str] | None = None
    layers: tuple[FileTree, ...] = ()  # the layer trees, bottom first; () is `tree` alone
    # In an index, the artifacts (SBOM, provenance) to attach to this platform's manifest.
    referrers: Callable[[ImageResult], Sequence[Artifact]] | None = None

    def layer_trees(self) -> tuple[FileTree, ...]:
        return self.layers or (self.tree,)


@dataclass(frozen=True)
class IndexResult:
    index: Descriptor  # the image index blob that lists the platforms
    images: tuple[ImageResult, ...]  # in the order given


def write_index_image(
    images: Sequence[PlatformImage],
    output: str,
    *,
    fmt: str | None = None,
    compression: Compression = Compression.GZIP,
    epoch: int = 0,
    tag: str = "",
    cache_dir: str | None = None,
) -> IndexResult:
    """Write one manifest per image, each exactly as write_image writes it alone (same
    layer, config and manifest bytes), and an image index of them, to `output`; each
    image's `referrers` are attached to its manifest."""
    out_format, gz = choose_format(output, fmt)
    if out_format is OutputFormat.DOCKER_ARCHIVE:
        raise UsageError(
            f"{output}: a docker-archive holds one platform's image, not an index of "
            f"{len(images)} (write oci or oci-archive)"
        )
    check_tag(tag)
    with staging_layout(output) as store:
        results = tuple(stage_image(store, i, compression, epoch, cache_dir) for i in images)
        # Each platform's artifacts refer to its own manifest, as one image's do (and as
        # `docker buildx` attests each platform): listed in index.json after the index.
        attached = [
            attach(store, result.manifest, artifact).index_entry()
            for image, result in zip(images, results, strict=True)
            if image.referrers is not None
            for artifact in image.referrers(result)
        ]
        index, _ = write_platform_index(store, results, tag, attached)
        save_layout(store, results[0], output, out_format, gz=gz, tag=tag, epoch=epoch)
    return IndexResult(index, results)


def stage_image(
    store: BlobStore,
    image: PlatformImage,
    compression: Compression,
    epoch: int,
    cache_dir: str | None,
) -> ImageResult:
    """The layers (on the parent's), config and manifest blobs of one image, in `store`."""
    layers: list[Layer] = []
    history: list[Mapping[str, Any]] = []
    parent = image.parent
    if parent is not None:
        for layer in parent.layers:
            # Linked or copied as stored, checked first (unless a read of it did already).
            store.add_file(layer.verified_path(), layer.digest, layer.size, checked=True)
            layers.append(Layer(layer.descriptor, layer.diff_id))
        history = list(parent.config.get("history") or [])
    trees = image.layer_trees()
    if len(layers) + len(trees) > MAX_LAYERS:
        raise UsageError(
            f"{len(layers)} parent layers and {len(trees)} of smith's make more than "
            f"{MAX_LAYERS} layers (containerd's limit): lower --layer-budget"
        )
    for tree in trees:
        if cache_dir is not None:
            layers.append(LayerCache(cache_dir).write_layer(tree, store, compression, epoch))
        else:
            layers.append(write_layer(tree, store, compression, epoch))
        if history:
            history.append({"created": rfc3339(epoch), "created_by": "smith"})
    return write_manifest(
        store, layers, image.config, epoch, history=history, annotations=image.annotations
    )
