"""A content store: file bytes kept once, named by their sha256, written atomically.

Package payloads are extracted here rather than to paths the package names, so that no
name in a package can make smith write outside the store, and identical files shared by
packages (licences, links) are stored once. A file appears under its final name only
after all of its bytes were written and hashed (write to a temporary name, then rename).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from smith.diskspace import CACHE, FULL, check_space, disk_full
from smith.leftovers import sweep, tagged
from smith.tree import HostFile

Sink = Callable[[bytes | bytearray | memoryview], object]


class ContentStore:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self._tmp = self.root / "tmp"
        self._tmp.mkdir(parents=True, exist_ok=True)
        sweep(self._tmp)  # what a killed run left
        self._made: set[str] = set()

    def check_room(self, need: int, what: str) -> None:
        """Refuse `what` (`need` bytes to store) before a byte of it is written."""
        check_space(self._tmp, need, what, hint=CACHE)

    def path_for(self, digest: str) -> Path:
        return self.root / "sha256" / digest[:2] / digest

    def put_bytes(self, data: bytes) -> HostFile:
        return self.put_stream(lambda sink: sink(data))

    def put_stream(self, produce: Callable[[Sink], object]) -> HostFile:
        """Store the bytes `produce` hands to its sink; return where they now live."""
        h = hashlib.sha256()
        fd, tmp = tempfile.mkstemp(dir=self._tmp, prefix=tagged(""))
        try:
            with os.fdopen(fd, "wb", buffering=1 << 20) as out:

                def sink(chunk: bytes | bytearray | memoryview) -> None:
                    h.update(chunk)
                    out.write(chunk)

                produce(sink)
            final = self.path_for(h.hexdigest())
            parent = str(final.parent)
            if parent not in self._made:
                final.parent.mkdir(parents=True, exist_ok=True)
                self._made.add(parent)
            # Read-only: a store file is shared by every tree that names it.
            os.chmod(tmp, 0o444)
            # Replaced even when the name exists: an entry damaged since it was written (a
            # crash before its data reached the disk) is never trusted by its name, and
            # the bytes just hashed are at hand. Atomic for readers of the old one.
            os.replace(tmp, final)
        except OSError as err:
            if os.path.exists(tmp):
                os.unlink(tmp)
            if err.errno in FULL:  # which disk is full, not only that
                raise disk_full(err, self._tmp, hint=CACHE) from None
            raise
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return HostFile(str(final), sha256=h.hexdigest())
