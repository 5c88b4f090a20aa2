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
from smith.paths import resolve_link_target
from smith.tree import MAX_SYMLINK_HOPS, FileTree, Kind


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

    def content_key(self, path: str) -> Hashable:
        """A key that changes when the bytes of the file at `path` may have changed."""


class TreeRoot:
    """A FileTree seen as a root. Directories that only exist as parents of entries count."""

    def __init__(self, tree: FileTree) -> None:
        self.tree = tree
        self._children: dict[str, list[str]] | None = None
        self._parents: set[str] | None = None

    def _index(self) -> dict[str, list[str]]:
        if self._children is None:
            children: dict[str, set[str]] = {}
            for path in self.tree.paths():
                parent, _, name = path.rpartition("/")
                children.setdefault(parent, set()).add(name)
                while parent:
                    grand, _, pname = parent.rpartition("/")
                    siblings = children.setdefault(grand, set())
                    if pname in siblings:
                        break
                    siblings.add(pname)
                    parent = grand
            key = lambda n: n.encode("utf-8", "surrogateescape")  # noqa: E731
            self._children = {d: sorted(names, key=key) for d, names in children.items()}
        return self._children

    def _parent_dirs(self) -> set[str]:
        """Every directory that is a parent of an entry: as many as the tree has
        directories, where the children index holds every name (a closure asks whether
        `etc` exists of a million-entry image that has none, and lists no directory)."""
        if self._parents is None:
            parents: set[str] = set()
            for path in self.tree.paths():
                parent = path.rpartition("/")[0]
                while parent and parent not in parents:
                    parents.add(parent)
                    parent = parent.rpartition("/")[0]
            self._parents = parents
        return self._parents

    def kind(self, path: str) -> Kind | None:
        entry = self.tree.get(path) if path else None
        if entry is not None:
            return entry.kind
        return Kind.DIR if path == "" or path in self._parent_dirs() else None

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
        return list(self._index().get(path, ()))

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
        st = self._stat(path)
        if st is None:
            return None
        if stat.S_ISLNK(st.st_mode):
            return Kind.SYMLINK
        if stat.S_ISDIR(st.st_mode):
            return Kind.DIR
        # Devices, FIFOs and sockets cannot be loaded; a regular file is all ld.so opens.
        return Kind.FILE if stat.S_ISREG(st.st_mode) else None

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
        return sorted(names, key=os.fsencode)

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


@dataclass(frozen=True)
class Walk:
    """Where a path leads: the final path, its kind, and every symlink passed on the way."""

    path: str
    kind: Kind | None
    links: tuple[str, ...]


class PathWalker:
    """Resolves paths inside a Root like the kernel inside a chroot, with memoised prefixes."""

    def __init__(self, root: Root) -> None:
        self.root = root
        self._dirs: dict[str, tuple[str, tuple[str, ...]]] = {"": ("", ())}
        self._busy: set[str] = set()  # directories being resolved: seeing one again is a loop
        # The root does not change under a walker: each path is followed once (a closure
        # walks the same interpreter and libraries for every program).
        self._walks: dict[str, Walk] = {}

    def walk(self, path: str) -> Walk:
        """Follow `path` (canonical) to what it names. A symlink loop raises ElfError."""
        known = self._walks.get(path)
        if known is None:
            known = self._walks[path] = self._walk(path)
        return known

    def _walk(self, path: str) -> Walk:
        parent, _, name = path.rpartition("/")
        base, links = self._walk_dir(parent, path, 0) if parent else ("", ())
        current = f"{base}/{name}" if base else name
        hops = len(links)
        seen = list(links)
        while True:
            kind = self.root.kind(current)
            if kind is not Kind.SYMLINK:
                return Walk(current, kind, tuple(seen))
            hops += 1
            if hops > MAX_SYMLINK_HOPS:
                raise ElfError(f"too many levels of symbolic links resolving /{path}")
            seen.append(current)
            target = resolve_link_target(current, self.root.readlink(current))
            if not target:
                return Walk("", Kind.DIR, tuple(seen))
            tparent, _, tname = target.rpartition("/")
            base, more = self._walk_dir(tparent, path, hops) if tparent else ("", ())
            hops += len(more)
            seen.extend(more)
            current = f"{base}/{tname}" if base else tname

    def _walk_dir(self, directory: str, origin: str, hops: int) -> tuple[str, tuple[str, ...]]:
        """The physical path of a directory and the links passed; memoised per prefix."""
        known = self._dirs.get(directory)
        if known is not None:
            return known
        if directory in self._busy or hops > MAX_SYMLINK_HOPS:
            raise ElfError(f"too many levels of symbolic links resolving /{origin}")
        self._busy.add(directory)
        try:
            result = self._resolve_dir(directory, origin, hops)
        finally:
            self._busy.discard(directory)
        self._dirs[directory] = result
        return result

    def _resolve_dir(self, directory: str, origin: str, hops: int) -> tuple[str, tuple[str, ...]]:
        parent, _, name = directory.rpartition("/")
        base, links = self._walk_dir(parent, origin, hops) if parent else ("", ())
        current = f"{base}/{name}" if base else name
        seen = list(links)
        while self.root.kind(current) is Kind.SYMLINK:
            if hops + len(seen) >= MAX_SYMLINK_HOPS:
                raise ElfError(f"too many levels of symbolic links resolving /{origin}")
            seen.append(current)
            target = resolve_link_target(current, self.root.readlink(current))
            tparent, _, tname = target.rpartition("/")
            if not target:
                current = ""
                break
            tbase, more = self._walk_dir(tparent, origin, hops + len(seen)) if tparent else ("", ())
            seen.extend(more)
            current = f"{tbase}/{tname}" if tbase else tname
        return (current, tuple(seen))
