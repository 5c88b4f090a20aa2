"""A read-only view of a root filesystem for the closure: a FileTree or a host directory.

Paths are canonical root-relative strings. Both views answer the same few questions (what
is at this path without following it, where does this link point, open these bytes, list
this directory) and resolution of symlinks is done once, above them, in `walk_path`, so
absolute link targets are re-rooted the same way for both and the host outside the root is
never read.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Hashable
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from smith.errors import ElfError
from smith.links import LinkResolver
from smith.tree import FileTree, Kind, sorted_bytewise


class Root(Protocol):
    """What the closure needs to know about a root filesystem."""

    def kind(self, path: str) -> Kind | None:
        """The kind of `path` itself (not followed); None when it does not exist.

        `path` must have no symlink among its parents: walk_path guarantees it.
        """

    def readlink(self, path: str) -> str: ...

    def hardlink_target(self, path: str) -> str: ...

    def open(self, path: str) -> BinaryIO: ...

    def listdir(self, path: str) -> list[str]:
        """Names in a directory, sorted bytewise; empty when it is no directory."""

    def list_kinds(self, path: str) -> list[tuple[str, Kind | None]]:
        """listdir, with the kind of each name as kind() would give it."""

    def read_at(self, path: str, offset: int, length: int) -> bytes:
        """Up to `length` bytes at `offset` of a regular file, without a file object or a
        content key (whether it is ELF; one table of an ELF file already parsed)."""

    def content_key(self, path: str) -> Hashable:
        """A key that changes when the bytes of the file at `path` may have changed."""


class TreeRoot:
    """A FileTree seen as a root. Directories that only exist as parents of entries count."""

    def __init__(self, tree: FileTree) -> None:
        self.tree = tree

    def kind(self, path: str) -> Kind | None:
        entry = self.tree.get(path) if path else None
        if entry is not None:
            return entry.kind
        return Kind.DIR if self.tree.is_directory(path) else None

    def readlink(self, path: str) -> str:
        entry = self.tree.get(path)
        return entry.target if entry is not None else ""

    def hardlink_target(self, path: str) -> str:
        return self.readlink(path)

    def open(self, path: str) -> BinaryIO:
        entry = self.tree.get(path)
        if entry is None or entry.content is None:
            raise ElfError(f"{path} has no content in the tree")
        return entry.content.open()

    def listdir(self, path: str) -> list[str]:
        return [p.rpartition("/")[2] for p in self.tree.child_paths(path)]

    def list_kinds(self, path: str) -> list[tuple[str, Kind | None]]:
        prefix = f"{path}/" if path else ""
        return [(name, self.kind(prefix + name)) for name in self.listdir(path)]

    def read_at(self, path: str, offset: int, length: int) -> bytes:
        with self.open(path) as stream:
            stream.seek(offset)
            return stream.read(length)

    def content_key(self, path: str) -> Hashable:
        entry = self.tree.get(path)
        return (path, entry.content if entry is not None else None)


class DirectoryRoot:
    """A host directory seen as a root (the host's `/` for the oracle tests).

    Only ever called with paths whose parents are not symlinks, so os.lstat on
    `root + path` never leaves the root through a link.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = os.path.abspath(os.fspath(directory))
        self._prefix = self.directory.rstrip("/") + "/"
        self._lstat: dict[str, os.stat_result | None] = {}
        self._keys: dict[str, Hashable] = {}
        self._kinds: dict[str, Kind | None] = {}

    def host_path(self, path: str) -> str:
        # Concatenation, not os.path.join: `path` is canonical and relative (the closure
        # asks thousands of times), and join would let an absolute one leave the root.
        return self._prefix + path if path else self.directory

    def _stat(self, path: str) -> os.stat_result | None:
        try:
            return self._lstat[path]
        except KeyError:
            pass
        try:
            st: os.stat_result | None = os.lstat(self.host_path(path))
        except (FileNotFoundError, NotADirectoryError):
            st = None
        except OSError as err:
            raise ElfError(f"cannot read /{path}: {err.strerror}") from None
        self._lstat[path] = st
        return st

    def kind(self, path: str) -> Kind | None:
        # Once per path, as _stat: the walker asks for each component it passes.
        try:
            return self._kinds[path]
        except KeyError:
            pass
        st = self._stat(path)
        kind: Kind | None = None
        if st is None:
            pass
        elif stat.S_ISLNK(st.st_mode):
            kind = Kind.SYMLINK
        elif stat.S_ISDIR(st.st_mode):
            kind = Kind.DIR
        elif stat.S_ISREG(st.st_mode):
            # Devices, FIFOs and sockets cannot be loaded; a regular file is all ld.so opens.
            kind = Kind.FILE
        self._kinds[path] = kind
        return kind

    def readlink(self, path: str) -> str:
        return os.readlink(self.host_path(path))

    def hardlink_target(self, path: str) -> str:
        return path

    def open(self, path: str) -> BinaryIO:
        # Unbuffered: the ELF reader reads a few blocks at known offsets, and a buffer in
        # between only copies them (a closure opens every file it considers).
        return open(self.host_path(path), "rb", buffering=0)

    def listdir(self, path: str) -> list[str]:
        try:
            names = os.listdir(self.host_path(path))
        except OSError:
            return []
        return sorted_bytewise(names)

    def list_kinds(self, path: str) -> list[tuple[str, Kind | None]]:
        # The directory's own entries say what each name is (d_type): a standard library
        # kept whole lists thousands of names, and an lstat of each was a third of it.
        try:
            with os.scandir(self.host_path(path)) as entries:
                found = {entry.name: _entry_kind(entry) for entry in entries}
        except OSError:
            return []
        return [(name, found[name]) for name in sorted_bytewise(found)]

    def read_at(self, path: str, offset: int, length: int) -> bytes:
        # A descriptor and one pread: no file object, no stat (most files asked are not
        # ELF, and need no content key).
        try:
            fd = os.open(self.host_path(path), os.O_RDONLY | os.O_CLOEXEC)
        except OSError as err:
            raise ElfError(f"cannot read /{path}: {err.strerror}") from None
        try:
            return os.pread(fd, length, offset)
        except OSError as err:
            raise ElfError(f"cannot read /{path}: {err.strerror}") from None
        finally:
            os.close(fd)

    def content_key(self, path: str) -> Hashable:
        key = self._keys.get(path)
        if key is None:
            st = self._stat(path)
            key = (
                (path, None)
                if st is None
                else (path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
            )
            self._keys[path] = key  # as _stat, once per path: the closure asks per use
        return key


def _entry_kind(entry: os.DirEntry[str]) -> Kind | None:
    """DirectoryRoot.kind from a directory entry (an lstat only where d_type is unknown)."""
    if entry.is_file(follow_symlinks=False):  # most names, so asked first
        return Kind.FILE
    if entry.is_dir(follow_symlinks=False):
        return Kind.DIR
    return Kind.SYMLINK if entry.is_symlink() else None


@dataclass(frozen=True)
class Walk:
    """Where a path leads: the final path, its kind, and every symlink passed on the way."""

    path: str
    kind: Kind | None
    links: tuple[str, ...]


class PathWalker:
    """Resolves paths inside a Root like the kernel inside a chroot (smith.links), with
    memoised prefixes: the root does not change under a walker."""

    def __init__(self, root: Root) -> None:
        self.root = root
        self._links = LinkResolver(
            lambda path: root.kind(path) is Kind.SYMLINK, root.readlink, _loop_error
        )
        # Each path is followed once (a closure walks the same interpreter and libraries
        # for every program).
        self._walks: dict[str, Walk] = {}

    def walk(self, path: str) -> Walk:
        """Follow `path` (canonical) to what it names. A symlink loop raises ElfError."""
        known = self._walks.get(path)
        if known is None:
            found = self._links.walk(path)
            known = self._walks[path] = Walk(found.path, self.root.kind(found.path), found.links)
        return known


def _loop_error(path: str) -> ElfError:
    return ElfError(f"too many levels of symbolic links resolving /{path}")
