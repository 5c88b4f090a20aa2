"""Content-addressed blob directories (`blobs/sha256/<hex>`), written and checked."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from typing import BinaryIO

from smith.atomic import remove_path
from smith.errors import ImageFormatError

DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
COPY_SIZE = 1 << 20


def check_digest_form(digest: str, what: str = "blob") -> str:
    if not DIGEST_RE.match(digest):
        raise ImageFormatError(f"{what} has an unsupported or malformed digest: {digest!r}")
    return digest


def blob_file(root: str, digest: str) -> str:
    """Where a layout at `root` keeps the blob `digest` (checked to be a sha256 digest, so
    that it can never name another path)."""
    return os.path.join(root, "blobs", "sha256", check_digest_form(digest).removeprefix("sha256:"))


class BlobStore:
    """An OCI layout's blob directory. Blobs are written under a temporary name and renamed
    to their digest only once complete, so a blob name always means its content."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.dir = os.path.join(root, "blobs", "sha256")
        os.makedirs(self.dir, exist_ok=True)

    def path(self, digest: str) -> str:
        return blob_file(self.root, digest)

    def has(self, digest: str) -> bool:
        return os.path.exists(self.path(digest))

    def add_bytes(self, data: bytes) -> tuple[str, int]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if not self.has(digest):
            tmp = self.path(digest) + ".tmp"
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, self.path(digest))
        return digest, len(data)

    def add_stream(
        self, fill: Callable[[BinaryIO, Callable[[bytes], None]], None]
    ) -> tuple[str, int]:
        """Write a blob by calling `fill(file, observe)`; `fill` passes every byte it writes
        to `observe` (which hashes it). Returns the digest and size."""
        hasher = hashlib.sha256()
        size = 0

        def observe(data: bytes) -> None:
            nonlocal size
            hasher.update(data)
            size += len(data)

        tmp = os.path.join(self.dir, f".incoming-{os.getpid()}-{id(hasher)}")
        try:
            with open(tmp, "wb") as f:
                fill(f, observe)
            digest = "sha256:" + hasher.hexdigest()
            os.replace(tmp, self.path(digest))
        except BaseException:
            remove_path(tmp)
            raise
        return digest, size

    def add_file(self, source: str, digest: str, size: int, *, checked: bool = False) -> None:
        """Copy an existing blob in (hard link when possible), checking it on the way
        (unless the caller has: `checked`)."""
        if self.has(digest):
            return
        if not checked:
            verify_blob(source, digest, size)
        dest = self.path(digest)
        try:
            os.link(source, dest)
        except OSError:
            tmp = dest + ".tmp"
            with open(source, "rb") as src, open(tmp, "wb") as dst:
                while chunk := src.read(COPY_SIZE):
                    dst.write(chunk)
            os.replace(tmp, dest)


def verify_blob(path: str, digest: str, size: int, what: str = "blob") -> None:
    """Check a blob file against its descriptor; name it when it is missing, short or wrong."""
    check_blob_file(path, digest, size, what)
    hasher = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(COPY_SIZE):
            hasher.update(chunk)
    check_blob_content(digest, size, what, size, "sha256:" + hasher.hexdigest())


def check_blob_file(path: str, digest: str, size: int, what: str = "blob") -> None:
    """What can be checked of a blob without reading it: its digest's form, that the file
    exists and has the descriptor's size (the content is checked where it is read)."""
    check_digest_form(digest, what)
    try:
        actual_size = os.path.getsize(path)
    except FileNotFoundError:
        raise ImageFormatError(f"{what} {digest} is missing") from None
    check_blob_size(digest, size, what, actual_size)


def check_blob_size(digest: str, size: int, what: str, actual_size: int) -> None:
    if actual_size != size:
        state = "truncated" if actual_size < size else "longer than its descriptor"
        raise ImageFormatError(f"{what} {digest} is {state}: {actual_size} bytes, expected {size}")


def check_blob_content(digest: str, size: int, what: str, actual_size: int, actual: str) -> None:
    """The size and digest of a blob's bytes as read, against its descriptor."""
    check_blob_size(digest, size, what, actual_size)
    if actual != digest:
        raise ImageFormatError(f"{what} {digest} is corrupt: its content has digest {actual}")
