"""The image object: one image (one platform) that smith read, every blob checked.

Whatever the image came from (an OCI layout, an oci-archive, a docker-archive, a registry
pull), it is the same object: the raw index, manifest and config bytes as read (their
digests are the image's identity, `smith diff` compares them), the typed config, and layers
that open compressed (the blob, for push and for a parent's layers) or uncompressed (on the
one layer-reading stack, smith.oci.layerread). Reading lives in smith.oci.reading, writing
in smith.oci.layout and smith.oci.output.

A layer's blob is checked against its descriptor once, where it is first read: open()
hashes the compressed bytes as it inflates them (minimize, crashcart's toolboxes), so that
opening an image costs no extra pass over every blob; what reads the blob as stored (push,
a parent's layers, diff) asks for verified_path(), which reads it once if that has not
happened yet. Until then only the blob's presence and size are known (checked when the
image is read).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from threading import Lock
from typing import Any, BinaryIO

from smith.errors import ImageFormatError
from smith.oci.blobs import verify_blob
from smith.oci.compress import Compression
from smith.oci.image import Descriptor, ImageConfig, Platform, config_from_document
from smith.oci.layerread import LayerReader, blob_compression, open_blob


class BlobCheck:
    """Whether a blob's content was found to match its descriptor (set once, by the first
    read of the whole blob; a lock, since push reads blobs on several threads)."""

    __slots__ = ("done", "lock")

    def __init__(self, done: bool = False) -> None:
        self.done = done
        self.lock = Lock()


@dataclass(frozen=True)
class LoadedLayer:
    """Layer `index` (from 0) of an image: its descriptor, the config's diff_id, its blob."""

    index: int
    descriptor: Descriptor
    diff_id: str
    # The blob file, whose size matches the descriptor; its content is checked where it is
    # first read (see the module's docstring): read it through open() or verified_path().
    # Not compared: the same layer of two images is equal wherever each stores it.
    unchecked_path: str = field(repr=False, compare=False)
    source: str = field(default="", repr=False, compare=False)  # the image, for errors
    check: BlobCheck = field(default_factory=BlobCheck, repr=False, compare=False)

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

    @property
    def what(self) -> str:
        """How a blob error names it (the words verify_blob has always used)."""
        return f"{self.source}: layer" if self.source else "layer"

    def verified_path(self) -> str:
        """The blob file, its content checked against the descriptor (read once for that,
        unless a read of the whole blob did it already)."""
        with self.check.lock:
            if not self.check.done:
                verify_blob(self.unchecked_path, self.digest, self.size, self.what)
                self.check.done = True
        return self.unchecked_path

    def open_compressed(self) -> BinaryIO:
        """The blob as stored (compressed or not), checked."""
        try:
            return open(self.verified_path(), "rb")
        except FileNotFoundError:
            raise ImageFormatError(f"layer {self.name}: blob is missing") from None

    @contextmanager
    def open(self, *, threaded: bool = False, checkpoints: bool = False) -> Iterator[LayerReader]:
        """The uncompressed tar, hashed as it is read (the caller checks the diff_id); with
        `checkpoints`, a gzip blob's reader keeps them (smith.oci.layerread.Checkpoint). The
        blob is checked in the same pass: a corrupt blob raises at the end of the with
        block (or instead of the error its garbage caused), before the caller returns."""
        with open_blob(
            self.unchecked_path,
            f"layer {self.name}",
            threaded=threaded,
            expect=self.expect(),
            checkpoints=checkpoints,
        ) as reader:
            yield reader
        self.check.done = True

    def expect(self) -> tuple[str, int, str] | None:
        """What a read of the whole blob checks it against (open_blob's `expect`; None once
        it has been checked). A reader that checked it says so in `check.done`."""
        return None if self.check.done else (self.digest, self.size, self.what)

    def compression(self) -> Compression:
        """As told by the blob's first bytes (media types can lie; a sniff, not a use of
        the content: the blob is checked where it is read)."""
        return blob_compression(self.unchecked_path)


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
