"""EntryTable: a FileTree's path -> Entry map, stored as columns.

An image layer can hold a million entries; one Python object per field per entry (an
Entry, its HostSlice, their ints) cost over a kilobyte each. Here an entry is its path
string, its row in a PathIndex (no object of its own: 16-24 bytes) and ~22 bytes of
fixed-width columns; the Entry is made when asked for. Repeated values (owners, origins,
pack files) are interned. What does not fit the columns (a uid beyond 16 bits of
distinct owners, a content that is no pack slice, a link target) is kept as an object
beside the row: always exact, only less compact.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator, MutableMapping
from typing import Generic, TypeVar

from smith.pathindex import PathIndex
from smith.tree import Content, Entry, HostSlice, Kind, LayerSpan, SpanSource

T = TypeVar("T")
KINDS = (Kind.DIR, Kind.FILE, Kind.SYMLINK, Kind.HARDLINK)
KIND_CODE = {kind: code for code, kind in enumerate(KINDS)}
VERBATIM = 255  # the row's Entry is kept whole in `_extra`
# What `_extra` holds for a row besides the columns:
NOTHING, SLICE, OBJECT = 0, 1, 2  # no content; content = a slice of pack `_ref`; an object


class Interned(Generic[T]):
    """Distinct values, each numbered once (owners, origins, pack paths)."""

    def __init__(self) -> None:
        self.values: list[T] = []
        self.numbers: dict[T, int] = {}

    def number(self, value: T) -> int:
        found = self.numbers.get(value)
        if found is None:
            found = self.numbers[value] = len(self.values)
            self.values.append(value)
        return found


class EntryTable(MutableMapping[str, Entry]):
    """path -> Entry; iteration in row order (FileTree sorts)."""

    def __init__(self) -> None:
        self._rows = PathIndex()  # its rows number the columns' items
        self._kind = bytearray()
        self._how = bytearray()  # NOTHING, SLICE or OBJECT
        self._mode = array("H")
        self._owner = array("H")  # into _owners: (uid, gid)
        self._origin = array("H")  # into _origins
        # For a SLICE: the pack (low 16 bits) and the offset's bits above 32 (high 16 bits).
        self._ref = array("I")
        # 32 bits each: a file of 4 GiB or more is kept whole (VERBATIM); a slice offset has
        # 16 more bits in _ref. 8 bytes less per entry than 64-bit columns.
        self._size = array("I")
        self._offset = array("I")  # in the pack, for a SLICE: its low 32 bits
        self._mark = array("H")  # the owner's note on a row (see mark); 0 when made
        self._extra: dict[int, object] = {}  # row -> link target, content or whole Entry
        self._owners: Interned[tuple[int, int]] = Interned()
        self._origins: Interned[str] = Interned()
        self._packs: Interned[str | SpanSource] = Interned()

    # -- the mapping ------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[str]:
        return iter(self._rows)

    def __contains__(self, path: object) -> bool:
        return self._rows.row(path) >= 0

    def __getitem__(self, path: str) -> Entry:
        row = self._rows.row(path)
        if row < 0:
            raise KeyError(path)
        return self._entry(path, row)

    def get(self, path: str, default: Entry | None = None) -> Entry | None:  # type: ignore[override]
        row = self._rows.row(path)
        return default if row < 0 else self._entry(path, row)

    def __setitem__(self, path: str, entry: Entry) -> None:
        self._fill(self._row_of(path), entry)

    def put(self, path: str, entry: Entry, mark: int) -> None:
        """self[path] = entry, with `mark` noted on it (see mark): one lookup, not two."""
        row = self._row_of(path)
        self._fill(row, entry)
        self._mark[row] = mark

    def __delitem__(self, path: str) -> None:
        self._extra.pop(self._rows.remove(path), None)

    # -- cheap looks at one row (no Entry made) ---------------------------------------------

    def kind(self, path: str) -> Kind | None:
        row = self._rows.row(path)
        if row < 0:
            return None
        code = self._kind[row]
        if code == VERBATIM:
            entry = self._extra[row]
            assert isinstance(entry, Entry)
            return entry.kind
        return KINDS[code]

    def mark(self, path: str, value: int) -> None:
        """Note a small number (< 65536) on `path`: 0 for a new path, kept when its entry
        is replaced. Not part of the Entry: the applier notes which layer added a path."""
        row = self._rows.row(path)
        if row < 0:
            raise KeyError(path)
        self._mark[row] = value

    def marked(self, path: str) -> int:
        row = self._rows.row(path)
        return 0 if row < 0 else self._mark[row]

    # -- rows -------------------------------------------------------------------------------

    def _row_of(self, path: str) -> int:
        """The row of `path`, made (its mark 0) if it has none; emptied of its extra."""
        row = self._rows.row(path)
        if row < 0:
            row = self._rows.add(path)
            if row == len(self._kind):
                self._new_row()
            self._mark[row] = 0
        else:
            self._extra.pop(row, None)
        return row

    def _new_row(self) -> None:
        """The columns' items of the next row, the PathIndex's rows having grown by one."""
        self._kind.append(0)
        self._how.append(NOTHING)
        for column in (self._mode, self._owner, self._origin, self._ref, self._size):
            column.append(0)
        self._offset.append(0)
        self._mark.append(0)

    def _fill(self, row: int, entry: Entry) -> None:
        content = entry.content
        owner = self._owners.number((entry.uid, entry.gid))
        origin = self._origins.number(entry.origin)
        # The compact form holds: a 16-bit mode, at most 65536 owners and origins, a link
        # target only for links, content only for files.
        fits = (
            0 <= entry.mode < 1 << 16
            and owner < 1 << 16
            and origin < 1 << 16
            and 0 <= entry.size < 1 << 32
            and (not entry.target or entry.kind in (Kind.SYMLINK, Kind.HARDLINK))
            and (content is None or (entry.kind is Kind.FILE and not entry.target))
        )
        if not fits:
            self._kind[row] = VERBATIM
            self._extra[row] = entry
            return
        self._kind[row] = KIND_CODE[entry.kind]
        self._mode[row] = entry.mode
        self._owner[row] = owner
        self._origin[row] = origin
        self._size[row] = entry.size
        if entry.target:
            self._how[row] = OBJECT
            self._extra[row] = entry.target
        elif (
            isinstance(content, HostSlice | LayerSpan)
            and content.size == entry.size
            and 0 <= content.offset < 1 << 48
            and (pack := self._pack_number(content)) < 1 << 16
        ):
            self._how[row] = SLICE
            self._ref[row] = pack | (content.offset >> 32) << 16
            self._offset[row] = content.offset & 0xFFFFFFFF
        elif content is not None:
            self._how[row] = OBJECT
            self._extra[row] = content
        else:
            self._how[row] = NOTHING

    def _pack_number(self, content: HostSlice | LayerSpan) -> int:
        return self._packs.number(
            content.path if isinstance(content, HostSlice) else content.source
        )

    def _entry(self, path: str, row: int) -> Entry:
        code = self._kind[row]
        if code == VERBATIM:
            entry = self._extra[row]
            assert isinstance(entry, Entry)
            return entry
        kind = KINDS[code]
        uid, gid = self._owners.values[self._owner[row]]
        origin = self._origins.values[self._origin[row]]
        size = self._size[row]
        how = self._how[row]
        target = ""
        content: Content | None = None
        if how == SLICE:
            ref = self._ref[row]
            pack, offset = self._packs.values[ref & 0xFFFF], (ref >> 16) << 32 | self._offset[row]
            if isinstance(pack, str):
                content = HostSlice(pack, offset, size)
            else:  # a layer's span: the same columns, its source interned as a pack is
                content = LayerSpan(pack, offset, size)
        elif how == OBJECT:
            extra = self._extra[row]
            if isinstance(extra, str):
                target = extra
            else:
                content = extra  # type: ignore[assignment]
        return Entry(path, kind, self._mode[row], uid, gid, size, target, content, origin)
