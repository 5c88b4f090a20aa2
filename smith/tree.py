"""FileTree: the one in-memory model of a root filesystem that every input becomes.

RPM payloads, image layers and host directories are all read into a FileTree; every output
(layer tars, the closure, the conventions) is computed from one. Paths are canonical
root-relative strings (see smith.paths); names that are not valid UTF-8 are carried with
`surrogateescape`, exactly as `os.fsdecode` gives them, so no byte of a name is lost.
"""

from __future__ import annotations

import errno
import io
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

from smith.errors import SmithError, UnsafePathError
from smith.links import MAX_SYMLINK_HOPS, LinkResolver
from smith.paths import normalize_path, parent_paths

if TYPE_CHECKING:
    from smith.entrytable import EntryTable

__all__ = ["MAX_SYMLINK_HOPS"]  # re-exported: the limit readers of a tree check against


class Kind(StrEnum):
    DIR = "dir"
    FILE = "file"
    SYMLINK = "symlink"
    HARDLINK = "hardlink"


@dataclass(frozen=True, slots=True)
class HostFile:
    """File content that lives in a file on the build host (an extracted payload, a layer).

    `sha256` is the content's digest when the producer knows it (a content store does);
    the layer cache uses it instead of reading the file again."""

    path: str
    sha256: str = ""

    def open(self) -> BinaryIO:
        return open(self.path, "rb")


@dataclass(frozen=True, slots=True)
class InlineBytes:
    """Small content that smith generates itself (/etc/passwd, a config file)."""

    data: bytes

    def open(self) -> BinaryIO:
        return io.BytesIO(self.data)


@dataclass(frozen=True, slots=True)
class HostSlice:
    """Content at `offset` of a larger host file: an image layer's files are stored back
    to back in one pack file per layer, because creating one host file per entry costs
    more than reading the whole layer."""

    path: str
    offset: int
    size: int

    def open(self) -> BinaryIO:
        return io.BufferedReader(_SliceIO(self.path, self.offset, self.size), 1 << 16)


class _SliceIO(io.RawIOBase):
    """A read-only, seekable window [offset, offset+size) of a host file (pread: no shared
    file position, so any number of readers may be open at once)."""

    def __init__(self, path: str, offset: int, size: int) -> None:
        super().__init__()
        self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self._start, self._size, self._pos = offset, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = max(0, min(len(buffer), self._size - self._pos))
        data = os.pread(self._fd, n, self._start + self._pos) if n else b""
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise OSError(f"negative seek position in {self!r}")
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()


class SpanSource(Protocol):
    """Where a LayerSpan's bytes are read again (smith.oci.layerspan)."""

    def materialize(self, offset: int, size: int) -> HostSlice: ...


@dataclass(frozen=True, slots=True)
class LayerSpan:
    """Content at `offset` of an image layer's uncompressed tar that was not copied out
    when the layer was read (it could hardly be kept): read again from the layer's blob if
    it is opened after all, once (smith.oci.layerspan)."""

    source: SpanSource
    offset: int
    size: int

    def open(self) -> BinaryIO:
        return self.source.materialize(self.offset, self.size).open()


Content = HostFile | InlineBytes | HostSlice | LayerSpan


def content_digest(content: Content) -> str:
    """The sha256 (hex) of the content's bytes; free when the producer recorded it."""
    # Here, not at the top: hashlib loads OpenSSL (~2.5 ms), and reading a tree (the
    # closure command) hashes nothing.
    import hashlib

    if isinstance(content, InlineBytes):
        return hashlib.sha256(content.data).hexdigest()
    if isinstance(content, HostFile) and content.sha256:
        return content.sha256
    hasher = hashlib.sha256()
    with content.open() as f:
        while chunk := f.read(1 << 20):
            hasher.update(chunk)
    return hasher.hexdigest()


@dataclass(frozen=True, slots=True)
class Entry:
    """One path of the tree.

    `target` is the link target as written for a symlink, and the canonical path of the
    other name for a hard link. `origin` says where the entry came from (a package NEVRA,
    a layer digest, a recipe file) so that `--explain` can tell.
    """

    path: str
    kind: Kind
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    size: int = 0
    target: str = ""
    content: Content | None = None
    origin: str = ""

    def sort_key(self) -> bytes:
        return path_sort_key(self.path)


def path_sort_key(path: str) -> bytes:
    """Bytewise order of the on-disk name: the order every layer is written in."""
    return path.encode("utf-8", "surrogateescape")


def sorted_bytewise(paths: Iterable[str]) -> list[str]:
    """`paths` in path_sort_key order. Code point order is that order for every name whose
    UTF-8 bytes are its own (all of an ASCII list), so a list is encoded only when it holds
    another name: the closure sorts thousands of names, and encoding them was most of it."""
    ordered = sorted(paths)
    if not all(map(str.isascii, ordered)):
        ordered.sort(key=path_sort_key)
    return ordered


class FileTree:
    """A mutable map of canonical path -> Entry. Later additions replace earlier ones."""

    def __init__(self, entries: EntryTable | None = None) -> None:
        # Columns, not an Entry object per path: a million-entry layer fits in ~190 MB.
        # Imported here: smith.entrytable is built on this module's types.
        from smith.entrytable import EntryTable

        self._entries: EntryTable = EntryTable() if entries is None else entries
        # directory -> names directly below it (explicit entries and implicit parents),
        # built on first use and kept up to date after: layering and the closure ask for
        # the children of a directory many times.
        self._children: dict[str, set[str]] | None = None
        self._listed: dict[str, list[str]] = {}  # child_paths' sorted answers, until a change
        self._parents: set[str] | None = None  # is_directory's answers without the index
        self._resolver = LinkResolver(self._is_link, self._readlink, _loop_error)

    def _is_link(self, path: str) -> bool:
        entry = self._entries.get(path)
        return entry is not None and entry.kind is Kind.SYMLINK

    def _readlink(self, path: str) -> str:
        return self._entries[path].target

    # -- building ---------------------------------------------------------------------------

    def add(self, entry: Entry) -> Entry:
        path = normalize_path(entry.path)
        if not path:
            raise SmithError(f"the root itself cannot be an entry of kind {entry.kind}")
        if path != entry.path:
            entry = replace(entry, path=path)
        if entry.kind is Kind.HARDLINK:
            entry = replace(entry, target=normalize_path(entry.target, what="hard link target"))
        old = self._entries.get(path)
        if entry.kind is Kind.SYMLINK or (old is not None and old.kind is Kind.SYMLINK):
            self._resolver.forget()  # resolutions through this path may change
        # Keyed by the entry's own string, not normalize_path's equal copy: one path
        # string per entry, not two (a million-entry layer).
        self._entries[entry.path] = entry
        if old is None:
            self._parents = None
            if self._children is not None:
                _index_path(self._children, path)
            if self._listed:
                self._listed.clear()
        return entry

    def add_dir(
        self, path: str, mode: int = 0o755, *, uid: int = 0, gid: int = 0, origin: str = ""
    ) -> Entry:
        return self.add(Entry(path, Kind.DIR, mode=mode, uid=uid, gid=gid, origin=origin))

    def add_file(
        self,
        path: str,
        content: Content,
        mode: int = 0o644,
        *,
        uid: int = 0,
        gid: int = 0,
        origin: str = "",
        size: int | None = None,
    ) -> Entry:
        if size is None:
            if isinstance(content, InlineBytes):
                size = len(content.data)
            elif isinstance(content, HostSlice | LayerSpan):
                size = content.size
            else:
                size = os.stat(content.path).st_size
        return self.add(
            Entry(
                path,
                Kind.FILE,
                mode=mode,
                uid=uid,
                gid=gid,
                size=size,
                content=content,
                origin=origin,
            )
        )

    def add_symlink(
        self, path: str, target: str, *, uid: int = 0, gid: int = 0, origin: str = ""
    ) -> Entry:
        return self.add(
            Entry(path, Kind.SYMLINK, mode=0o777, uid=uid, gid=gid, target=target, origin=origin)
        )

    def add_hardlink(
        self, path: str, target: str, *, uid: int = 0, gid: int = 0, origin: str = ""
    ) -> Entry:
        return self.add(Entry(path, Kind.HARDLINK, uid=uid, gid=gid, target=target, origin=origin))

    def remove(self, path: str) -> None:
        """Remove `path` and, if it is a directory, everything below it."""
        path = normalize_path(path)
        prefix = path + "/" if path else ""
        for p in [p for p in self._entries if p == path or p.startswith(prefix)]:
            del self._entries[p]
        self._resolver.forget()
        self._children = None  # rare (conventions, excludes): rebuilt when next asked
        self._parents = None
        self._listed.clear()

    # -- reading ----------------------------------------------------------------------------

    def get(self, path: str) -> Entry | None:
        return self._entries.get(normalize_path(path))

    def __contains__(self, path: object) -> bool:
        return isinstance(path, str) and normalize_path(path) in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Entry]:
        """Entries in bytewise path order (parents first), whatever the insertion order."""
        for path in self.paths():
            yield self._entries[path]

    def unordered(self) -> Iterator[Entry]:
        """The entries in no particular order: for a count or a sum, without the sorted
        list of every path that iteration makes (of a million-entry tree, the command's
        peak memory)."""
        for path in self._entries:
            yield self._entries[path]

    def subtree(self, paths: Iterable[str]) -> FileTree:
        """The entries at `paths` (those this tree has) and all their parent directories,
        metadata as here (a parent that is no directory here is a plain 0755 one). A hard
        link whose first name is not among `paths` becomes a copy of it, carrying the
        content itself."""
        wanted = list(paths)
        keep = set(wanted)
        out = FileTree()
        for path in wanted:
            entry = self.get(path)
            if entry is None:
                continue
            copy_parents(out, self, entry.path)
            if entry.kind is Kind.HARDLINK and entry.target not in keep:
                source = self.get(entry.target)
                assert source is not None
                entry = replace(source, path=entry.path)
            out.add(entry)
        return out

    def paths(self) -> list[str]:
        """Every path, in bytewise order."""
        paths = list(self._entries)
        # For ASCII names str order is bytewise order: sorting them needs no key object per
        # path (a million-entry tree made a million bytes objects at once).
        if all(path.isascii() for path in paths):
            paths.sort()
        else:
            paths.sort(key=path_sort_key)
        return paths

    def children(self, directory: str) -> list[Entry]:
        """The entries directly below `directory`, in bytewise order."""
        return [e for e in (self.get(p) for p in self.child_paths(directory)) if e is not None]

    def child_paths(self, directory: str) -> list[str]:
        """The paths directly below `directory` (implicit parents included), bytewise."""
        directory = normalize_path(directory)
        listed = self._listed.get(directory)
        if listed is None:
            names = self._index().get(directory, ())
            paths = (f"{directory}/{n}" if directory else n for n in names)
            listed = self._listed[directory] = sorted(paths, key=path_sort_key)
        return list(listed)

    def is_directory(self, path: str) -> bool:
        """Whether `path` is a directory: an entry, or the implicit parent of one."""
        path = normalize_path(path)
        entry = self._entries.get(path)
        if entry is not None:
            return entry.kind is Kind.DIR
        if self._children is not None:
            return path == "" or path in self._children
        return path == "" or path in self._parent_dirs()

    def _parent_dirs(self) -> set[str]:
        """Every directory that is a parent of an entry and no entry itself (is_directory
        asks the entry first): few, where the children index holds every name (a closure
        asks whether `etc` exists of a million-entry image that has none, and lists no
        directory). A climb stops at an entry: what is above it, its own climb finds."""
        if self._parents is None:
            parents: set[str] = set()
            entries = self._entries
            for path in entries:
                parent = path.rpartition("/")[0]
                while parent and parent not in parents and parent not in entries:
                    parents.add(parent)
                    parent = parent.rpartition("/")[0]
            self._parents = parents
        return self._parents

    def _index(self) -> dict[str, set[str]]:
        if self._children is None:
            children: dict[str, set[str]] = {"": set()}
            for path in self._entries:
                _index_path(children, path)
            self._children = children
        return self._children

    def resolve(self, path: str, *, follow_last: bool = True) -> str:
        """The canonical path `path` leads to after following symlinks inside the tree.

        Absolute link targets are re-rooted into the tree; the host is never consulted. The
        result may name a path that does not exist (a dangling link). A loop raises.
        """
        norm = normalize_path(path) if path.strip("/") else ""
        return self._resolver.walk(norm, follow_last=follow_last).path

    def lookup(self, path: str) -> Entry | None:
        """The entry `path` leads to after following symlinks (and hard links), if any."""
        entry = self._entries.get(self.resolve(path))
        if entry is not None and entry.kind is Kind.HARDLINK:
            return self._entries.get(entry.target)
        return entry

    # -- host directories -------------------------------------------------------------------

    @classmethod
    def from_directory(cls, root: str | os.PathLike[str], *, origin: str = "") -> FileTree:
        """Read a host directory as a tree (it stays the content store: files are not copied).

        Hard links become HARDLINK entries pointing at the first name in bytewise order.
        Devices, FIFOs and sockets are left out: a microcontainer carries none. A tree
        deeper than a path can name is an UnsafePathError (no recursion: any depth reads
        until the kernel's path limit, and ends in one line).
        """
        try:
            return cls._from_directory(os.fspath(root), origin)
        except OSError as err:
            if err.errno != errno.ENAMETOOLONG:
                raise
            name = os.path.basename(os.path.normpath(os.fspath(root)))
            raise UnsafePathError(
                f"{name}/ goes deeper than a path can name ({err.filename!r})"
            ) from None

    @classmethod
    def _from_directory(cls, root: str, origin: str) -> FileTree:
        tree = cls()
        stack = [""]
        while stack:
            rel = stack.pop()
            with os.scandir(os.path.join(root, rel) if rel else root) as it:
                items = sorted(it, key=lambda d: os.fsencode(d.name))
            for item in items:
                path = f"{rel}/{item.name}" if rel else item.name
                st = item.stat(follow_symlinks=False)
                perms = stat.S_IMODE(st.st_mode)
                owner = {"uid": st.st_uid, "gid": st.st_gid, "origin": origin}
                if stat.S_ISDIR(st.st_mode):
                    tree.add_dir(path, perms, **owner)  # type: ignore[arg-type]
                    stack.append(path)
                elif stat.S_ISLNK(st.st_mode):
                    tree.add_symlink(path, os.readlink(item.path), **owner)  # type: ignore[arg-type]
                elif stat.S_ISREG(st.st_mode):
                    content = HostFile(item.path)
                    tree.add_file(path, content, perms, size=st.st_size, **owner)  # type: ignore[arg-type]
        # Directory walk order is not bytewise path order, so pick each link group's
        # first name only once the whole tree is known.
        groups: dict[tuple[int, int], list[str]] = {}
        for entry in list(tree):
            if entry.kind is Kind.FILE and isinstance(entry.content, HostFile):
                st = os.lstat(entry.content.path)
                if st.st_nlink > 1:
                    groups.setdefault((st.st_dev, st.st_ino), []).append(entry.path)
        for names in groups.values():
            names.sort(key=path_sort_key)
            for other in names[1:]:
                old = tree._entries[other]
                tree.add(replace(old, kind=Kind.HARDLINK, target=names[0], size=0, content=None))
        return tree


def _loop_error(path: str) -> SmithError:
    return SmithError(f"too many levels of symbolic links resolving {path!r}")


def _index_path(children: dict[str, set[str]], path: str) -> None:
    """Record `path` and its parents in a directory -> names index."""
    while path:
        parent, _, name = path.rpartition("/")
        siblings = children.setdefault(parent, set())
        if name in siblings:
            return
        siblings.add(name)
        path = parent


def copy_parents(dest: FileTree, source: FileTree, path: str) -> None:
    """Give `path` in `dest` every parent directory, as `source` has it (a plain 0755
    directory where `source` has none, or has something else there)."""
    for parent in parent_paths(path):
        if parent not in dest:
            entry = source.get(parent)
            dest.add(
                entry
                if entry is not None and entry.kind is Kind.DIR
                else Entry(parent, Kind.DIR, mode=0o755)
            )
