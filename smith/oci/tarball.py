"""Deterministic layer tar streams, written header by header.

Python's tarfile is not used for writing: its output depends on the Python version (PAX
details, `gettarinfo` host names, float mtimes) and it pads to 10 KiB records. Here every
byte of every header is a pure function of the FileTree entry and the epoch, which is the
whole point of smith. Each rule of the determinism checklist (docs/ARCHITECTURE.md) is
enforced where the field is written, with the reason next to it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from smith.errors import SmithError
from smith.paths import parent_paths
from smith.tree import Entry, FileTree, Kind, path_sort_key

BLOCK = 512
READ_SIZE = 1 << 20
# One tar format, always: POSIX ustar headers, with a PAX extended header only for what
# ustar cannot hold (long or non-ASCII names, huge sizes or ids). Go's archive/tar, which
# every runtime uses to read layers, does the same.
USTAR_MAGIC = b"ustar\x0000"
PAX_HEADER_NAME = b"././@PaxHeader"
MAX_OCTAL_7 = 0o7777777
MAX_OCTAL_11 = 0o77777777777

TYPE_FILE = b"0"
TYPE_HARDLINK = b"1"
TYPE_SYMLINK = b"2"
TYPE_DIR = b"5"
TYPE_PAX = b"x"


@dataclass(frozen=True)
class TarMember:
    """What a layer says about one path: the header fields smith writes, in order."""

    name: bytes
    typeflag: bytes
    mode: int
    uid: int
    gid: int
    size: int
    linkname: bytes
    entry: Entry | None  # the entry whose content follows, for regular files


def encode_name(path: str) -> bytes:
    # Names are bytes on disk; surrogateescape gives back exactly the original bytes of a
    # name that was not valid UTF-8.
    return path.encode("utf-8", "surrogateescape")


def _origin(entry: Entry) -> str:
    return f" (from {entry.origin})" if entry.origin else ""


def plan_members(tree: FileTree) -> list[TarMember]:
    """The members of the layer for `tree`, in the order they are written.

    - Bytewise-sorted paths, so the order never depends on how the tree was built.
    - Every parent directory is written explicitly (0755, root-owned when the tree does not
      name it): runtimes otherwise invent them with their own umask and owner.
    - Hard links: the first name of each link group in sorted order carries the content,
      the others link to it, so the same group gives the same bytes whichever name was
      "first" in the input.
    """
    entries = {e.path: e for e in tree}
    for path in list(entries):
        for parent in parent_paths(path):
            if parent not in entries:
                entries[parent] = Entry(parent, Kind.DIR, mode=0o755)
            elif entries[parent].kind is not Kind.DIR:
                # Two packages disagree (one ships a file where another has a directory):
                # name them, the user has to drop or exclude one.
                below, above = entries[path], entries[parent]
                raise SmithError(
                    f"{path!r}{_origin(below)} is below {parent!r}, which is a "
                    f"{above.kind.value}{_origin(above)}, not a directory"
                )

    link_groups: dict[str, list[str]] = {}
    for entry in entries.values():
        if entry.kind is Kind.HARDLINK:
            target = follow_hardlink(entries, entry)
            link_groups.setdefault(target, [target]).append(entry.path)
    carrier: dict[str, str] = {}  # path -> the name that carries the group's content
    content_of: dict[str, Entry] = {}
    for target, names in link_groups.items():
        names.sort(key=path_sort_key)
        for name in names:
            carrier[name] = names[0]
        content_of[names[0]] = entries[target]

    members = []
    for path in sorted(entries, key=path_sort_key):
        entry = entries[path]
        raw = encode_name(path)
        if entry.kind is Kind.DIR:
            # A trailing slash marks directories, as docker and Go's archive/tar write them.
            members.append(
                TarMember(raw + b"/", TYPE_DIR, entry.mode, entry.uid, entry.gid, 0, b"", None)
            )
        elif entry.kind is Kind.SYMLINK:
            link = encode_name(entry.target)
            members.append(TarMember(raw, TYPE_SYMLINK, 0o777, entry.uid, entry.gid, 0, link, None))
        elif carrier.get(path, path) != path:
            first = encode_name(carrier[path])
            source = content_of[carrier[path]]
            members.append(
                TarMember(raw, TYPE_HARDLINK, source.mode, source.uid, source.gid, 0, first, None)
            )
        else:
            source = content_of.get(path, entry)
            members.append(
                TarMember(
                    raw, TYPE_FILE, source.mode, source.uid, source.gid, source.size, b"", source
                )
            )
    return members


def follow_hardlink(entries: dict[str, Entry], entry: Entry) -> str:
    seen = {entry.path}
    current = entry
    while current.kind is Kind.HARDLINK:
        nxt = entries.get(current.target)
        if nxt is None or nxt.kind not in (Kind.FILE, Kind.HARDLINK) or nxt.path in seen:
            raise SmithError(
                f"hard link {entry.path!r} points to {current.target!r}, "
                "which is not a regular file of the tree"
            )
        seen.add(nxt.path)
        current = nxt
    return current.path


def octal(value: int, width: int) -> bytes:
    """A NUL-terminated, zero-padded octal field, as POSIX specifies."""
    return b"%0*o\x00" % (width - 1, value)


def pax_record(key: str, value: bytes) -> bytes:
    # The length prefix counts itself, so it is found by iteration (at most twice).
    body = b" " + key.encode() + b"=" + value + b"\n"
    length = len(body) + 1
    while len(str(length)) + len(body) != length:
        length = len(str(length)) + len(body)
    return str(length).encode() + body


def split_ustar_name(name: bytes) -> tuple[bytes, bytes] | None:
    """(prefix, name) when `name` fits ustar's 155+100 byte fields, else None."""
    if len(name) <= 100:
        return b"", name
    # The rightmost '/' that leaves a 1..100 byte name and at most 155 bytes of prefix.
    for i in range(len(name) - 2, 0, -1):
        if len(name) - i - 1 > 100:
            break  # further left the name part only grows
        if name[i] == 0x2F and i <= 155:
            return name[:i], name[i + 1 :]
    return None


def ascii_field(data: bytes, width: int) -> bytes:
    # What the ustar field says when a PAX record carries the real value: the ASCII bytes
    # kept, the others replaced, cut to the field. Only a function of the name.
    return bytes(b if b < 0x80 else 0x3F for b in data)[:width]


def header_block(
    name: bytes,
    typeflag: bytes,
    mode: int,
    uid: int,
    gid: int,
    size: int,
    linkname: bytes,
    mtime: int,
) -> bytes:
    """One 512-byte ustar header, preceded by a PAX header when ustar cannot say it all."""
    records: list[bytes] = []
    split = split_ustar_name(name) if name.isascii() else None
    if split is None:
        if not name.isascii():
            try:
                name.decode("utf-8")
            except UnicodeDecodeError:
                # PAX strings are UTF-8 unless declared binary; a raw name must say so.
                records.append(pax_record("hdrcharset", b"BINARY"))
        records.append(pax_record("path", name))
        prefix, short = b"", ascii_field(name, 100)
    else:
        prefix, short = split
    if len(linkname) > 100 or not linkname.isascii():
        records.append(pax_record("linkpath", linkname))
        linkname = ascii_field(linkname, 100)
    if size > MAX_OCTAL_11:
        records.append(pax_record("size", str(size).encode()))
    if uid > MAX_OCTAL_7:
        records.append(pax_record("uid", str(uid).encode()))
    if gid > MAX_OCTAL_7:
        records.append(pax_record("gid", str(gid).encode()))

    out = b""
    if records:
        pax = b"".join(sorted(records))  # records sorted: their order is not meaningful
        out = raw_header(PAX_HEADER_NAME, b"", TYPE_PAX, 0o644, 0, 0, len(pax), b"", mtime)
        out += pax + padding(len(pax))
    out += raw_header(
        short,
        prefix,
        typeflag,
        mode,
        min(uid, MAX_OCTAL_7),
        min(gid, MAX_OCTAL_7),
        min(size, MAX_OCTAL_11),
        linkname,
        mtime,
    )
    return out


def raw_header(
    name: bytes,
    prefix: bytes,
    typeflag: bytes,
    mode: int,
    uid: int,
    gid: int,
    size: int,
    linkname: bytes,
    mtime: int,
) -> bytes:
    header = b"".join(
        [
            name.ljust(100, b"\x00"),
            # Only permission bits: setuid/setgid/sticky are the conventions' business,
            # and file-type bits belong in typeflag, never in mode.
            octal(mode & 0o7777, 8),
            octal(uid, 8),
            octal(gid, 8),
            octal(size, 12),
            # An integer epoch, never the file's own times: no atime/ctime, no float
            # mtime (which would make PAX records appear).
            octal(mtime, 12),
            b" " * 8,  # checksum placeholder: computed over the header with spaces here
            typeflag,
            linkname.ljust(100, b"\x00"),
            USTAR_MAGIC,
            # Empty uname/gname: numeric ids only, never the build host's user names.
            b"\x00" * 32,
            b"\x00" * 32,
            octal(0, 8),
            octal(0, 8),
            prefix.ljust(155, b"\x00"),
            b"\x00" * 12,
        ]
    )
    checksum = b"%06o\x00 " % sum(header)
    return header[:148] + checksum + header[156:]


def padding(size: int) -> bytes:
    return b"\x00" * (-size % BLOCK)


def stream_layer(tree: FileTree, epoch: int) -> Iterator[bytes]:
    """The layer tar of `tree` as a stream of byte chunks. File content is read in 1 MiB
    pieces, so memory does not grow with file size."""
    if epoch < 0 or epoch > MAX_OCTAL_11:
        raise SmithError(f"SOURCE_DATE_EPOCH out of range for a tar header: {epoch}")
    for m in plan_members(tree):
        yield header_block(m.name, m.typeflag, m.mode, m.uid, m.gid, m.size, m.linkname, epoch)
        if m.entry is not None and m.size:
            yield from stream_content(m.entry)
            yield padding(m.size)
    # End of archive: two zero blocks and nothing more (no padding to a 10 KiB record,
    # which GNU tar and Python's tarfile add but which only costs bytes).
    yield b"\x00" * (2 * BLOCK)


def stream_content(entry: Entry) -> Iterator[bytes]:
    if entry.content is None:
        raise SmithError(f"the regular file {entry.path!r} has no content")
    remaining = entry.size
    with entry.content.open() as f:
        while remaining:
            chunk = f.read(min(READ_SIZE, remaining))
            if not chunk:
                raise SmithError(
                    f"{entry.path!r} is shorter than its recorded size {entry.size} "
                    "(did it change while the image was written?)"
                )
            remaining -= len(chunk)
            yield chunk
        if f.read(1):
            raise SmithError(
                f"{entry.path!r} is longer than its recorded size {entry.size} "
                "(did it change while the image was written?)"
            )
