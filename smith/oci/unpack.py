"""Apply an image's layers, in order, to one FileTree, as a container runtime would.

Every layer is read once, as a stream, on the one layer-reading stack (smith.oci.layerread:
decompressed on the fly and hashed to check its diff_id; smith.oci.tarstream: the tar),
and each regular file's bytes appended to the layer's pack file in a content store
directory. The tree keeps only metadata and (pack, offset, size), so memory does not grow
with the image size; one pack per layer instead of one host file per entry is what keeps
this close to the cost of reading the layer at all. `smith diff` applies layers with the
same Applier, metadata only.

Runtime semantics (those of containerd's and umoci's appliers):
- `.wh.NAME` removes NAME of the lower layers; `.wh..wh..opq` empties its directory of
  what the lower layers put there. Neither touches what the same layer adds.
- A non-directory replaces whatever was at its path; a directory replaces a non-directory
  but merges into an existing directory, whose metadata it takes.
- A hard link shares the inode of its target at the time it is applied: replacing the
  target later does not change the link's content.
- Devices, FIFOs and sockets are left out (a microcontainer carries none).

Leniency is that of Go's archive/tar and containerd, which read the layers real tools
write: absolute names (`tar -P`, some importers) and umoci's `/` entry are mapped into the
root; a hard link to a symlink is a second symlink with the same target (what link(2)
makes on Linux). Hostile entries are refused with an error naming the layer and the entry:
`..`, a write or whiteout through a symlink that leads out of the root, a hard link to
something that is neither a regular file nor a symlink of the tree.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from smith import progress
from smith.errors import ImageFormatError, SmithError, UnsafePathError
from smith.links import LinkResolver
from smith.oci.layerread import READ_SIZE, DecompressError, LayerReader, open_blob
from smith.oci.layout import LoadedImage
from smith.oci.tarstream import Member, TarFormatError, TarStream
from smith.paths import climbs_out
from smith.tree import Entry, FileTree, HostSlice, InlineBytes, Kind

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
# No runtime can use a longer name (the kernel's PATH_MAX), and smith's tree walks go
# (recursively) one or two frames per directory level: a layer deeper than this is
# refused by name, not crashed on.
MAX_NAME_BYTES = 4096
MAX_DEPTH = 256


@dataclass
class _Inode:
    """File content shared by hard-linked names: replacing one name never changes another."""

    content: HostSlice | InlineBytes
    size: int
    mode: int
    uid: int
    gid: int
    origin: str


@dataclass
class _Node:
    kind: Kind  # DIR, FILE or SYMLINK: hard links are FILE nodes sharing an inode
    mode: int = 0o755
    uid: int = 0
    gid: int = 0
    target: str = ""
    inode: _Inode | None = None
    origin: str = ""


@dataclass(frozen=True)
class UnpackStats:
    layers: int
    entries: int  # tar members read, all layers together
    bytes: int  # uncompressed tar bytes read
    files: int  # regular files written to the content store
    skipped_special: int  # devices, FIFOs, sockets left out


class _Loop(SmithError):
    """Too many levels of links: _resolve_parent names the layer and entry."""


class _Escape(SmithError):
    def __init__(self, link: str, target: str) -> None:
        super().__init__(link)
        self.link, self.target = link, target


def _refuse_escape(link: str, target: str) -> None:
    # The kernel clamps `..` at the root, but a layer that climbs out is hostile or broken.
    if not target.startswith("/") and climbs_out(link.count("/"), target):
        raise _Escape(link, target)


class Applier:
    """The merged filesystem of the layers applied so far (path -> node, with a
    children index so whiteouts and replacements cost what they remove, not the tree)."""

    def __init__(self, store: str | None) -> None:
        """`store`: where file contents go; None checks and tracks metadata only (diff)."""
        self.store = store
        if store is not None:
            os.makedirs(store, exist_ok=True)
        self.nodes: dict[str, _Node] = {}
        self.children: dict[str, set[str]] = {"": set()}
        self.links = LinkResolver(self._is_link, self._readlink, _Loop, _refuse_escape)
        self.entries = 0
        self.files = 0
        self.special = 0
        self.bytes = 0
        self.pack_offset = 0
        # Each entry costs this tree about a kilobyte and the closure, conventions and writer
        # their share of time: a million-entry layer ran for minutes in 400 MB. All layers
        # together are bounded.
        from smith.limits import LAYER_ENTRIES

        self.entry_limit = LAYER_ENTRIES
        self.max_entries = LAYER_ENTRIES.count()

    # -- tree operations -----------------------------------------------------------------

    def _remove(self, path: str, keep: set[str] | None = None) -> None:
        """Remove `path` and what is below it, except the paths in `keep` (the current
        layer's own additions, which a whiteout never hides)."""
        if keep is not None and path in keep:
            node = self.nodes.get(path)
            if node is not None and node.kind is Kind.DIR:
                for child in list(self.children.get(path, ())):
                    self._remove(child, keep)
            return
        node = self.nodes.pop(path, None)
        if node is None:
            return
        if node.kind in (Kind.SYMLINK, Kind.DIR):
            self.links.forget()  # a link, or a directory with links below it, is gone
        if node.kind is Kind.DIR:
            for child in list(self.children.pop(path, ())):
                self._remove(child, None)
        parent = posixpath.dirname(path)
        self.children.get(parent, set()).discard(path)

    def _insert(self, path: str, node: _Node) -> None:
        existing = self.nodes.get(path)
        if existing is not None:
            if existing.kind is Kind.DIR and node.kind is Kind.DIR:
                existing.mode, existing.uid, existing.gid = node.mode, node.uid, node.gid
                existing.origin = node.origin
                return
            self._remove(path)
        if node.kind is Kind.SYMLINK:
            self.links.forget()
        self.nodes[path] = node
        self.children.setdefault(posixpath.dirname(path), set()).add(path)
        if node.kind is Kind.DIR:
            self.children.setdefault(path, set())

    def _ensure_parents(self, path: str, origin: str) -> None:
        """Create missing parents as runtimes do (0755 root), replacing non-directories."""
        parts = path.split("/")[:-1]
        current = ""
        for part in parts:
            current = f"{current}/{part}" if current else part
            node = self.nodes.get(current)
            if node is None or node.kind is not Kind.DIR:
                self._insert(current, _Node(Kind.DIR, 0o755, origin=origin))

    def _resolve_parent(self, path: str, layer: str, name: str) -> str:
        """`path` with its parent directories resolved through the tree's symlinks, as a
        runtime's scoped join does; refused when a symlink would lead out of the root."""
        try:
            return self.links.walk(path, follow_last=False).path
        except _Loop:
            raise UnsafePathError(
                f"layer {layer}: entry {name!r}: too many levels of symbolic links"
            ) from None
        except _Escape as err:
            raise UnsafePathError(
                f"layer {layer}: entry {name!r} goes through the symlink "
                f"{err.link!r} -> {err.target!r}, which leads out of the root"
            ) from None

    def _is_link(self, path: str) -> bool:
        node = self.nodes.get(path)
        return node is not None and node.kind is Kind.SYMLINK

    def _readlink(self, path: str) -> str:
        return self.nodes[path].target

    # -- one layer -----------------------------------------------------------------------

    def apply_layer(self, blob: str, layer: str, diff_id: str, index: int) -> None:
        assert self.store is not None
        added: set[str] = set()
        # Every file of the layer goes into one pack file, back to back (see HostSlice).
        pack_path = os.path.join(self.store, f"layer-{index}.pack")
        self.pack_offset = 0
        with (
            open_blob(blob, f"layer {layer}", threaded=True) as reader,
            open(pack_path, "wb", buffering=READ_SIZE) as pack,
        ):
            stream = TarStream(reader.read_piece)

            def store(member: Member) -> HostSlice | InlineBytes:
                return self._store(stream, member, pack)

            with layer_errors(reader, f"layer {layer}"):
                for member in stream:
                    self.apply_member(member, layer, added, store)
                reader.drain()
        self.bytes += reader.size
        check_diff_id(reader.digest(), layer, diff_id)

    def apply_member(
        self,
        member: Member,
        layer: str,
        added: set[str],
        store: Callable[[Member], HostSlice | InlineBytes],
    ) -> None:
        """Apply one entry; `store` gives a regular file's content (reading its body).
        `added`: what this layer added so far (a whiteout never hides it)."""
        self.entries += 1
        if self.entries > self.max_entries:
            raise self.entry_limit.error(f"layer {layer}: entries of the image's layers")
        name = member.name
        path = canonical_member_name(name, layer)
        if not path:
            if member.isdir():
                return  # "./": the root itself, whose metadata a runtime keeps
            raise UnsafePathError(f"layer {layer}: entry {name!r} names the root")
        path = self._resolve_parent(path, layer, name)
        check_depth(path, name, layer)  # through symlinks, a short name can lead deep
        if any(part.startswith(WHITEOUT) for part in path.split("/")[:-1]):
            # A whiteout name is a marker, never a directory a layer may put things in.
            raise UnsafePathError(f"layer {layer}: entry {name!r} is below a whiteout name")
        base = posixpath.basename(path)
        parent = posixpath.dirname(path)
        if base.startswith(WHITEOUT):
            if parent:
                parent_node = self.nodes.get(parent)
                if parent_node is not None and parent_node.kind is not Kind.DIR:
                    raise UnsafePathError(
                        f"layer {layer}: whiteout {name!r} is below {parent!r}, "
                        "which is not a directory"
                    )
            if base == OPAQUE:
                for child in list(self.children.get(parent, ())):
                    self._remove(child, added)
            else:
                hidden = base[len(WHITEOUT) :]
                if hidden in ("", ".", "..") or hidden.startswith(WHITEOUT):
                    raise UnsafePathError(f"layer {layer}: whiteout {name!r} names no valid entry")
                self._remove(f"{parent}/{hidden}" if parent else hidden, added)
            return
        origin = layer
        self._ensure_parents(path, origin)
        if member.isdir():
            mode = stat.S_IMODE(member.mode)
            self._insert(path, _Node(Kind.DIR, mode, member.uid, member.gid, origin=origin))
        elif member.issym():
            self._insert(
                path,
                _Node(Kind.SYMLINK, 0o777, member.uid, member.gid, member.linkname, None, origin),
            )
        elif member.islnk():
            target = canonical_member_name(member.linkname, layer, what="hard link target")
            target = self._resolve_parent(target, layer, name) if target else target
            node = self.nodes.get(target)
            if node is not None and node.kind is Kind.SYMLINK:
                # link(2) on a symlink links the symlink itself (GNU tar writes these and
                # docker imports them): a second symlink with the same target and owner.
                if target != path:
                    link = _Node(Kind.SYMLINK, 0o777, node.uid, node.gid, node.target, None, origin)
                    self._insert(path, link)
                added.add(path)
                return
            if node is None or node.kind is not Kind.FILE or node.inode is None:
                raise UnsafePathError(
                    f"layer {layer}: hard link {name!r} points to {member.linkname!r}, "
                    "which is not a regular file or symlink of the image"
                )
            if target == path:
                return
            self._insert(path, _Node(Kind.FILE, inode=node.inode, origin=origin))
        elif member.isreg():
            mode = stat.S_IMODE(member.mode)
            inode = _Inode(store(member), member.size, mode, member.uid, member.gid, origin)
            self._insert(path, _Node(Kind.FILE, inode=inode, origin=origin))
        else:
            self.special += 1  # device, FIFO, socket: a microcontainer carries none
            self._remove(path)
            return
        added.add(path)

    def _store(self, stream: TarStream, member: Member, pack: BinaryIO) -> HostSlice | InlineBytes:
        if member.size == 0:
            return InlineBytes(b"")
        self.files += 1
        # The offset is counted here: BufferedWriter.tell() costs a system call.
        offset = self.pack_offset
        for piece in stream.body():
            pack.write(piece)
        self.pack_offset += member.size
        return HostSlice(pack.name, offset, member.size)

    # -- the result ----------------------------------------------------------------------

    def tree(self) -> FileTree:
        """The merged tree; names sharing an inode become one FILE and HARDLINKs to the
        first name in bytewise order (the writer's convention)."""
        tree = FileTree()
        groups: dict[int, list[str]] = {}
        for path, node in self.nodes.items():
            if node.kind is Kind.FILE and node.inode is not None:
                groups.setdefault(id(node.inode), []).append(path)
        first: dict[int, str] = {}
        for key, names in groups.items():
            first[key] = min(names, key=lambda p: p.encode("utf-8", "surrogateescape"))
        for path, node in self.nodes.items():
            if node.kind is Kind.DIR:
                tree.add(Entry(path, Kind.DIR, node.mode, node.uid, node.gid, origin=node.origin))
            elif node.kind is Kind.SYMLINK:
                tree.add(
                    Entry(
                        path,
                        Kind.SYMLINK,
                        0o777,
                        node.uid,
                        node.gid,
                        target=node.target,
                        origin=node.origin,
                    )
                )
            else:
                inode = node.inode
                assert inode is not None
                carrier_path = first[id(inode)]
                kind = Kind.FILE if carrier_path == path else Kind.HARDLINK
                is_file = kind is Kind.FILE
                tree.add(
                    Entry(
                        path,
                        kind,
                        inode.mode,
                        inode.uid,
                        inode.gid,
                        size=inode.size if is_file else 0,
                        target="" if is_file else carrier_path,
                        content=inode.content if is_file else None,
                        origin=inode.origin if is_file else node.origin,
                    )
                )
        return tree

    def stats(self, layers: int) -> UnpackStats:
        return UnpackStats(layers, self.entries, self.bytes, self.files, self.special)


@contextlib.contextmanager
def layer_errors(reader: LayerReader, what: str) -> Iterator[None]:
    """A blob's decompression and tar errors as one ImageFormatError naming it (`what`)."""
    try:
        yield
    except DecompressError as err:
        raise ImageFormatError(f"{what}: {err}") from None
    except TarFormatError as err:
        # Corrupt compressed data decodes to garbage before its CRC is checked:
        # read on, so that the root cause is what gets reported.
        try:
            reader.drain()
        except DecompressError as cause:
            raise ImageFormatError(f"{what}: {cause}") from None
        raise ImageFormatError(f"{what}: not a valid tar stream ({err})") from None


def check_diff_id(actual: str, layer: str, diff_id: str) -> None:
    if diff_id and actual != diff_id:
        raise ImageFormatError(
            f"layer {layer}: uncompressed content has digest {actual}, "
            f"but the config's diff_id is {diff_id}"
        )


def canonical_member_name(name: str, layer: str, *, what: str = "entry") -> str:
    """A tar member name in canonical form. An absolute name is mapped into the root, as
    GNU tar, docker and containerd do (umoci writes the root itself as `/`); `..` is hostile
    wherever it appears, even where it would stay inside the root (a later symlink could
    make it leave)."""
    if "\x00" in name:
        raise UnsafePathError(f"layer {layer}: {what} {name!r} contains a NUL byte")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafePathError(f"layer {layer}: {what} {name!r} climbs out of the root")
    canonical = "/".join(parts)
    check_depth(canonical, name, layer, what)
    return canonical


def check_depth(path: str, name: str, layer: str, what: str = "entry") -> None:
    """`path` (the canonical or symlink-resolved form of `name`) within MAX_NAME_BYTES and
    MAX_DEPTH."""
    size = len(path.encode("utf-8", "surrogateescape"))
    depth = path.count("/") + 1
    if size > MAX_NAME_BYTES or depth > MAX_DEPTH:
        shown = repr(name) if len(name) <= 60 else repr(name[:60]) + "..."
        raise ImageFormatError(
            f"layer {layer}: {what} {shown} is {size} bytes, {depth} levels deep "
            f"(at most {MAX_NAME_BYTES} bytes and {MAX_DEPTH} levels)"
        )


def layer_names(image: LoadedImage) -> Iterator[tuple[int, str, str, str]]:
    for index, (desc, diff_id) in enumerate(zip(image.layers, image.diff_ids, strict=True)):
        yield index, desc.digest, diff_id, image.blob_path(desc.digest)


def apply_layers(image: LoadedImage, store: str) -> tuple[FileTree, UnpackStats]:
    """The flattened filesystem of `image`; regular files' bytes go under `store`."""
    applier = Applier(store)
    with progress.meter(sum(desc.size for desc in image.layers)):
        for index, digest, diff_id, blob in layer_names(image):
            applier.apply_layer(blob, f"{index + 1} ({digest})", diff_id, index)
            progress.advance(image.layers[index].size)  # by layer: a bar, not a hot loop
    return applier.tree(), applier.stats(len(image.layers))
