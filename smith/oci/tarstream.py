"""A streaming reader of layer tars: headers parsed from one buffer, file bodies handed out
as slices of it, nothing seeked.

Python's tarfile in stream mode costs more per member than the rest of layer application
(it copies its buffer on every header read); layers are read once, front to back, so a
small reader that understands exactly what image layers contain is both faster and
stricter: POSIX ustar with PAX extended headers (path, linkpath, size, uid, gid), GNU
long names, and GNU tar's own header variant. Sparse files, multi-volume archives and
unknown types are refused, never guessed at.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from zlib import adler32

from smith.limits import MAX_ID

BLOCK = 512
READ_SIZE = 1 << 20
MAX_META = 1 << 20  # a PAX header or GNU long name larger than this is not a real layer's

REGULAR = (b"0", b"\x00", b"7")
HARDLINK = b"1"
SYMLINK = b"2"
DIRECTORY = b"5"
SPECIAL = (b"3", b"4", b"6")  # character device, block device, FIFO


class TarFormatError(Exception):
    """The stream is not a tar this reader accepts; the message says where and why."""


@dataclass(frozen=True)
class Forensic:
    """What a reproducibility diff needs beyond the fields (opt-in: it costs per entry)."""

    position: int  # index among the entries (extended headers not counted)
    header: bytes  # the raw ustar header block
    pax: tuple[tuple[str, str], ...]  # this entry's PAX records, in the order written
    name_form: str  # which header carried the name: "ustar", "ustar prefix", "PAX", "GNU"


@dataclass
class Member:
    name: str
    type: bytes
    mode: int
    uid: int
    gid: int
    size: int
    linkname: str
    detail: Forensic | None = None

    def isreg(self) -> bool:
        return self.type in REGULAR

    def isdir(self) -> bool:
        return self.type == DIRECTORY

    def issym(self) -> bool:
        return self.type == SYMLINK

    def islnk(self) -> bool:
        return self.type == HARDLINK


def decode(raw: bytes) -> str:
    # Names are bytes on disk; surrogateescape keeps a non-UTF-8 name exact (as tarfile,
    # os.fsdecode and smith's tree do).
    return raw.decode("utf-8", "surrogateescape")


def number(field: bytes, what: str) -> int:
    """An octal field, or GNU's base-256 form (first byte 0x80) for large values."""
    first = field[0]  # every field is 8 or 12 bytes; an int, where field[:1] made a bytes
    if first == 0x80:
        return int.from_bytes(field[1:], "big")
    if first == 0xFF:
        raise TarFormatError(f"negative {what} field")
    text = field.split(b"\x00", 1)[0].strip(b" ")
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise TarFormatError(f"invalid {what} field {field!r}") from None


def check_checksum(header: bytes) -> None:
    stored = number(header[148:156], "checksum")
    unsigned = byte_sum(header) - sum(header[148:156]) + 8 * 0x20
    if stored != unsigned:
        signed = sum((b - 256 if b > 127 else b) for b in header[:148] + b" " * 8 + header[156:])
        if stored != signed:
            raise TarFormatError("header checksum mismatch (not a tar, or a corrupt one)")


def byte_sum(block: bytes) -> int:
    """The sum of a 512-byte block's bytes, by zlib's adler32 (C), not sum() (~10 ns a
    byte: two per entry were a tenth of reading a layer of small files). Started at 0,
    adler32's low half is the sum of the bytes modulo 65521, which 256 bytes (at most
    65280) never reach: each half of the block is summed exactly."""
    view = memoryview(block)
    return (adler32(view[:256], 0) & 0xFFFF) + (adler32(view[256:], 0) & 0xFFFF)


def parse_pax(data: bytes) -> list[tuple[str, bytes]]:
    """The records of a PAX extended header, in order (a key may repeat: the last wins)."""
    records: list[tuple[str, bytes]] = []
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos)
        if space < 0:
            raise TarFormatError("malformed PAX record")
        try:
            length = int(data[pos:space])
        except ValueError:
            raise TarFormatError("malformed PAX record length") from None
        record = data[space + 1 : pos + length]
        if length <= 0 or pos + length > len(data) or not record.endswith(b"\n"):
            raise TarFormatError("malformed PAX record")
        key, sep, value = record[:-1].partition(b"=")
        if not sep:
            raise TarFormatError("malformed PAX record")
        records.append((key.decode("utf-8", "replace"), value))
        pos += length
    return records


class TarStream:
    """Members of a tar read through `read(n)`; after each member, its body must be
    consumed with `body()` (or it is skipped when the next member is asked for).

    Leniency is decided here, once, as Go's archive/tar (and so containerd, docker and
    umoci) decides it. With `forensic`, each member carries its raw header, PAX records
    and name form, and global PAX records are kept in `globals`."""

    def __init__(self, read: Callable[[int], bytes], *, forensic: bool = False) -> None:
        self._read = read
        self._forensic = forensic
        self.globals: list[tuple[str, str]] = []
        self.end_blocks = 0  # zero blocks after the last entry (see trailer())
        self._buf = b""
        self._pos = 0
        self._dropped = 0  # bytes of the stream before _buf[0]
        self._body_left = 0  # bytes of the current member's body not yet consumed
        self._pad = 0  # padding after it

    def _fill(self, need: int) -> None:
        """Make at least `need` bytes available from _pos, or raise at the end."""
        if len(self._buf) - self._pos >= need:
            return
        rest = self._buf[self._pos :]
        parts = [rest] if rest else []
        have = len(rest)
        while have < need:
            chunk = self._read(max(READ_SIZE, need - have))
            if not chunk:
                raise TarFormatError("unexpected end of data")
            parts.append(chunk)
            have += len(chunk)
        self._dropped += self._pos
        # One piece is taken as it is: joining it to an empty rest copied every piece of
        # the layer once more (a body ending where a piece ends is the common case).
        self._buf = parts[0] if len(parts) == 1 else b"".join(parts)
        self._pos = 0

    @property
    def offset(self) -> int:
        """Where the stream is, in bytes of the tar: after a member is handed out, where
        its body starts (smith.oci.layerspan reads it again from there)."""
        return self._dropped + self._pos

    def skip_body(self) -> None:
        """Pass over the rest of the current member's body without handing it out."""
        self._skip_body()

    def _take(self, n: int) -> bytes:
        if len(self._buf) - self._pos < n:  # not a call per header when the bytes are there
            self._fill(n)
        data = self._buf[self._pos : self._pos + n]
        self._pos += n
        return data

    def body(self) -> Iterator[memoryview]:
        """The current member's content, in pieces (views valid until the next piece)."""
        while self._body_left:
            if self._pos >= len(self._buf):
                self._fill(1)
            n = min(self._body_left, len(self._buf) - self._pos)
            view = memoryview(self._buf)[self._pos : self._pos + n]
            self._pos += n
            self._body_left -= n
            yield view
        self._skip_padding()

    def _skip_padding(self) -> None:
        if self._pad:
            try:
                if len(self._buf) - self._pos < self._pad:
                    self._fill(self._pad)
                self._pos += self._pad
            except TarFormatError:
                # umoci before its 2024 fix (umoci #436) ends layers right after the last
                # entry's data, without its padding or the end-of-archive blocks; Go's
                # archive/tar (and so containerd and docker) read that as the end. What
                # was left is padding only: the next header read finds the end.
                self._dropped += len(self._buf)
                self._buf, self._pos = b"", 0
            self._pad = 0

    def _skip_body(self) -> None:
        while self._body_left:  # body() without a view per piece
            if self._pos >= len(self._buf):
                self._fill(1)
            n = min(self._body_left, len(self._buf) - self._pos)
            self._pos += n
            self._body_left -= n
        self._skip_padding()

    def _meta(self, size: int, what: str) -> bytes:
        if size > MAX_META:
            raise TarFormatError(f"{what} of {size} bytes")
        data = self._take(size)
        self._take(-size % BLOCK)
        return data

    def trailer(self) -> None:
        """Read what follows the end-of-archive block, counting it into end_blocks."""
        rest = len(self._buf) - self._pos
        self._buf, self._pos = b"", 0
        while chunk := self._read(READ_SIZE):
            rest += len(chunk)
        if self.end_blocks:
            self.end_blocks += rest // BLOCK

    def __iter__(self) -> Iterator[Member]:
        pax: dict[str, bytes] = {}
        records: list[tuple[str, bytes]] = []
        long_name: bytes | None = None
        long_link: bytes | None = None
        position = 0
        while True:
            self._skip_body()
            try:
                if len(self._buf) - self._pos < BLOCK:
                    self._fill(BLOCK)
            except TarFormatError:
                if len(self._buf) - self._pos == 0:
                    return  # end of data without the end-of-archive blocks: accepted
                raise
            header = self._take(BLOCK)
            if header == b"\x00" * BLOCK:
                self.end_blocks = 1
                return  # end of archive (the rest is padding, drained by the caller)
            check_checksum(header)
            kind = header[156:157]
            size = number(header[124:136], "size")
            if kind in (b"x", b"g", b"L", b"K"):
                data = self._meta(size, "extended header")
                if kind == b"x":
                    parsed = parse_pax(data)
                    pax.update(parsed)
                    if self._forensic:
                        records += parsed
                elif kind == b"g":
                    if self._forensic:
                        self.globals += [(k, decode(v)) for k, v in parse_pax(data)]
                elif kind == b"L":
                    long_name = data.split(b"\x00", 1)[0]
                else:
                    long_link = data.split(b"\x00", 1)[0]
                continue  # a global PAX header ('g') carries nothing a layer needs
            name = header[0:100].split(b"\x00", 1)[0]
            form = "ustar"
            if header[257:263] == b"ustar\x00":  # POSIX: a prefix field extends the name
                prefix = header[345:500].split(b"\x00", 1)[0]
                if prefix:
                    name, form = prefix + b"/" + name, "ustar prefix"
            link = header[157:257].split(b"\x00", 1)[0]
            uid = number(header[108:116], "uid")
            gid = number(header[116:124], "gid")
            if long_name is not None:
                name, form = long_name, "GNU"
            if long_link is not None:
                link = long_link
            if "path" in pax:
                name, form = pax["path"], "PAX"
            if "linkpath" in pax:
                link = pax["linkpath"]
            shown = decode(name)
            if pax:  # most entries have none: the fast path skips these lookups
                if b"\0" in name or b"\0" in link:  # only a PAX record can carry a NUL
                    raise TarFormatError(f"entry {shown[:200]!r} has a NUL in its name or link")
                size = pax_number(pax, "size", shown, size)
                uid = pax_number(pax, "uid", shown, uid)
                gid = pax_number(pax, "gid", shown, gid)
                if any(key.startswith("GNU.sparse.") for key in pax):
                    # PAX-format sparse files (GNU 0.0, 0.1, 1.0) are type '0' with a map in
                    # the records or the body: read as plain, their content would be the map.
                    raise TarFormatError(f"entry {shown!r} is a sparse file (GNU.sparse)")
                pax = {}
            detail = None
            if self._forensic:
                pairs = tuple((k, decode(v)) for k, v in records)
                detail = Forensic(position, header, pairs, form)
                records = []
            long_name = long_link = None
            if kind not in (*REGULAR, HARDLINK, SYMLINK, DIRECTORY, *SPECIAL):
                raise TarFormatError(f"entry {shown!r} has unsupported type {kind!r}")
            if size < 0:
                raise TarFormatError(f"entry {shown!r} has a negative size")
            if uid > MAX_ID or gid > MAX_ID:  # a base-256 field or a PAX record
                raise TarFormatError(
                    f"entry {shown!r} has the owner {uid}:{gid}: out of range (0 to {MAX_ID})"
                )
            # As Go's archive/tar (what runtimes read layers with): links, directories and
            # special files are header-only, whatever their size field says.
            if kind not in REGULAR:
                size = 0
            self._body_left, self._pad = size, -size % BLOCK
            mode = number(header[100:108], "mode")
            position += 1
            yield Member(shown, kind, mode, uid, gid, size, decode(link), detail)


def pax_number(pax: dict[str, bytes], key: str, name: str, default: int = 0) -> int:
    """A PAX record's decimal number. Only ASCII digits: int() would also take a sign, a
    `_`, spaces and any Unicode digit ("-5", "1_0", "١٢"), and uid -5 is no owner."""
    if key not in pax:
        return default
    value = pax[key]
    # bytes.isdigit() is ASCII-only; the length bound keeps int() from a 100,000-digit parse.
    if not value.isdigit() or len(value) > 20:
        raise TarFormatError(f"invalid PAX {key} {decode(value)[:40]!r} for {name!r}")
    return int(value)
