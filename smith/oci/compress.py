"""Layer compression whose bytes depend only on the input and pinned package versions.

gzip: deflate comes from the `deflate` package, which bundles libdeflate, so the host's zlib
(zlib-ng on newer Fedora, patched zlib elsewhere) can never change a byte. libdeflate only
compresses whole buffers, so the layer is cut into fixed-size pieces of the *uncompressed*
stream and each becomes one gzip member (RFC 1952 allows a file of several members; Go's
compress/gzip, pigz, GNU gzip and Python read them as one stream). Fixed cut points keep the
output deterministic, and independent members let both cores compress at once.

zstd: the `zstandard` package bundles libzstd. Its multi-threaded mode gives identical
bytes for every worker count >= 1 (but not for 0), so at least one worker is always used.
"""

from __future__ import annotations

import os
import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

    import zstandard

from smith.errors import UsageError
from smith.oci.compression import Compression as Compression

GZIP_LEVEL = 6
ZSTD_LEVEL = 3
# Cut points of the uncompressed stream. Part of the output format: changing it changes
# every gzip digest, so it is recorded in the annotations with the compressor.
GZIP_MEMBER_SIZE = 4 << 20
# The gzip member header smith writes itself: no FNAME/FCOMMENT/FEXTRA, MTIME 0,
# XFL 0, and OS 255 ("unknown"), never the host's OS byte, whatever Python version.
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"

MEDIA_TYPE_SUFFIX = {Compression.GZIP: "+gzip", Compression.ZSTD: "+zstd", Compression.NONE: ""}


@dataclass(frozen=True)
class CompressorInfo:
    name: str
    version: str
    level: int

    def annotations(self) -> dict[str, str]:
        return {
            "org.smith.compressor": self.name,
            "org.smith.compressor.version": self.version,
            "org.smith.compressor.level": str(self.level),
        }


def compressor_info(compression: Compression) -> CompressorInfo | None:
    # The modules' own __version__ (their distribution's version, a test checks), not
    # importlib.metadata: importing that costs every build ~0.1 s.
    # The compressors are imported where they are used: the option parsing that imports
    # this module (every command with --compression) needs neither.
    if compression is Compression.GZIP:
        import deflate

        name = f"libdeflate(deflate)/members-{GZIP_MEMBER_SIZE}"
        return CompressorInfo(name, deflate.__version__, GZIP_LEVEL)
    if compression is Compression.ZSTD:
        import zstandard  # with platform, ~10 ms

        return CompressorInfo("zstd(zstandard)", zstandard.__version__, ZSTD_LEVEL)
    return None


def parse_compression(value: str) -> Compression:
    try:
        return Compression(value)
    except ValueError:
        known = ", ".join(c.value for c in Compression)
        raise UsageError(f"unknown compression {value!r} (known: {known})") from None


def gzip_member(data: bytes | memoryview) -> bytes:
    import deflate

    body = deflate.deflate_compress(data, GZIP_LEVEL)
    trailer = struct.pack("<II", deflate.crc32(data), len(data) & 0xFFFFFFFF)
    return GZIP_HEADER + body + trailer


def workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


class CompressedWriter:
    """A file-like sink: bytes written to it reach `out` compressed, via `on_output`.

    `on_output` sees every compressed byte in order (to hash and count it).
    """

    def __init__(
        self, out: BinaryIO, compression: Compression, on_output: Callable[[bytes], None]
    ) -> None:
        self._out = out
        self._emit = on_output
        self._compression = compression
        self._held: list[bytes] = []  # uncompressed bytes not yet in a gzip member
        self._held_size = 0
        self._pending: deque[Future[bytes]] = deque()
        self._pool: ThreadPoolExecutor | None = None
        self._zstd: zstandard.ZstdCompressionObj | None = None
        if compression is Compression.GZIP:
            # Here, not at the top: every command with --compression imports this module.
            from concurrent.futures import ThreadPoolExecutor

            from smith.stopsignals import block_stop_signals

            self._pool = ThreadPoolExecutor(max_workers=workers(), initializer=block_stop_signals)
        elif compression is Compression.ZSTD:
            import zstandard

            cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL, threads=workers())
            self._zstd = cctx.compressobj()

    def _put(self, data: bytes) -> None:
        if data:
            self._out.write(data)
            self._emit(data)

    def write(self, data: bytes) -> None:
        if self._compression is Compression.NONE:
            self._put(data)
        elif self._zstd is not None:
            self._put(self._zstd.compress(data))
        else:
            # The pieces are held as they come and joined once per member: growing and
            # cutting one buffer copied every byte three times (+=, the slice, bytes()).
            self._held.append(data)
            self._held_size += len(data)
            if self._held_size >= GZIP_MEMBER_SIZE:
                joined = b"".join(self._held)
                view = memoryview(joined)
                start = 0
                while len(joined) - start >= GZIP_MEMBER_SIZE:
                    self._submit(view[start : start + GZIP_MEMBER_SIZE])
                    start += GZIP_MEMBER_SIZE
                rest = joined[start:]
                self._held, self._held_size = ([rest] if rest else []), len(rest)

    def _submit(self, piece: bytes | memoryview) -> None:
        assert self._pool is not None
        self._pending.append(self._pool.submit(gzip_member, piece))
        # Bound the pieces in flight so memory stays flat whatever the layer size: one per
        # worker plus one ready to go keeps both cores busy.
        while len(self._pending) > workers() + 1:
            self._put(self._pending.popleft().result())

    def close(self) -> None:
        if self._zstd is not None:
            self._put(self._zstd.flush())
        elif self._pool is not None:
            if self._held_size:
                self._submit(b"".join(self._held))
                self._held, self._held_size = [], 0
            while self._pending:
                self._put(self._pending.popleft().result())
            self._pool.shutdown()

    def abort(self) -> None:
        if self._pool is not None:
            for fut in self._pending:
                fut.cancel()
            self._pool.shutdown(wait=True, cancel_futures=True)
