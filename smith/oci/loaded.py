"""The image object: one image (one platform) that smith read, every blob checked.

Whatever the image came from (an OCI layout, an oci-archive, a docker-archive, a registry
pull), it is the same object: the raw index, manifest and config bytes as read (their
digests are the image's identity, `smith diff` compares them), the typed config, and layers
that open compressed (the blob, for push and for a parent's layers) or uncompressed (on the
one layer-reading stack, smith.oci.layerread). Reading lives in smith.oci.reading, writing
in smith.oci.layout and smith.oci.output.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, BinaryIO

from smith.errors import ImageFormatError
from smith.oci.compress import Compression
from smith.oci.image import Descriptor, ImageConfig, Platform, config_from_document
from smith.oci.layerread import LayerReader, blob_compression, open_blob


@dataclass(frozen=True)
class LoadedLayer:
    """Layer `index` (from 0) of an image: its descriptor, the config's diff_id, its blob."""

    index: int
    descriptor: Descriptor
    diff_id: str
    # The blob file, checked against the descriptor; not compared: the same layer of two
    # images is equal wherever each stores it.
    path: str = field(repr=False, compare=False)

    @property
    def digest(self) -> str:
        return self.descriptor.digest

    @property
    def size(self) -> int:
        return self.descriptor.size

    @property
    def media_type(self) -> str:
        return self.descriptor.media_type

    @property
    def name(self) -> str:
        """How errors name the layer: `layer 2 (sha256:...)` says which of the image's."""
        return f"{self.index + 1} ({self.digest})"

    def open_compressed(self) -> BinaryIO:
        """The blob as stored (compressed or not)."""
        try:
            return open(self.path, "rb")
        except FileNotFoundError:
            raise ImageFormatError(f"layer {self.name}: blob is missing") from None

    @contextmanager
    def open(self, *, threaded: bool = False) -> Iterator[LayerReader]:
        """The uncompressed tar, hashed as it is read (the caller checks the diff_id)."""
        with open_blob(self.path, f"layer {self.name}", threaded=threaded) as reader:
            yield reader

    def compression(self) -> Compression:
        """As told by the blob's first bytes (media types can lie)."""
        return blob_compression(self.path)


@dataclass(frozen=True)
class LoadedImage:
    """One image read from disk or pulled, every blob checked against its descriptor."""

    source: str
    manifest_descriptor: Descriptor
    manifest: Mapping[str, Any]
    config_descriptor: Descriptor
    config: Mapping[str, Any]  # the config document; image_config() is the typed form
    layers: tuple[LoadedLayer, ...]
    config_path: str = field(repr=False)  # the config blob (push uploads it as stored)
    # The bytes of the layout's index.json or the docker-archive's manifest.json as read
    # (None for a registry pull, whose index smith wrote itself): `smith diff` compares them.
    top: bytes | None = field(default=None, repr=False)
    # The manifest and config as read (a docker-archive's manifest as smith synthesised it).
    manifest_bytes: bytes = field(default=b"", repr=False)
    config_bytes: bytes = field(default=b"", repr=False)

    @property
    def diff_ids(self) -> tuple[str, ...]:
        return tuple(layer.diff_id for layer in self.layers)

    @property
    def compressed_size(self) -> int:
        return sum(layer.size for layer in self.layers)

    @cached_property
    def typed_config(self) -> ImageConfig:
        # cached_property writes the instance's __dict__ directly: frozen still holds for
        # every field.
        try:
            return config_from_document(self.config)
        except ImageFormatError as err:
            raise ImageFormatError(f"{self.source}: {err}") from None

    def image_config(self) -> ImageConfig:
        return self.typed_config

    @property
    def platform(self) -> Platform:
        return self.typed_config.platform
