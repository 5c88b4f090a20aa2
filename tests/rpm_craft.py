"""Write small RPM files by hand, for packages rpmbuild refuses to make (hostile names).

Names are str; bytes that are not UTF-8 are given as surrogates (surrogateescape)."""

from __future__ import annotations

import gzip
import hashlib
import struct
from pathlib import Path

S_IFREG, S_IFLNK, S_IFDIR = 0o100000, 0o120000, 0o040000


def _header(tags: dict[int, tuple[int, object]]) -> bytes:
    index, store = b"", b""
    for tag in sorted(tags):
        typ, value = tags[tag]
        align = {3: 2, 4: 4}.get(typ, 1)
        store += b"\0" * ((-len(store)) % align)
        off = len(store)
        if typ == 6:
            assert isinstance(value, str)
            store += value.encode("utf-8", "surrogateescape") + b"\0"
            count = 1
        elif typ == 8:
            assert isinstance(value, list)
            store += b"".join(v.encode("utf-8", "surrogateescape") + b"\0" for v in value)
            count = len(value)
        elif typ in (3, 4):
            assert isinstance(value, list)
            store += struct.pack(f">{len(value)}{'H' if typ == 3 else 'I'}", *value)
            count = len(value)
        else:
            raise AssertionError(typ)
        index += struct.pack(">IIiI", tag, typ, off, count)
    return b"\x8e\xad\xe8\x01\0\0\0\0" + struct.pack(">II", len(tags), len(store)) + index + store


def _content(kind: str, data: str) -> str:
    # A "hardlink" entry's data is "GROUP:CONTENT": members of a group share one inode.
    return data.split(":", 1)[1] if kind == "hardlink" else data


def _cpio(files: list[tuple[str, str, str]]) -> bytes:
    out = b""
    groups: dict[str, list[int]] = {}
    for i, (_, kind, data) in enumerate(files):
        if kind == "hardlink":
            groups.setdefault(data.split(":", 1)[0], []).append(i)
    for i, (name, kind, data) in enumerate([*files, ("TRAILER!!!", "file", "")]):
        body = _content(kind, data).encode()
        mode = {
            "file": S_IFREG | 0o644,
            "exec": S_IFREG | 0o755,
            "hardlink": S_IFREG | 0o644,
            "symlink": S_IFLNK | 0o777,
            "dir": S_IFDIR | 0o755,
        }[kind]
        ino, nlink = i + 1, 1
        if kind == "hardlink":
            members = groups[data.split(":", 1)[0]]
            ino, nlink = 1000 + members[0], len(members)
            if i != members[-1]:
                body = b""  # rpm writes a link group's data with its last member only
        if kind == "dir":
            body = b""
        nm = name.encode("utf-8", "surrogateescape") + b"\0"
        fields = [ino, mode, 0, 0, nlink, 0, len(body), 0, 0, 0, 0, len(nm), 0]
        hdr = b"070701" + b"".join(b"%08X" % f for f in fields)
        out += hdr + nm + b"\0" * ((-(110 + len(nm))) % 4) + body + b"\0" * ((-len(body)) % 4)
    return out


def craft_rpm(
    path: Path,
    files: list[tuple[str, str, str]],
    *,
    header_mismatch: bool = False,
    sha256_digests: dict[str, str] | None = None,
    payload_digest: bool = True,
    payload: bytes | None = None,
    name: str = "crafted",
) -> Path:
    """An RPM (package `name`) whose payload holds `files` (cpio name, kind, data or link
    target), or is `payload` as given (a hostile one)."""
    names = [n.lstrip(".") for n, _, _ in files]
    if header_mismatch:
        names = [n + "-other" for n in names]
    dirs = sorted({n.rsplit("/", 1)[0] + "/" for n in names})
    kinds = {
        "file": S_IFREG | 0o644,
        "exec": S_IFREG | 0o755,
        "hardlink": S_IFREG | 0o644,
        "symlink": S_IFLNK | 0o777,
        "dir": S_IFDIR | 0o755,
    }
    tags: dict[int, tuple[int, object]] = {
        1000: (6, name),
        1001: (6, "1"),
        1002: (6, "1"),
        1022: (6, "x86_64"),
        1021: (6, "linux"),
        1044: (6, f"{name}-1-1.src.rpm"),
        1028: (4, [len(_content(k, d).encode()) if k != "dir" else 0 for _, k, d in files]),
        1030: (3, [kinds[k] for _, k, _ in files]),
        1033: (3, [0] * len(files)),
        1034: (4, [0] * len(files)),
        1035: (
            8,
            [
                hashlib.md5(d.encode()).hexdigest() if k in ("file", "exec") else ""
                for _, k, d in files
            ],
        ),
        1036: (8, [d if k == "symlink" else "" for _, k, d in files]),
        1037: (4, [0] * len(files)),
        1039: (8, ["root"] * len(files)),
        1040: (8, ["root"] * len(files)),
        1116: (4, [dirs.index(n.rsplit("/", 1)[0] + "/") for n in names]),
        1117: (8, [n.rsplit("/", 1)[1] for n in names]),
        1118: (8, dirs),
        1124: (6, "cpio"),
        1125: (6, "gzip"),
    }
    if sha256_digests is not None:
        # FILEDIGESTALGO 8: sha256 digests, here as the caller claims them.
        tags[5011] = (4, [8])
        tags[1035] = (8, [sha256_digests.get(n, "") for n, _, _ in files])
    if payload is None:
        payload = gzip.compress(_cpio(files), mtime=0)
    if payload_digest:
        tags[5092] = (8, [hashlib.sha256(payload).hexdigest()])
        tags[5093] = (4, [8])
    header = _header(tags)
    sig = _header({273: (6, hashlib.sha256(header).hexdigest())})
    sig += b"\0" * ((-len(sig)) % 8)
    lead = b"\xed\xab\xee\xdb\x03\x00\x00\x00\x00\x01" + f"{name}-1-1".encode()[:65].ljust(
        66, b"\0"
    )
    lead += b"\x00\x01\x00\x05" + b"\0" * 16
    assert len(lead) == 96
    path.write_bytes(lead + sig + header + payload)
    return path
