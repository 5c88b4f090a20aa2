"""Files of a layer that were not copied out when it was read, read again if asked for.

minimize reads every layer once, front to back, and used to copy every file's bytes into
the layer's pack file, because what is kept is known only once the closure has run. Most
bytes of a large image are files that cannot be kept (neither ELF nor scripts, nor named by
the user), and copying them cost more than inflating them. The applier now copies out
only files that may be needed (smith.oci.unpack.PackRule) and records the others as spans
of the layer's uncompressed tar (smith.tree.LayerSpan). If one is needed after all (a data
file a run-time set keeps, say), its bytes are read again from the blob: an uncompressed
blob directly, a gzip blob by inflating from the nearest checkpoint the first pass left
(smith.oci.layerread.Checkpoint). So the rule decides only the cost, never the output.

The blob was checked against its digest by the first pass (smith.oci.loaded); what is read
again is copied once into a spill file of the store, and served from there.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import BinaryIO

from smith.errors import ImageFormatError
from smith.oci.layerread import Checkpoint, DecompressError, LayerReader
from smith.tree import HostSlice


@dataclass(eq=False)
class GzipSpans:
    """The source of a gzip layer's spans: its blob, the first pass's checkpoints, and
    where bytes read again go (`spill`, a file of the store)."""

    blob: str
    what: str  # how errors name the layer
    spill: str
    checkpoints: list[Checkpoint] = field(default_factory=list)
    _done: dict[tuple[int, int], HostSlice] = field(default_factory=dict)
    _spilled: int = 0
    # Where the last read stopped: the writer asks for kept files in path order, which in
    # most layers is tar order too, so the next span is usually just ahead.
    _cursor: _Cursor | None = None

    def materialize(self, offset: int, size: int) -> HostSlice:
        """The span's bytes, as a slice of the spill file (read from the blob once)."""
        found = self._done.get((offset, size))
        if found is not None:
            return found
        cursor = self._cursor_for(offset)
        try:
            with open(self.spill, "ab") as out:
                cursor.copy(offset, size, out)
        except DecompressError as err:  # checked by the first pass: changed since
            raise ImageFormatError(f"{self.what}: read again: {err}") from None
        found = self._done[(offset, size)] = HostSlice(self.spill, self._spilled, size)
        self._spilled += size
        return found

    def _cursor_for(self, offset: int) -> _Cursor:
        at = bisect.bisect_right([c.out for c in self.checkpoints], offset) - 1
        start = self.checkpoints[at].out if at >= 0 else 0
        cursor = self._cursor
        if cursor is not None and start <= cursor.pos <= offset:
            return cursor
        if cursor is not None:
            cursor.close()
        start_at = self.checkpoints[at] if at >= 0 else None
        cursor = self._cursor = _Cursor(self.blob, self.what, start_at)
        return cursor

    def close(self) -> None:
        if self._cursor is not None:
            self._cursor.close()
            self._cursor = None


class _Cursor:
    """A position in a gzip layer's uncompressed tar, inflating forward from a checkpoint."""

    def __init__(self, blob: str, what: str, start: Checkpoint | None) -> None:
        self._raw = open(blob, "rb")  # noqa: SIM115 - closed by close()
        self._reader = LayerReader(self._raw, what)
        if start is not None:
            self._reader.resume(start)
        self.pos = self._reader.size
        self._left = b""  # inflated bytes at pos, not yet used

    def _piece(self) -> bytes:
        if self._left:
            piece, self._left = self._left, b""
            return piece
        piece = self._reader.read_piece()
        if not piece:
            raise DecompressError("the stream ends before the file")
        return piece

    def copy(self, offset: int, size: int, out: BinaryIO) -> None:
        """Write the bytes [offset, offset + size) to `out`; pos ends after them."""
        while self.pos < offset:
            piece = self._piece()
            skip = min(len(piece), offset - self.pos)
            self.pos += skip
            self._left = piece[skip:]
        left = size
        while left:
            piece = self._piece()
            take = piece[:left]
            out.write(take)
            left -= len(take)
            self.pos += len(take)
            self._left = piece[len(take) :]

    def close(self) -> None:
        self._raw.close()
