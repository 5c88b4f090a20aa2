"""Read layer blobs header by header, keeping every detail a reproducibility diff needs.

Python's tarfile hides exactly what matters here: it drops a directory's trailing slash,
merges PAX records into the fields, and does not say which header form carried a name. This
reader keeps the raw header bytes, the PAX records and the name as written, and hashes each
entry's content, so two layers can be compared field by field. It streams: memory does not
grow with the layer.
"""

from __future__ import annotations

import gzip
import hashlib
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, cast

import zstandard

from smith.errors import ImageFormatError

BLOCK = 512
READ_SIZE = 1 << 20
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

# Byte ranges of the ustar header fields, to name the field where two headers differ.
HEADER_FIELDS = (
    ("name", 0, 100),
    ("mode", 100, 108),
    ("uid", 108, 116),
    ("gid", 116, 124),
    ("size", 124, 136),
    ("mtime", 136, 148),
    ("checksum", 148, 156),
    ("type", 156, 157),
    ("linkname", 157, 257),
    ("magic/version", 257, 265),
    ("uname", 265, 297),
    ("gname", 297, 329),
    ("devmajor", 329, 337),
    ("devminor", 337, 345),
    ("prefix", 345, 500),
    ("padding", 500, 512),
)

TYPE_NAMES = {
    "0": "file",
    "\x00": "file",
    "1": "hard link",
    "2": "symlink",
    "3": "char device",
    "4": "block device",
    "5": "directory",
    "6": "fifo",
    "7": "contiguous file",
}


@dataclass(frozen=True)
class TarEntry:
    """One member of a tar stream as written, with its position."""

    position: int
    name: str  # as written (PAX path, GNU long name, or prefix/name), surrogateescaped
    name_form: str  # which header carried the name: "ustar", "ustar prefix", "PAX", "GNU"
    type: str
    mode: int
    uid: int
    gid: int
    uname: str
    gname: str
    mtime: str  # the PAX value when there is one (it may be fractional), else the integer
    linkname: str
    size: int
    devices: tuple[int, int]
    magic: bytes
    pax: tuple[tuple[str, str], ...]  # this entry's PAX records, in the order written
    content: str  # sha256 of the content; "" for entries without content
    header: bytes  # the raw ustar header block

    @property
    def key(self) -> str:
        """The path this entry puts in the root filesystem, whatever form the name has."""
        return normal_name(self.name)


def normal_name(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    name = name.lstrip("/")
    return name.rstrip("/") or "."


@dataclass(frozen=True)
class GzipMember:
    """The header of one gzip member (RFC 1952), as written."""

    flags: int
    mtime: int
    xfl: int
    os: int
    name: str
    comment: str
    extra: bytes

    def fields(self) -> dict[str, str]:
        # The fields that vary in practice first; FLG last (it only says which are present).
        return {
            "FNAME": repr(self.name) if self.flags & 0x08 else "(none)",
            "MTIME": str(self.mtime),
            "OS": str(self.os),
            "XFL": str(self.xfl),
            "FCOMMENT": repr(self.comment) if self.flags & 0x10 else "(none)",
            "FEXTRA": self.extra.hex() if self.flags & 0x04 else "(none)",
            "FLG": f"0x{self.flags:02x}",
        }


def compression_of(path: str) -> str:
    """ "gzip", "zstd" or "none", by the blob's first bytes (media types can lie)."""
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic.startswith(GZIP_MAGIC):
        return "gzip"
    if magic == ZSTD_MAGIC:
        return "zstd"
    return "none"


def open_uncompressed(path: str) -> IO[bytes]:
    kind = compression_of(path)
    raw = open(path, "rb")  # noqa: SIM115 - handed to the decompressor, closed with it
    if kind == "gzip":
        return cast(IO[bytes], gzip.GzipFile(fileobj=raw, mode="rb"))  # reads every member
    if kind == "zstd":
        return zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
    return raw


def gzip_members(path: str) -> list[GzipMember]:
    """The header of every gzip member of a blob, found by inflating member by member."""
    import zlib

    members: list[GzipMember] = []
    with open(path, "rb") as f:
        data = f.read()
    pos = 0
    while pos < len(data) and data[pos : pos + 2] == GZIP_MAGIC:
        member, body = parse_gzip_header(data, pos, path)
        members.append(member)
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        view = memoryview(data)[body:]
        # Inflate in slices so a single huge member never sits in memory uncompressed.
        start = 0
        while not inflater.eof:
            if start >= len(view):
                raise ImageFormatError(f"{path}: gzip member {len(members)} is truncated")
            inflater.decompress(view[start : start + (1 << 20)])
            start += 1 << 20
        consumed = min(start, len(view)) - len(inflater.unused_data)
        pos = body + consumed + 8  # CRC32 and ISIZE
    return members


def parse_gzip_header(data: bytes, pos: int, what: str) -> tuple[GzipMember, int]:
    try:
        _magic, method, flags, mtime, xfl, os_byte = struct.unpack_from("<HBBIBB", data, pos)
    except struct.error:
        raise ImageFormatError(f"{what}: truncated gzip header at byte {pos}") from None
    if method != 8:
        raise ImageFormatError(f"{what}: gzip member at byte {pos} is not deflate")
    p = pos + 10
    extra = b""
    if flags & 0x04:
        (xlen,) = struct.unpack_from("<H", data, p)
        extra = data[p + 2 : p + 2 + xlen]
        p += 2 + xlen
    name = comment = ""
    if flags & 0x08:
        end = data.index(b"\x00", p)
        name = data[p:end].decode("latin-1")
        p = end + 1
    if flags & 0x10:
        end = data.index(b"\x00", p)
        comment = data[p:end].decode("latin-1")
        p = end + 1
    if flags & 0x02:
        p += 2
    return GzipMember(flags, mtime, xfl, os_byte, name, comment, extra), p


def parse_number(field: bytes) -> int:
    if field[:1] and field[0] & 0x80:  # GNU base-256 for values octal cannot hold
        return int.from_bytes(field[1:], "big")
    text = field.split(b"\x00", 1)[0].strip(b" ")
    return int(text, 8) if text else 0


def text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def parse_text(field: bytes) -> str:
    return text(field.split(b"\x00", 1)[0])


def parse_pax(data: bytes, what: str) -> list[tuple[str, str]]:
    records = []
    pos = 0
    while pos < len(data):
        if not data[pos:].strip(b"\x00"):
            break
        space = data.index(b" ", pos)
        length = int(data[pos:space])
        if length <= 0:
            raise ImageFormatError(f"{what}: malformed PAX record at byte {pos}")
        key, _, value = data[space + 1 : pos + length - 1].partition(b"=")
        records.append((text(key), text(value)))
        pos += length
    return records


@dataclass
class TarSummary:
    """What is known about the whole stream once it is read."""

    sha256: str = ""
    size: int = 0
    end_blocks: int = 0  # zero blocks after the last entry (2 is the minimum)
    globals: tuple[tuple[str, str], ...] = ()


def read_exact(f: IO[bytes], n: int, hasher: hashlib._Hash, what: str) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = f.read(n - len(out))
        if not chunk:
            raise ImageFormatError(f"{what}: tar stream ends inside a member")
        out += chunk
    hasher.update(out)
    return bytes(out)


def scan_tar(path: str, summary: TarSummary | None = None) -> Iterator[TarEntry]:
    """The entries of a (possibly compressed) tar blob, in order. `summary` is filled in
    once the stream is exhausted."""
    hasher = hashlib.sha256()
    size = 0
    position = 0
    pax: list[tuple[str, str]] = []
    global_pax: list[tuple[str, str]] = []
    long_name: str | None = None
    long_link: str | None = None
    with open_uncompressed(path) as f:
        while True:
            try:
                block = f.read(BLOCK)
            except (OSError, EOFError, zstandard.ZstdError) as err:
                raise ImageFormatError(f"{path}: cannot decompress the layer ({err})") from None
            while 0 < len(block) < BLOCK:
                more = f.read(BLOCK - len(block))
                if not more:
                    break
                block += more
            if not block:
                break
            hasher.update(block)
            size += len(block)
            if block == b"\x00" * BLOCK:
                # The end-of-archive marker and any record padding after it.
                zeros = 1
                while chunk := f.read(READ_SIZE):
                    hasher.update(chunk)
                    size += len(chunk)
                    zeros += len(chunk) // BLOCK
                if summary is not None:
                    summary.end_blocks = zeros
                break
            if len(block) < BLOCK:
                raise ImageFormatError(f"{path}: tar stream ends inside a header")
            typeflag = block[156:157].decode("latin-1")
            member_size = parse_number(block[124:136])
            for key, value in pax:
                if key == "size":
                    member_size = int(value)
            if typeflag in ("x", "g", "L", "K"):
                data = read_exact(f, member_size + (-member_size % BLOCK), hasher, path)
                size += len(data)
                data = data[:member_size]
                if typeflag == "x":
                    pax = parse_pax(data, path)
                elif typeflag == "g":
                    global_pax += parse_pax(data, path)
                elif typeflag == "L":
                    long_name = data.rstrip(b"\x00").decode("utf-8", "surrogateescape")
                else:
                    long_link = data.rstrip(b"\x00").decode("utf-8", "surrogateescape")
                continue
            records = dict(global_pax) | dict(pax)
            prefix = parse_text(block[345:500]) if block[257:263] == b"ustar\x00" else ""
            short = parse_text(block[0:100])
            if "path" in records:
                name, form = records["path"], "PAX"
            elif long_name is not None:
                name, form = long_name, "GNU"
            elif prefix:
                name, form = f"{prefix}/{short}", "ustar prefix"
            else:
                name, form = short, "ustar"
            link = records.get(
                "linkpath", long_link if long_link is not None else parse_text(block[157:257])
            )
            content = ""
            if typeflag in ("0", "\x00", "7"):
                digest = hashlib.sha256()
                remaining = member_size + (-member_size % BLOCK)
                left = member_size
                while remaining:
                    chunk = f.read(min(READ_SIZE, remaining))
                    if not chunk:
                        raise ImageFormatError(f"{path}: tar stream ends inside {name!r}")
                    hasher.update(chunk)
                    size += len(chunk)
                    remaining -= len(chunk)
                    digest.update(chunk[:left])
                    left = max(0, left - len(chunk))
                content = digest.hexdigest()
            yield TarEntry(
                position=position,
                name=name,
                name_form=form,
                type=TYPE_NAMES.get(typeflag, repr(typeflag)),
                mode=parse_number(block[100:108]),
                uid=int(records["uid"]) if "uid" in records else parse_number(block[108:116]),
                gid=int(records["gid"]) if "gid" in records else parse_number(block[116:124]),
                uname=records.get("uname", parse_text(block[265:297])),
                gname=records.get("gname", parse_text(block[297:329])),
                mtime=records.get("mtime", str(parse_number(block[136:148]))),
                linkname=link,
                size=member_size,
                devices=(parse_number(block[329:337]), parse_number(block[337:345])),
                magic=block[257:265],
                pax=tuple(pax),
                content=content,
                header=block,
            )
            position += 1
            pax, long_name, long_link = [], None, None
    if summary is not None:
        summary.sha256 = "sha256:" + hasher.hexdigest()
        summary.size = size
        summary.globals = tuple(global_pax)


def header_field_at(offset: int) -> str:
    for name, start, end in HEADER_FIELDS:
        if start <= offset < end:
            return name
    return "padding"
