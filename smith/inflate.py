"""Bounded decompression: a read(n) view of compressed bytes that never expands past a limit.

Used for repository metadata, RPM payloads and HTTP bodies sent with Content-Encoding. Each
read decompresses at most `n` bytes (zlib, bz2 and lzma take a max_length; zstd is read
through its stream reader), so a bomb costs the bound it trips, never memory or disk past it.
"""

from __future__ import annotations

import zlib
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # imported where used: a command that meets no such stream pays nothing
    import bz2
    import lzma

    import zstandard

from smith.errors import PackageError
from smith.limits import Limit, over_limit


class Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


class Codec(StrEnum):
    NONE = "none"
    GZIP = "gzip"
    ZLIB = "deflate"  # HTTP's "deflate": a zlib stream
    BZIP2 = "bzip2"
    XZ = "xz"
    LZMA = "lzma"
    ZSTD = "zstd"


def sniff(magic: bytes) -> Codec:
    """The compression `magic` (the first 6 bytes) starts; NONE for none known."""
    if magic.startswith(b"\x1f\x8b"):
        return Codec.GZIP
    if magic.startswith(b"BZh"):
        return Codec.BZIP2
    if magic.startswith(b"\xfd7zXZ\x00"):
        return Codec.XZ
    if magic.startswith(b"\x28\xb5\x2f\xfd"):
        return Codec.ZSTD
    return Codec.NONE


class _Prefixed:
    """`src`, with bytes already read from it (the magic) put back in front."""

    def __init__(self, head: bytes, src: Readable) -> None:
        self.head, self.src = head, src

    def read(self, n: int = -1, /) -> bytes:
        if not self.head:
            return self.src.read(n)
        cut = len(self.head) if n < 0 else n
        out, self.head = self.head[:cut], self.head[cut:]
        return out


class Inflated:
    """read(n) of the decompressed bytes of `src`; more than `bound` in all raises
    `limit`'s error naming `what`. A stream that is damaged raises PackageError."""

    CHUNK = 1 << 18

    def __init__(
        self, src: Readable, codec: Codec, *, bound: int, limit: Limit | None, what: str
    ) -> None:
        self.src, self.codec, self.bound, self.limit, self.what = src, codec, bound, limit, what
        self.total = 0
        self.eof = False
        self.pending = b""  # compressed input not yet consumed (zlib's unconsumed_tail)
        self.dec: zlib._Decompress | bz2.BZ2Decompressor | lzma.LZMADecompressor | None = None
        self.errors: tuple[type[Exception], ...] = (OSError, EOFError, zlib.error)
        self.is_zlib = codec in (Codec.GZIP, Codec.ZLIB)
        self.zstd: zstandard.ZstdDecompressionReader | None = None
        if codec == Codec.GZIP:
            self.dec = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif codec == Codec.ZLIB:
            self.dec = zlib.decompressobj()
        elif codec == Codec.BZIP2:
            import bz2

            self.dec = bz2.BZ2Decompressor()
        elif codec in (Codec.XZ, Codec.LZMA):
            import lzma

            form = lzma.FORMAT_XZ if codec == Codec.XZ else lzma.FORMAT_ALONE
            self.dec = lzma.LZMADecompressor(form)
            self.errors += (lzma.LZMAError,)
        elif codec == Codec.ZSTD:
            import zstandard

            reader: Any = src  # any object with read(): zstandard's stubs say IO[bytes]
            self.zstd = zstandard.ZstdDecompressor().stream_reader(reader, read_across_frames=True)
            self.errors += (zstandard.ZstdError,)

    def read(self, n: int = -1, /) -> bytes:
        n = self.CHUNK if n < 0 else n
        try:
            data = self._read(n)
        except self.errors as err:
            raise PackageError(f"{self.what}: cannot decompress ({self.codec}: {err})") from None
        self.total += len(data)
        if self.total > self.bound:
            raise over_limit(f"{self.what}: decompressed", self.bound, self.limit)
        return data

    def _read(self, n: int) -> bytes:
        # One byte past the bound is asked for, so that reaching it exactly is no error.
        n = min(n, self.bound - self.total + 1)
        if self.codec == Codec.NONE:
            return self.src.read(n)
        if self.zstd is not None:
            return self.zstd.read(n)
        while not self.eof:
            out = self._step(n)
            if out:
                return out
        return b""

    def _step(self, n: int) -> bytes:
        dec = self.dec
        if self.is_zlib:
            assert isinstance(dec, type(zlib.decompressobj()))
            if dec.eof:
                self.eof = True
                return b""
            if not self.pending:
                self.pending = self.src.read(self.CHUNK)
                if not self.pending:
                    raise EOFError("the compressed stream ends early")
            out = dec.decompress(self.pending, n)
            self.pending = dec.unconsumed_tail
            return out
        assert dec is not None and not isinstance(dec, type(zlib.decompressobj()))
        if dec.eof:
            self.eof = True
            return b""
        data = b""
        if dec.needs_input:
            data = self.src.read(self.CHUNK)
            if not data:
                raise EOFError("the compressed stream ends early")
        return dec.decompress(data, n)


def open_inflated(src: Readable, *, bound: int, limit: Limit | None, what: str) -> Inflated:
    """`src` decompressed by what its first bytes say (a name may lie), or read as it is
    when they name no compression."""
    magic = src.read(6)
    return Inflated(prefixed(magic, src), sniff(magic), bound=bound, limit=limit, what=what)


def prefixed(head: bytes, src: Readable) -> Readable:
    return _Prefixed(head, src)
