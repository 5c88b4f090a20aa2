"""Layer entries with every detail a reproducibility diff needs, from the one layer-reading
stack (smith.oci.layerread and the forensic mode of smith.oci.tarstream).

Python's tarfile hides exactly what matters here: it drops a directory's trailing slash,
merges PAX records into the fields, and does not say which header form carried a name.
These entries keep the raw header bytes, the PAX records and the name as written, and the
sha256 of each entry's content, so two layers can be compared field by field. The stream
is read once; what is accepted and refused is what minimize accepts and refuses.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from smith.errors import ImageFormatError
from smith.oci.layerread import GZIP_MAGIC, open_blob
from smith.oci.tarstream import Member, TarStream, decode, number
from smith.oci.unpack import layer_errors

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


def parse_text(field: bytes) -> str:
    return decode(field.split(b"\x00", 1)[0])


@dataclass
class TarSummary:
    """What is known about the whole stream once it is read."""

    sha256: str = ""
    size: int = 0
    end_blocks: int = 0  # zero blocks after the last entry (2 is the minimum)
    globals: tuple[tuple[str, str], ...] = ()


def scan_tar(
    path: str,
    summary: TarSummary | None = None,
    *,
    layer: str = "",
    check: Callable[[Member], None] | None = None,
    entries: bool = True,
    expect: tuple[str, int, str] | None = None,
) -> Iterator[TarEntry]:
    """The entries of a (possibly compressed) tar blob, in order; `summary` is filled in
    once the stream is exhausted. `check` sees every member first (diff applies them as
    minimize does, so a hostile layer is the same error); without `entries`, the stream is
    only read through `check`; `expect` (digest, size, name): the blob checked in the same
    pass (smith.oci.layerread.open_blob)."""
    what = f"layer {layer}" if layer else path
    with open_blob(path, what, expect=expect) as reader:
        stream = TarStream(reader.read_piece, forensic=entries)
        with layer_errors(reader, what):
            for member in stream:
                if check is not None:
                    check(member)
                if entries:
                    yield forensic_entry(stream, member)
            stream.trailer()
    if summary is not None:
        summary.sha256 = reader.digest()
        summary.size = reader.size
        summary.end_blocks = stream.end_blocks
        summary.globals = tuple(stream.globals)


def forensic_entry(stream: TarStream, member: Member) -> TarEntry:
    detail = member.detail
    assert detail is not None
    content = ""
    if member.isreg():
        digest = hashlib.sha256()
        for piece in stream.body():
            digest.update(piece)
        content = digest.hexdigest()
    block = detail.header
    records = dict(detail.pax)
    typeflag = member.type.decode("latin-1")
    return TarEntry(
        position=detail.position,
        name=member.name,
        name_form=detail.name_form,
        type=TYPE_NAMES.get(typeflag, repr(typeflag)),
        mode=member.mode,
        uid=member.uid,
        gid=member.gid,
        uname=records.get("uname", parse_text(block[265:297])),
        gname=records.get("gname", parse_text(block[297:329])),
        mtime=records.get("mtime", str(number(block[136:148], "mtime"))),
        linkname=member.linkname,
        size=member.size,
        devices=(number(block[329:337], "devmajor"), number(block[337:345], "devminor")),
        magic=block[257:265],
        pax=detail.pax,
        content=content,
        header=block,
    )


def header_field_at(offset: int) -> str:
    for name, start, end in HEADER_FIELDS:
        if start <= offset < end:
            return name
    return "padding"
