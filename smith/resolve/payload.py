"""The payload of an RPM: a compressed cpio (newc) archive, read as a stream.

The compressor is told by its magic bytes (none, gzip, bzip2, xz, lzma or zstd), since old
packages do not name it and a name could lie. Nothing here writes anything: the caller
decides where each file's bytes go.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from smith.errors import PackageError
from smith.inflate import Codec, Inflated, prefixed, sniff
from smith.limits import expansion_bound


def _codec(magic: bytes, name: str) -> Codec:
    codec = sniff(magic)
    if codec != Codec.NONE:
        return codec
    if magic.startswith(b"0707"):
        return Codec.NONE
    if magic[:1] == b"\x5d":
        return Codec.LZMA
    raise PackageError(f"{name}: unknown payload compression (magic {magic[:6].hex()})")


class PayloadStream:
    """A read(n) view of the decompressed payload, decompressed in bounded pieces: a bomb
    stops at the expansion limit (smith/limits.py), never at the end of memory or disk."""

    def __init__(self, f: BinaryIO, name: str, compressed_size: int) -> None:
        self._name = name
        magic = f.read(6)
        bound, limit = expansion_bound(compressed_size)
        self._src = Inflated(
            prefixed(magic, f),
            _codec(magic, name),
            bound=bound,
            limit=limit,
            what=f"{name}: payload",
        )
        self._buf = bytearray()
        self._pos = 0
        self._eof = False

    def _fill(self, n: int) -> None:
        while len(self._buf) - self._pos < n and not self._eof:
            out = self._src.read(1 << 18)
            if not out:
                self._eof = True
                break
            if self._pos > (1 << 20):
                del self._buf[: self._pos]
                self._pos = 0
            self._buf += out

    def read(self, n: int) -> bytes:
        self._fill(n)
        data = bytes(self._buf[self._pos : self._pos + n])
        self._pos += len(data)
        if len(data) != n:
            raise PackageError(f"{self._name}: payload is truncated")
        return data

    def copy(self, n: int, sink: Callable[[bytes | bytearray | memoryview], object]) -> None:
        """Hand the next `n` bytes to `sink` in pieces, without joining them."""
        while n:
            if self._pos >= len(self._buf):
                self._fill(1)
                if self._pos >= len(self._buf):
                    raise PackageError(f"{self._name}: payload is truncated")
            take = min(n, len(self._buf) - self._pos)
            sink(memoryview(self._buf)[self._pos : self._pos + take])
            self._pos += take
            n -= take


@dataclass(frozen=True)
class CpioEntry:
    name: str
    mode: int
    uid: int
    gid: int
    nlink: int
    ino: int
    size: int


def iter_cpio(stream: PayloadStream, name: str) -> Iterator[CpioEntry]:
    """Yield each cpio (newc) header; the caller must consume exactly `size` data bytes."""
    while True:
        hdr = stream.read(110)
        magic = hdr[:6]
        if magic == b"07070X":
            raise PackageError(f"{name}: payload uses rpm's stripped cpio (files over 4 GiB)")
        if magic not in (b"070701", b"070702"):
            raise PackageError(f"{name}: bad cpio magic {magic!r} in the payload")
        try:
            fields = [int(hdr[6 + 8 * i : 14 + 8 * i], 16) for i in range(13)]
        except ValueError:
            raise PackageError(f"{name}: bad cpio header in the payload") from None
        ino, mode, uid, gid, nlink, _mtime, size = fields[:7]
        namesize = fields[11]
        raw_name = stream.read(namesize)
        stream.read((4 - (110 + namesize) % 4) % 4)
        entry_name = raw_name.rstrip(b"\0").decode("utf-8", "surrogateescape")
        if entry_name == "TRAILER!!!":
            return
        yield CpioEntry(entry_name, mode, uid, gid, nlink, ino, size)


def skip_padding(stream: PayloadStream, size: int) -> None:
    if size % 4:
        stream.read(4 - size % 4)
