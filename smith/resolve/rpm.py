"""Read RPM packages: header tags, the file list, digests, and the payload into a FileTree.

The payload is decompressed as a stream (none, gzip, bzip2, xz, lzma or zstd, told apart
by their magic bytes, since old packages do not name their compressor) and cut into files
by a small cpio reader. File bytes go into a content store keyed by their sha256, never to
a path named by the package, so a hostile name cannot write outside the store; names are
still checked and refused when they would climb out of the image root.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntFlag
from functools import partial

from smith.errors import PackageError, UnsafePathError
from smith.paths import climbs_out, normalize_path
from smith.resolve.conflicts import check_shared_path
from smith.resolve.payload import CpioEntry, PayloadStream, iter_cpio, skip_padding
from smith.resolve.rpmheader import Header, RawRpm, read_raw
from smith.resolve.store import ContentStore
from smith.resolve.unpacked import load_record, save_record
from smith.tree import Entry, FileTree, HostFile, Kind

# Main header tags (rpmtag.h).
NAME, VERSION, RELEASE, EPOCH, SUMMARY, ARCH = 1000, 1001, 1002, 1003, 1004, 1022
OLDFILENAMES, FILESIZES, FILEMODES, FILERDEVS, FILEMTIMES = 1027, 1028, 1030, 1033, 1034
FILEDIGESTS, FILELINKTOS, FILEFLAGS, FILEUSERNAME, FILEGROUPNAME = 1035, 1036, 1037, 1039, 1040
SOURCERPM, PROVIDENAME, REQUIREFLAGS, REQUIRENAME, REQUIREVERSION = 1044, 1047, 1048, 1049, 1050
PROVIDEFLAGS, PROVIDEVERSION, DIRINDEXES, BASENAMES, DIRNAMES = 1112, 1113, 1116, 1117, 1118
PAYLOADFORMAT, PAYLOADCOMPRESSOR, FILEDIGESTALGO, LONGFILESIZES = 1124, 1125, 5011, 5008
PAYLOADDIGEST, PAYLOADDIGESTALGO = 5092, 5093
RECOMMENDNAME, RECOMMENDVERSION, RECOMMENDFLAGS = 5046, 5047, 5048

# Signature header tags.
SIG_SIZE, SIG_PGP, SIG_MD5, SIG_GPG = 1000, 1002, 1004, 1005
SIG_DSA, SIG_RSA, SIG_SHA1, SIG_SHA256, SIG_OPENPGP = 267, 268, 269, 273, 278

# rpm's PGPHASHALGO numbers, as used by FILEDIGESTALGO and PAYLOADDIGESTALGO.
HASH_ALGOS = {1: "md5", 2: "sha1", 8: "sha256", 9: "sha384", 10: "sha512", 11: "sha224"}


class FileFlag(IntFlag):
    CONFIG = 1
    DOC = 2
    MISSINGOK = 8
    NOREPLACE = 16
    GHOST = 64
    LICENSE = 128
    README = 256
    ARTIFACT = 4096


# Dependency sense flags.
SENSE_LESS, SENSE_GREATER, SENSE_EQUAL = 2, 4, 8


@dataclass(frozen=True)
class Dependency:
    name: str
    flags: int = 0
    version: str = ""

    def __str__(self) -> str:
        op = ""
        if self.flags & SENSE_LESS:
            op += "<"
        if self.flags & SENSE_GREATER:
            op += ">"
        if self.flags & SENSE_EQUAL:
            op += "="
        return f"{self.name} {op} {self.version}" if op and self.version else self.name


@dataclass(frozen=True)
class RpmFile:
    """One entry of the header's file list (the payload may hold fewer: ghosts are absent)."""

    path: str  # as the header names it, with its leading "/" (source RPMs: no directory)
    mode: int
    size: int
    user: str
    group: str
    flags: FileFlag
    link_target: str
    digest: str
    mtime: int

    @property
    def ghost(self) -> bool:
        return bool(self.flags & FileFlag.GHOST)

    @property
    def config(self) -> bool:
        return bool(self.flags & FileFlag.CONFIG)


@dataclass(frozen=True)
class RpmPackage:
    """What an RPM file says about itself. `header`/`signature` hold every raw tag."""

    path: str
    name: str
    epoch: int | None
    version: str
    release: str
    arch: str
    source: bool
    summary: str
    provides: tuple[Dependency, ...]
    requires: tuple[Dependency, ...]
    recommends: tuple[Dependency, ...]
    files: tuple[RpmFile, ...]
    file_digest_algo: str
    payload_offset: int
    header: Header
    signature: Header

    @property
    def nevra(self) -> str:
        epoch = f"{self.epoch}:" if self.epoch else ""
        arch = "src" if self.source else self.arch
        return f"{self.name}-{epoch}{self.version}-{self.release}.{arch}"


def _deps(h: Header, names: int, flags: int, versions: int) -> tuple[Dependency, ...]:
    n = h.strings(names)
    f = h.ints(flags) or (0,) * len(n)
    v = h.strings(versions) or ("",) * len(n)
    return tuple(Dependency(a, b, c) for a, b, c in zip(n, f, v, strict=False))


def _file_list(h: Header, name: str) -> tuple[RpmFile, ...]:
    basenames = h.strings(BASENAMES)
    if basenames:
        dirnames = h.strings(DIRNAMES)
        try:
            paths = [dirnames[i] + b for i, b in zip(h.ints(DIRINDEXES), basenames, strict=True)]
        except (IndexError, ValueError):
            raise PackageError(f"{name}: inconsistent file list in the RPM header") from None
    else:
        paths = list(h.strings(OLDFILENAMES))
    n = len(paths)

    def column(values: tuple[int, ...] | tuple[str, ...], default: int | str) -> list[int | str]:
        if not values:
            return [default] * n
        if len(values) != n:
            raise PackageError(f"{name}: RPM header file columns disagree ({len(values)} != {n})")
        return list(values)

    sizes = column(h.ints(LONGFILESIZES) or h.ints(FILESIZES), 0)
    modes = column(h.ints(FILEMODES), 0o100644)
    users = column(h.strings(FILEUSERNAME), "root")
    groups = column(h.strings(FILEGROUPNAME), "root")
    flags = column(h.ints(FILEFLAGS), 0)
    links = column(h.strings(FILELINKTOS), "")
    digests = column(h.strings(FILEDIGESTS), "")
    mtimes = column(h.ints(FILEMTIMES), 0)
    return tuple(
        RpmFile(
            path=paths[i],
            mode=int(modes[i]),
            size=int(sizes[i]),
            user=str(users[i]),
            group=str(groups[i]),
            flags=FileFlag(int(flags[i])),
            link_target=str(links[i]),
            digest=str(digests[i]),
            mtime=int(mtimes[i]),
        )
        for i in range(n)
    )


def package_from_raw(raw: RawRpm, path: str) -> RpmPackage:
    h = raw.header
    name = os.path.basename(path)
    return RpmPackage(
        path=path,
        name=h.string(NAME),
        epoch=h.integer(EPOCH),
        version=h.string(VERSION),
        release=h.string(RELEASE),
        arch=h.string(ARCH),
        source=raw.source or SOURCERPM not in h.tags,
        summary=h.string(SUMMARY),
        provides=_deps(h, PROVIDENAME, PROVIDEFLAGS, PROVIDEVERSION),
        requires=_deps(h, REQUIRENAME, REQUIREFLAGS, REQUIREVERSION),
        recommends=_deps(h, RECOMMENDNAME, RECOMMENDFLAGS, RECOMMENDVERSION),
        files=_file_list(h, name),
        file_digest_algo=HASH_ALGOS.get(h.integer(FILEDIGESTALGO, 1) or 1, "md5"),
        payload_offset=raw.payload_offset,
        header=h,
        signature=raw.signature,
    )


def read_rpm(path: str | os.PathLike[str]) -> RpmPackage:
    """Read an RPM's lead and headers (not the payload). Raises PackageError if malformed."""
    p = os.fspath(path)
    try:
        with open(p, "rb") as f:
            return package_from_raw(read_raw(f, os.path.basename(p)), p)
    except OSError as err:
        raise PackageError(f"cannot read RPM {p}: {err.strerror}") from None


# -- digests ----------------------------------------------------------------------------------


def verify_digests(pkg: RpmPackage) -> None:
    """Check the header digest (sha256 or sha1) and the payload digest (or the old md5).

    Both the header and the payload must be covered by some digest: a package that leaves
    either unchecked is refused, since nothing would show that part is intact.
    """
    name = os.path.basename(pkg.path)
    sig, header_checked = pkg.signature, False
    for tag, algo in ((SIG_SHA256, "sha256"), (SIG_SHA1, "sha1")):
        want = sig.string(tag)
        if want:
            got = hashlib.new(algo, pkg.header.raw).hexdigest()
            if got != want:
                raise PackageError(f"{name}: header {algo} digest mismatch ({got} != {want})")
            header_checked = True
            break
    payload_digests = pkg.header.strings(PAYLOADDIGEST)
    md5 = sig.binary(SIG_MD5)
    if not payload_digests and not md5:
        raise PackageError(f"{name}: carries no payload digest (nor an md5) to check")
    algo = HASH_ALGOS.get(pkg.header.integer(PAYLOADDIGESTALGO, 8) or 8, "sha256")
    h_payload = hashlib.new(algo) if payload_digests else None
    h_md5 = hashlib.md5(pkg.header.raw, usedforsecurity=False) if md5 else None
    with open(pkg.path, "rb") as f:
        f.seek(pkg.payload_offset)
        while chunk := f.read(1 << 20):
            if h_payload:
                h_payload.update(chunk)
            if h_md5:
                h_md5.update(chunk)
    if h_payload and h_payload.hexdigest() != payload_digests[0]:
        raise PackageError(
            f"{name}: payload {algo} digest mismatch "
            f"({h_payload.hexdigest()} != {payload_digests[0]})"
        )
    if h_md5 and h_md5.digest() != md5:
        raise PackageError(f"{name}: md5 digest of header and payload mismatch")
    if not header_checked and not md5:
        raise PackageError(f"{name}: carries no header digest (nor an md5) to check")


# -- extraction -------------------------------------------------------------------------------


def _numeric_owner(name: str, cpio_id: int) -> int:
    # The header names owners; only root is certain without the image's /etc/passwd. Other
    # names keep the number rpmbuild wrote into the cpio header.
    return 0 if name == "root" else cpio_id


def _check_link(path: str, target: str, pkg: str) -> None:
    if not target.startswith("/") and climbs_out(len(path.split("/")) - 1, target):
        raise UnsafePathError(f"{pkg}: symlink {path!r} -> {target!r} leaves the root")


def add_rpm_to_tree(
    tree: FileTree,
    pkg_path: str | os.PathLike[str],
    store: ContentStore,
    *,
    package: RpmPackage | None = None,
    verify: bool = True,
) -> RpmPackage:
    """Add every file of an RPM to `tree` (contents go to `store`); return the package.

    Entries remember the package NEVRA in `origin`. Ghost files are not created. Modes,
    owners and link targets come from the header, which is what rpm itself installs. As
    rpm does on disk, a path through a symlink that another package put in the tree lands
    where the link leads (an old /lib/x on a merged /usr goes to usr/lib/x), and a
    directory where the tree has a symlink keeps the symlink. A path that an earlier
    package holds with other content is refused, naming both (smith.resolve.conflicts).
    Every check that can refuse the package runs before the tree is touched.
    """
    pkg = package or read_rpm(pkg_path)
    if verify:
        verify_digests(pkg)
    name = os.path.basename(pkg.path)
    by_path = _checked_file_list(pkg, name)
    origin = pkg.nevra
    links: dict[int, list[str]] = {}
    check_files = pkg.file_digest_algo == "sha256"
    # With its payload digest checked, the header's sha256 names the payload: a package
    # extracted before is replayed from its record (unpacked.py), not decompressed again.
    key = ""
    if verify and pkg.header.strings(PAYLOADDIGEST):
        key = hashlib.sha256(pkg.header.raw).hexdigest()
    replay = load_record(store, key) if key else None
    rows: list[tuple[CpioEntry, str]] = []
    entries = replay if replay is not None else _extract(pkg, name, by_path, store, rows)
    planned: list[Entry] = []  # what the package puts where, checked before any is added
    for ce, content in entries:
        path, rf = _header_file(by_path, ce, name)
        uid = _numeric_owner(rf.user, ce.uid)
        gid = _numeric_owner(rf.group, ce.gid)
        perms = stat.S_IMODE(rf.mode)
        if stat.S_ISREG(rf.mode):
            assert content is not None  # both sources give every regular file its content
            # The store names content by sha256: with sha256 file digests (rpm >= 4.6 on
            # most distributions) this check costs nothing.
            if check_files and ce.size and rf.digest and content.sha256 != rf.digest:
                raise PackageError(f"{name}: {rf.path} does not match its header digest")
            for member in _link_members(links, ce, _place(tree, path)):
                planned.append(
                    Entry(
                        member, Kind.FILE, perms, uid, gid, ce.size, content=content, origin=origin
                    )
                )
            continue
        if not path:
            continue  # Fedora's filesystem package owns "/": the root is implicit
        if stat.S_ISDIR(rf.mode):
            placed = tree.resolve(path)
            existing = tree.get(placed)
            if existing is None or existing.kind is Kind.DIR:
                planned.append(Entry(placed, Kind.DIR, perms, uid, gid, origin=origin))
        elif stat.S_ISLNK(rf.mode):
            placed = _place(tree, path)
            planned.append(
                Entry(placed, Kind.SYMLINK, 0o777, uid, gid, target=rf.link_target, origin=origin)
            )
        # Devices, FIFOs and sockets are left out: a microcontainer carries none.
    if key and replay is None:
        save_record(store, key, rows)
    for entry in planned:
        check_shared_path(tree, entry, name)
    for entry in planned:
        tree.add(entry)
    _link_groups(tree, links)
    return pkg


def _header_file(by_path: dict[str, RpmFile], ce: CpioEntry, name: str) -> tuple[str, RpmFile]:
    # nfpm writes "/usr/x" where rpmbuild writes "./usr/x": both name a path inside the
    # root (and must match the header), so the leading "/" is re-rooted.
    path = normalize_path(ce.name, what=f"{name}: payload path")
    found = by_path.get(path)
    if found is None:
        raise PackageError(f"{name}: payload holds {ce.name!r}, not in the header")
    return path, found


def _extract(
    pkg: RpmPackage,
    name: str,
    by_path: dict[str, RpmFile],
    store: ContentStore,
    rows: list[tuple[CpioEntry, str]],
) -> Iterator[tuple[CpioEntry, HostFile | None]]:
    """Each payload entry, with a regular file's bytes put into the store on the way (the
    header says what is a regular file); `rows` gets every entry, for the payload record."""
    empty: HostFile | None = None
    # The header declares every file's size: a package that cannot fit fails before any.
    need = sum(rf.size for rf in by_path.values() if stat.S_ISREG(rf.mode))
    store.check_room(need, f"the files of {name}")
    with open(pkg.path, "rb") as f:
        f.seek(pkg.payload_offset)
        stream = PayloadStream(f, name, os.fstat(f.fileno()).st_size - pkg.payload_offset)
        for ce in iter_cpio(stream, name):
            _, rf = _header_file(by_path, ce, name)
            content: HostFile | None = None
            if stat.S_ISREG(rf.mode):
                if ce.size:
                    content = store.put_stream(partial(stream.copy, ce.size))
                    skip_padding(stream, ce.size)
                else:
                    empty = empty or store.put_bytes(b"")
                    content = empty
            elif ce.size:
                stream.read(ce.size)
                skip_padding(stream, ce.size)
            rows.append((ce, content.sha256 if content is not None else ""))
            yield ce, content


def _checked_file_list(pkg: RpmPackage, name: str) -> dict[str, RpmFile]:
    """The header's files by canonical path, refusing any name or link that escapes.

    Refused: names with `..`; a file at the root itself; a relative symlink target that
    climbs above the root; a path below one of the package's own symlinks (written to
    disk, `a/x` below `a -> /etc` lands in /etc: the classic archive escape).
    """
    by_path: dict[str, RpmFile] = {}
    links: set[str] = set()
    for rf in pkg.files:
        path = normalize_path(rf.path, what=f"{name}: file")
        if not path and not stat.S_ISDIR(rf.mode):
            raise UnsafePathError(f"{name}: names the root itself as a file")
        if stat.S_ISLNK(rf.mode):
            _check_link(path, rf.link_target, name)
            links.add(path)
        by_path[path] = rf
    for path in by_path:
        parts = path.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            if parent in links:
                raise UnsafePathError(f"{name}: {path!r} lies below the symlink {parent!r}")
    return by_path


def _place(tree: FileTree, path: str) -> str:
    """Where `path` lands in `tree`: its parent directories' symlinks are followed."""
    parent, _, base = path.rpartition("/")
    if not parent:
        return path
    real = tree.resolve(parent)
    return f"{real}/{base}" if real else base


def _link_members(links: dict[int, list[str]], ce: CpioEntry, path: str) -> list[str]:
    """The names that get this cpio entry's content: itself, and for the member carrying a
    hard-link group's data (rpm writes it with the last member only) the earlier ones."""
    if ce.nlink <= 1:
        return [path]
    group = links.setdefault(ce.ino, [])
    group.append(path)
    return list(group) if ce.size else [path]


def _link_groups(tree: FileTree, links: dict[int, list[str]]) -> None:
    """Make each hard-link group one FILE (first name, bytewise) and HARDLINKs to it."""
    for names in links.values():
        names.sort(key=lambda p: p.encode("utf-8", "surrogateescape"))
        first = tree.get(names[0])
        assert first is not None  # every member was added as a file above
        for other in names[1:]:
            e = tree.get(other)
            uid, gid = (e.uid, e.gid) if e else (first.uid, first.gid)
            tree.add_hardlink(other, names[0], uid=uid, gid=gid, origin=first.origin)


def rpm_file_listing(pkg: RpmPackage) -> list[tuple[str, str, str, int, str, str]]:
    """(mode string, user, group, size, path, link target) per file, as `rpm -qlv` shows."""
    out = []
    for rf in pkg.files:
        size = 0 if stat.S_ISDIR(rf.mode) else rf.size
        out.append((stat.filemode(rf.mode), rf.user, rf.group, size, rf.path, rf.link_target))
    return out


__all__ = [
    "Dependency",
    "FileFlag",
    "RpmFile",
    "RpmPackage",
    "add_rpm_to_tree",
    "read_rpm",
    "rpm_file_listing",
    "verify_digests",
]
