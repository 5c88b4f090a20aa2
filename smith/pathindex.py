"""PathIndex: path -> row number, for EntryTable's columns, without an object per row.

A dict from path to row holds an int object per row (32 bytes) and 16 more bytes of entry
and 4-16 of index: a third of what a million-entry layer costs beside its path strings.
Here the rows are the positions of a list of the paths, found by their hash in one array
of row numbers (open addressing, linear probing, at most half full): 8 bytes of list and
8 to 16 of array per path. A lookup probes in Python, but for a large table it costs what
a dict's does (both wait for the path's memory; measured, issue 21).
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator

EMPTY = -1  # a slot never used: a probe for a path ends here
GONE = -2  # a slot whose path was removed: a probe goes on past it


class PathIndex:
    """Distinct paths, each with a row number: 0, 1, ... in the order they were added,
    and the rows of removed paths given again to the next ones."""

    def __init__(self) -> None:
        self.paths: list[str | None] = []  # row -> its path; None: a free row
        self._free: list[int] = []
        self._slots = array("i", [EMPTY]) * 8  # row numbers, where hash(path) leads
        self._used = 0  # slots not EMPTY
        self._live = 0  # paths

    def __len__(self) -> int:
        return self._live

    def __iter__(self) -> Iterator[str]:
        """The paths, in row order."""
        if not self._free:
            return iter(self.paths)  # type: ignore[arg-type]  # no free row: no None
        return (path for path in self.paths if path is not None)

    def row(self, path: object) -> int:
        """The row of `path`; -1 when it has none."""
        slots, paths = self._slots, self.paths
        mask = len(slots) - 1
        i = hash(path) & mask
        while (row := slots[i]) != EMPTY:
            if row >= 0 and paths[row] == path:
                return row
            i = (i + 1) & mask
        return -1

    def add(self, path: str) -> int:
        """The new row of `path`, which has none."""
        if (self._used + 1) * 2 > len(self._slots):
            self._rehash()
        if self._free:
            row = self._free.pop()
            self.paths[row] = path
        else:
            row = len(self.paths)
            self.paths.append(path)
        slots = self._slots
        mask = len(slots) - 1
        i = hash(path) & mask
        while (taken := slots[i]) >= 0:  # the path is absent: the first EMPTY or GONE is its
            i = (i + 1) & mask
        if taken == EMPTY:
            self._used += 1
        slots[i] = row
        self._live += 1
        return row

    def remove(self, path: str) -> int:
        """The row `path` had (raises KeyError when it has none)."""
        slots, paths = self._slots, self.paths
        mask = len(slots) - 1
        i = hash(path) & mask
        while (row := slots[i]) != EMPTY:
            if row >= 0 and paths[row] == path:
                slots[i] = GONE
                paths[row] = None
                self._free.append(row)
                self._live -= 1
                return row
            i = (i + 1) & mask
        raise KeyError(path)

    def _rehash(self) -> None:
        """Slots for twice the paths there are (removed ones' slots dropped): a quarter to
        a half full after, so that a probe passes one or two slots."""
        size = 8
        while size < 4 * (self._live + 1):
            size *= 2
        slots = array("i", [EMPTY]) * size
        mask = size - 1
        for row, path in enumerate(self.paths):
            if path is not None:
                i = hash(path) & mask
                while slots[i] != EMPTY:
                    i = (i + 1) & mask
                slots[i] = row
        self._slots, self._used = slots, self._live
