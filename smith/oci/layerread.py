"""Open a blob as an uncompressed stream: the one place where smith reads what it did not
write (layers for minimize, diff, verify and crashcart's toolboxes; image archives).

The compression is told once, by the first bytes (media types can lie, and docker-archives
do not state one); inflation has bounded output (a small blob can inflate to gigabytes);
what comes out is hashed as it goes, so the diff_id is checked without a second read; and
so is what goes in, so that a layer's blob digest is checked in the same pass (open_blob's
`expect`), not by reading every blob once more when the image is opened.
gzip may be several members in a row (smith itself writes them so), zstd several frames;
trailing zero bytes after the last gzip member are tolerated, as gzip does.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, BinaryIO, cast

import zstandard

from smith.errors import ImageFormatError
from smith.inflate import prefixed
from smith.limits import Limit, expansion_bound
from smith.oci.blobs import check_blob_content
from smith.oci.compress import Compression
from smith.stopsignals import stop_signals_held

READ_SIZE = 1 << 20
# Checkpoints at least this far apart in the output (each holds ~40 KB: zlib's 32 KiB window
# and its state), taken where the inflater has consumed all its input.
CHECKPOINT_EVERY = 16 << 20
PREFETCH = 4  # decompressed pieces of READ_SIZE waiting for the tar reader
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class DecompressError(Exception):
    """The compressed stream of a blob is malformed or truncated."""


def sniff_compression(head: bytes) -> Compression:
    """gzip, zstd or none, by a blob's first (up to four) bytes."""
    if head.startswith(GZIP_MAGIC):
        return Compression.GZIP
    if head.startswith(ZSTD_MAGIC):
        return Compression.ZSTD
    return Compression.NONE


def blob_compression(path: str) -> Compression:
    with open(path, "rb") as f:
        return sniff_compression(f.read(4))


class _Hashed:
    """A blob file read through: every byte hashed and counted (the blob's own digest)."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.hasher = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1, /) -> bytes:
        data = self.raw.read(n)
        self.hasher.update(data)
        self.size += len(data)
        return data

    def fileno(self) -> int:
        return self.raw.fileno()

    def tell(self) -> int:
        return self.raw.tell()


@dataclass(frozen=True)
class Checkpoint:
    """A gzip stream's inflate state at `out` bytes of output, with the input read up to
    `raw` (none of it left unconsumed): inflation can start again here (zran's idea), so a
    file of a layer is read again without inflating the layer from its start."""

    out: int
    raw: int
    state: zlib._Decompress


class LayerReader:
    """A stream of a blob's uncompressed bytes, hashed (sha256) and counted as it goes.

    read_piece() hands out decompressed pieces as they come; after start(), decompression
    runs on a producer thread and read_piece() raises its errors. With `hash_blob`, the
    compressed bytes are hashed too, as they are read (blob_digest()).
    """

    def __init__(self, raw: BinaryIO, what: str = "blob", *, hash_blob: bool = False) -> None:
        self._what = what
        self.hasher = hashlib.sha256()
        self.size = 0
        head = raw.read(4)
        self.compression = sniff_compression(head)
        # An uncompressed blob is its own tar: the tar's hash is the blob's.
        self._blob: _Hashed | None = None
        if hash_blob and self.compression is not Compression.NONE:
            self._blob = _Hashed(raw)
            self._blob.hasher.update(head)
            self._blob.size = len(head)
        self._raw: BinaryIO | _Hashed = self._blob or raw
        self.checkpoints: list[Checkpoint] | None = None  # kept when set to a list
        self._next_checkpoint = 0
        self._pending = head
        self._eof = False
        self._produced_eof = False
        self._thread: threading.Thread | None = None
        self._gzip: zlib._Decompress | None = None
        self._zstd: zstandard.ZstdDecompressionReader | None = None
        # What the blob may inflate to (the ratio and absolute bounds of every other
        # decompression): a layer of zeros, 1 MB compressed, wrote a gigabyte to TMPDIR
        # per megabyte, and went on until the disk was full.
        self._most: int | None = None
        self._limit: Limit | None = None
        if self.compression is not Compression.NONE:
            self._most, self._limit = expansion_bound(os.fstat(raw.fileno()).st_size)
        if self.compression is Compression.GZIP:
            self._gzip = zlib.decompressobj(31)
        elif self.compression is Compression.ZSTD:
            self._zstd = zstandard.ZstdDecompressor().stream_reader(
                cast(IO[bytes], prefixed(head, self._raw)),
                read_size=READ_SIZE,
                read_across_frames=True,
            )

    def _fill(self) -> bytes:
        """The next piece of uncompressed bytes (at most READ_SIZE), or b"" at the end."""
        if self._zstd is not None:
            try:
                return self._zstd.read(READ_SIZE)
            except zstandard.ZstdError as err:
                raise DecompressError(f"not a valid zstd stream ({err})") from None
        if self._gzip is not None:
            try:
                return self._fill_gzip(self._gzip)
            except zlib.error as err:
                raise DecompressError(f"not a valid gzip stream ({err})") from None
        data = self._pending or self._raw.read(READ_SIZE)
        self._pending = b""
        return data

    def _fill_gzip(self, d: zlib._Decompress) -> bytes:
        while not self._produced_eof:
            if d.eof:
                rest = d.unused_data or self._raw.read(READ_SIZE)
                if not rest.strip(b"\x00"):
                    self._check_zero_tail()
                    self._produced_eof = True
                    return b""
                if len(rest) < 2:
                    rest += self._raw.read(READ_SIZE)
                if not rest.startswith(GZIP_MAGIC):
                    raise DecompressError("garbage after the end of the gzip stream")
                d = self._gzip = zlib.decompressobj(31)
                data = rest
            else:
                data = d.unconsumed_tail or self._pending
                self._pending = b""
                if not data:
                    if self.checkpoints is not None and self.size >= self._next_checkpoint:
                        self.checkpoints.append(Checkpoint(self.size, self._raw.tell(), d.copy()))
                        self._next_checkpoint = self.size + CHECKPOINT_EVERY
                    data = self._raw.read(READ_SIZE)
                if not data:
                    raise DecompressError("the gzip stream is truncated")
            # Bounded output: a small input can inflate to gigabytes (a file of zeros).
            out = d.decompress(data, READ_SIZE)
            if out:
                return out
        return b""

    def resume(self, at: Checkpoint) -> None:
        """Go on inflating from `at` (a checkpoint of the same blob, this reader fresh)."""
        raw = self._raw
        assert self._gzip is not None and self._thread is None and not isinstance(raw, _Hashed)
        raw.seek(at.raw)
        self._gzip, self._pending, self.size = at.state.copy(), b"", at.out

    def _check_zero_tail(self) -> None:
        """After the last gzip member only zero padding may follow."""
        while rest := self._raw.read(READ_SIZE):
            if rest.strip(b"\x00"):
                raise DecompressError("garbage after the end of the gzip stream")

    def _next(self) -> bytes:
        piece = self._fill()
        if piece:
            self.size += len(piece)
            if self._limit is not None and self.size > cast(int, self._most):
                raise self._limit.error(f"{self._what}: decompressed")
        return piece

    def start(self) -> None:
        """Decompress on a second thread and hash on a third (zlib, zstd and sha256 release
        the GIL), so that both overlap with tar parsing and file writing, as `tar -xz`
        overlaps gzip with tar; inflating and hashing a layer take about as long as each
        other, so neither waits for the other's work. At most PREFETCH pieces wait in each
        queue: memory stays bounded."""
        self._queue: queue.Queue[bytes | BaseException] = queue.Queue(PREFETCH)
        self._to_hash: queue.Queue[bytes] = queue.Queue(PREFETCH)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, daemon=True)
        self._hashing = threading.Thread(target=self._hash, daemon=True)
        with stop_signals_held():  # the threads inherit the mask: see smith/stopsignals.py
            self._hashing.start()
            self._thread.start()

    def _produce(self) -> None:
        try:
            while not self._stop.is_set():
                piece = self._next()
                if piece:
                    self._to_hash.put(piece)
                self._queue.put(piece)
                if not piece:
                    return
        except BaseException as err:  # handed to the reading thread, raised there
            self._queue.put(err)
        finally:
            self._to_hash.put(b"")  # every piece produced is hashed, read or not

    def _hash(self) -> None:
        while piece := self._to_hash.get():
            self.hasher.update(piece)

    def close(self) -> None:
        """Stop the producer (after an error in the consumer), freeing what it queued; the
        hash then covers every piece it produced."""
        if self._thread is None:
            return
        self._stop.set()
        while self._thread.is_alive():
            with contextlib.suppress(queue.Empty):
                self._queue.get(timeout=0.05)
        self._thread.join()
        self._hashing.join()

    def read_piece(self, _hint: int = 0) -> bytes:
        """The next decompressed piece, whatever its size (b"" at the end)."""
        if self._eof:
            return b""
        if self._thread is not None:
            piece = self._queue.get()
            if isinstance(piece, BaseException):
                self._eof = True
                raise piece
        else:
            piece = self._next()
            self.hasher.update(piece)
        if not piece:
            self._eof = True
        return piece

    def drain(self) -> None:
        """Read (and hash) whatever the tar reader left: the end-of-archive padding."""
        while self.read_piece():
            pass

    def digest(self) -> str:
        """The hash of the tar; with a producer, only after close()."""
        return "sha256:" + self.hasher.hexdigest()

    def blob_digest(self) -> tuple[int, str]:
        """The size and digest of the whole blob, reading (not inflating) what the stream
        left of it; only after close(), and only with `hash_blob`."""
        if self._blob is None:  # uncompressed: the tar is the blob, read to its end
            while piece := self._next():
                self.hasher.update(piece)
            return self.size, self.digest()
        while self._blob.read(READ_SIZE):
            pass
        return self._blob.size, "sha256:" + self._blob.hasher.hexdigest()


@contextlib.contextmanager
def open_blob(
    path: str,
    what: str,
    *,
    threaded: bool = False,
    expect: tuple[str, int, str] | None = None,
    checkpoints: bool = False,
) -> Iterator[LayerReader]:
    """The uncompressed stream of the blob at `path`; `what` names it in errors. With
    `expect` (digest, size, how errors name the blob), the blob is checked against them in
    the same pass: once the caller is done, before the with block ends, and also when the
    caller fails (a corrupt blob is the root cause to report, not the garbage it inflated
    to). With `checkpoints`, a gzip blob's reader keeps them."""
    try:
        raw = open(path, "rb")  # noqa: SIM115 - closed by the with below
    except FileNotFoundError:
        raise ImageFormatError(f"{what}: blob is missing") from None
    with raw:
        reader = LayerReader(raw, what, hash_blob=expect is not None)
        if checkpoints and reader.compression is Compression.GZIP:
            reader.checkpoints = []
        if threaded:
            reader.start()
        try:
            yield reader
        except Exception:
            reader.close()
            if expect is not None:
                check_blob_content(*expect, *reader.blob_digest())
            raise
        finally:
            reader.close()
        if expect is not None:
            check_blob_content(*expect, *reader.blob_digest())
