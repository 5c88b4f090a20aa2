"""The RPM file format below the payload: lead, signature header and main header.

Parsed by hand (it is a few dozen lines) rather than through rpmfile so that every byte
offset is known: the header digests and OpenPGP signatures cover exact byte ranges, and
header strings that are not UTF-8 (old iso8859 packages) must survive as they are.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import BinaryIO

from smith.errors import PackageError
from smith.limits import RPM_HEADER_BYTES, RPM_HEADER_ITEMS, RPM_HEADER_TAGS

LEAD_MAGIC = b"\xed\xab\xee\xdb"
HEADER_MAGIC = b"\x8e\xad\xe8\x01"
LEAD_SIZE = 96

# Header entry types (rpmtag.h).
T_NULL, T_CHAR, T_INT8, T_INT16, T_INT32, T_INT64 = 0, 1, 2, 3, 4, 5
T_STRING, T_BIN, T_STRING_ARRAY, T_I18NSTRING = 6, 7, 8, 9

TagValue = str | bytes | tuple[int, ...] | tuple[str, ...]


@dataclass(frozen=True)
class Header:
    """One header structure: its tags and the exact bytes it was read from."""

    tags: Mapping[int, TagValue]
    raw: bytes  # magic + index + store: what header digests and signatures cover

    def string(self, tag: int, default: str = "") -> str:
        value = self.tags.get(tag)
        if isinstance(value, str):
            return value
        if isinstance(value, tuple) and value and isinstance(value[0], str):
            return value[0]
        return default

    def strings(self, tag: int) -> tuple[str, ...]:
        value = self.tags.get(tag)
        if isinstance(value, str):
            return (value,)
        if isinstance(value, tuple) and all(isinstance(v, str) for v in value):
            return value  # type: ignore[return-value]
        return ()

    def ints(self, tag: int) -> tuple[int, ...]:
        value = self.tags.get(tag)
        if isinstance(value, tuple) and all(isinstance(v, int) for v in value):
            return value  # type: ignore[return-value]
        return ()

    def integer(self, tag: int, default: int | None = None) -> int | None:
        values = self.ints(tag)
        return values[0] if values else default

    def binary(self, tag: int) -> bytes | None:
        value = self.tags.get(tag)
        return value if isinstance(value, bytes) else None


def _decode(raw: bytes) -> str:
    # rpm never promised UTF-8; surrogateescape keeps every byte of an iso8859 string.
    return raw.decode("utf-8", "surrogateescape")


def _read_exact(f: BinaryIO, n: int, what: str, name: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise PackageError(f"{name}: truncated RPM ({what})")
    return data


def read_header(f: BinaryIO, name: str, *, pad: bool) -> Header:
    """Read one header structure at the current offset (`pad`: align the end to 8 bytes)."""
    intro = _read_exact(f, 16, "header intro", name)
    if intro[:4] != HEADER_MAGIC:
        raise PackageError(f"{name}: bad RPM header magic {intro[:4].hex()}")
    nindex, hsize = struct.unpack(">II", intro[8:16])
    # Larger headers are not packages but attacks on memory (rpm's own bounds, raisable).
    if nindex > RPM_HEADER_TAGS.count():
        raise RPM_HEADER_TAGS.error(f"{name}: RPM header of {nindex} tags")
    if nindex * 16 + hsize > RPM_HEADER_BYTES.count():
        raise RPM_HEADER_BYTES.error(f"{name}: RPM header of {nindex * 16 + hsize} bytes")
    index = _read_exact(f, nindex * 16, "header index", name)
    store = _read_exact(f, hsize, "header store", name)
    if pad and hsize % 8:
        _read_exact(f, 8 - hsize % 8, "header padding", name)
    tags: dict[int, TagValue] = {}
    used = items = 0
    most_items = RPM_HEADER_ITEMS.count()
    for i in range(nindex):
        tag, typ, off, count = struct.unpack_from(">IIiI", index, i * 16)
        # Checked before parsing: a string array of 10^9 empty strings is 8 GB of pointers.
        items += count if typ != T_BIN else 1
        if items > most_items:
            raise RPM_HEADER_ITEMS.error(f"{name}: RPM header values (tag {tag})")
        if off < 0 or off > hsize:
            # Region tags (61-63) point at trailers inside the store; anything else is bad.
            raise PackageError(f"{name}: RPM header tag {tag} has offset {off} out of range")
        tags[tag], length = _parse_value(store, typ, off, count, name, tag)
        # Tags share no bytes in a real header (rpm checks the same): many tags over one
        # long string array would cost their count times its length to parse.
        used += length
        if used > hsize:
            raise PackageError(f"{name}: RPM header tags overlap (tag {tag} and earlier ones)")
    return Header(tags, intro[:16] + index + store)


INT_SIZES = {T_INT16: ("H", 2), T_INT32: ("I", 4), T_INT64: ("Q", 8)}


def _parse_value(
    store: bytes, typ: int, off: int, count: int, name: str, tag: int
) -> tuple[TagValue, int]:
    """A tag's value and how many bytes of the store it takes."""
    try:
        if typ in (T_CHAR, T_INT8, T_BIN):
            if off + count > len(store):
                raise struct.error("short")
            data = store[off : off + count]
            return (data if typ == T_BIN else tuple(data)), count
        if typ in INT_SIZES:
            code, size = INT_SIZES[typ]
            if off + size * count > len(store):
                raise struct.error("short")
            return struct.unpack_from(f">{count}{code}", store, off), size * count
        if typ == T_STRING:
            end = store.index(b"\0", off)
            return _decode(store[off:end]), end + 1 - off
        if typ in (T_STRING_ARRAY, T_I18NSTRING):
            out: list[str] = []
            pos = off
            for _ in range(count):
                end = store.index(b"\0", pos)
                out.append(_decode(store[pos:end]))
                pos = end + 1
            return tuple(out), pos - off
        if typ == T_NULL:
            return (), 0
    except (struct.error, ValueError):
        raise PackageError(f"{name}: RPM header tag {tag} runs past the header") from None
    raise PackageError(f"{name}: RPM header tag {tag} has unknown type {typ}")


@dataclass(frozen=True)
class RawRpm:
    """Lead, both headers and where the payload starts."""

    signature: Header
    header: Header
    payload_offset: int
    source: bool


def read_raw(f: BinaryIO, name: str) -> RawRpm:
    lead = _read_exact(f, LEAD_SIZE, "lead", name)
    if lead[:4] != LEAD_MAGIC:
        raise PackageError(f"{name}: not an RPM file (lead magic {lead[:4].hex()})")
    source = struct.unpack_from(">H", lead, 6)[0] == 1
    signature = read_header(f, name, pad=True)
    header = read_header(f, name, pad=False)
    return RawRpm(signature, header, f.tell(), source)
