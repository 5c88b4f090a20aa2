"""Apply an image's layers, in order, to one FileTree, as a container runtime would.

Every layer is read once, as a stream, on the one layer-reading stack (smith.oci.layerread:
decompressed on the fly and hashed to check its diff_id and blob digest;
smith.oci.tarstream: the tar), and each regular file's bytes appended to the layer's pack
file in a content store directory. The tree keeps only metadata and (pack, offset, size),
so memory does not grow with the image size; one pack per layer instead of one host file
per entry is what keeps this close to the cost of reading the layer at all. With a
PackRule (minimize), a large file that can hardly be kept is not copied at all: the tree
records where it is in the layer, to be read again if it is kept after all
(smith.oci.layerspan). `smith diff` applies layers with the same Applier, metadata only.

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
from dataclasses import dataclass, replace
from itertools import chain
from typing import BinaryIO

from smith import progress
from smith.diskspace import SpaceBudget, writing_in
from smith.entrytable import EntryTable
from smith.errors import ImageFormatError, SmithError, UnsafePathError
from smith.limits import expansion_bound
from smith.links import LinkResolver
from smith.oci.compress import Compression
from smith.oci.layerread import READ_SIZE, DecompressError, LayerReader
from smith.oci.layerspan import GzipSpans
from smith.oci.loaded import LoadedImage, LoadedLayer
from smith.oci.tarstream import Member, TarFormatError, TarStream
from smith.paths import MAX_DEPTH, MAX_NAME_BYTES, climbs_out
from smith.tree import Content, Entry, FileTree, HostSlice, InlineBytes, Kind, LayerSpan

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"


ELF_MAGIC = b"\x7fELF"
SCRIPT_MAGIC = b"#!"
# Read whatever the image is, or kept by rules that look at no file's bytes first: the
# accounts and loader configuration (etc/), the package databases (--package-db, SBOMs,
# --layers packages).
ALWAYS_PACKED = ("etc/", "var/lib/dpkg/", "var/lib/rpm/", "usr/lib/sysimage/")


@dataclass(frozen=True)
class PackRule:
    """Which regular files of a layer minimize copies into the pack file as it reads the
    layer: those it may read or keep. The others are left in the layer (their bytes read
    again if they are kept after all: smith.oci.layerspan), so this rule decides how much
    is copied, never what the output holds. Copied: every file under `small` bytes (a
    copy costs less than a record of where it is), ELF files and scripts (the closure
    reads them: told by their first bytes), and every path under one of `prefixes` (the
    literal beginnings of the paths the user names) or ALWAYS_PACKED."""

    prefixes: tuple[str, ...] = ()
    small: int = 64 << 10

    def names(self, path: str) -> bool:
        return path.startswith(ALWAYS_PACKED) or path.startswith(self.prefixes)


def literal_prefix(pattern: str) -> str:
    """What every path a glob or directory pattern matches starts with ("" for `**`)."""
    cut = min((i for i, c in enumerate(pattern) if c in "*?[{\\"), default=len(pattern))
    return pattern[:cut].lstrip("/")


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
    """The merged filesystem of the layers applied so far, kept in the EntryTable that
    becomes the result's tree (one compact row per path: a million-entry layer is not a
    million objects). Hard-linked names are rows with the same content, tracked by inode
    number; the children index that makes whiteouts and replacements cost what they remove
    is made only when a layer first removes a directory."""

    def __init__(self, store: str | None, rule: PackRule | None = None) -> None:
        """`store`: where file contents go; None checks and tracks metadata only (diff).
        `rule`: which files to copy there (None: all)."""
        self.store = store
        self.rule = rule
        # The current layer's source of spans: a gzip layer's checkpoints, or the path of
        # an uncompressed blob (its tar: a span is a slice of the blob itself).
        self.spans: GzipSpans | str | None = None
        self.copied = 0  # bytes copied into pack files
        if store is not None:
            os.makedirs(store, exist_ok=True)
        self.table = EntryTable()
        self._kids: dict[str, set[str]] | None = None
        self.linked: dict[str, int] = {}  # path -> inode number, for hard-linked names
        self.inode_origin: dict[int, str] = {}  # the layer that wrote a linked inode
        # Which paths the current layer added (a whiteout never hides them): the table's
        # mark, plus those it added and then removed or replaced again (rare).
        self.layer_mark = 0
        self.gone_added: set[str] = set()
        self.links = LinkResolver(self._is_link, self._readlink, _Loop, _refuse_escape)
        self.entries = 0
        self.files = 0
        self.special = 0
        self.bytes = 0
        self.pack_offset = 0
        # Each entry costs this tree ~180 bytes (smith/entrytable.py) and the closure,
        # conventions and writer their share of time. All layers together are bounded.
        from smith.limits import LAYER_ENTRIES

        self.entry_limit = LAYER_ENTRIES
        self.max_entries = LAYER_ENTRIES.count()

    def begin_layer(self, index: int) -> None:
        # Marks are 16 bits: layers 65535 apart share one, which could only make a whiteout
        # spare an entry of a layer that many layers below (never a path outside the root).
        self.layer_mark = index % 0xFFFF + 1
        self.gone_added = set()

    # -- tree operations -----------------------------------------------------------------

    def _added(self, path: str) -> bool:
        return self.table.marked(path) == self.layer_mark or path in self.gone_added

    def _note_added(self, path: str) -> None:
        if path in self.table:
            self.table.mark(path, self.layer_mark)
        else:
            self.gone_added.add(path)

    def _children(self, path: str) -> set[str]:
        if self._kids is None:
            kids: dict[str, set[str]] = {"": set()}
            for name in self.table:
                kids.setdefault(posixpath.dirname(name), set()).add(name)
            self._kids = kids
        return self._kids.get(path, set())

    def _remove(self, path: str, keep: bool = False) -> None:
        """Remove `path` and what is below it; with `keep`, except the current layer's
        own additions, which a whiteout never hides."""
        kind = self.table.kind(path)
        if keep and self._added(path):
            if kind is Kind.DIR:
                for child in list(self._children(path)):
                    self._remove(child, keep)
            return
        if kind is None:
            return
        if self.table.marked(path) == self.layer_mark:
            self.gone_added.add(path)
        if kind in (Kind.SYMLINK, Kind.DIR):
            self.links.forget()  # a link, or a directory with links below it, is gone
        if kind is Kind.DIR:
            self._children(path)  # the index, made now if need be
            assert self._kids is not None
            for child in list(self._kids.pop(path, ())):
                self._remove(child, False)
        del self.table[path]
        self.linked.pop(path, None)
        if self._kids is not None:
            self._kids.get(posixpath.dirname(path), set()).discard(path)

    def _insert(self, path: str, entry: Entry, added: int = 0) -> None:
        """Put `entry` at `path`; with `added` (the layer's mark), noted as this layer's."""
        existing = self.table.kind(path)
        if existing is not None:
            if existing is Kind.DIR and entry.kind is Kind.DIR:
                # Merged: the directory takes the new metadata.
                self.table.put(path, entry, added or self.table.marked(path))
                return
            self._remove(path)
        if entry.kind is Kind.SYMLINK:
            self.links.forget()
        self.table.put(path, entry, added)
        if self._kids is not None:
            self._kids.setdefault(posixpath.dirname(path), set()).add(path)
            if entry.kind is Kind.DIR:
                self._kids.setdefault(path, set())

    def _ensure_parents(self, path: str, origin: str) -> None:
        """Create missing parents as runtimes do (0755 root), replacing non-directories."""
        if self._in_directory(path):
            return
        parts = path.split("/")[:-1]
        current = ""
        for part in parts:
            current = f"{current}/{part}" if current else part
            if self.table.kind(current) is not Kind.DIR:
                self._insert(current, Entry(current, Kind.DIR, 0o755, origin=origin))

    def _in_directory(self, path: str) -> bool:
        """Whether `path`'s parent is a directory of the tree, and so are all of its own
        (every path was put in at its resolved place, below directories made then, and a
        directory's removal or replacement removes what is below it): no link between
        the root and `path`'s name."""
        parent = path.rpartition("/")[0]
        return not parent or self.table.kind(parent) is Kind.DIR

    def _resolve_parent(self, path: str, layer: str, name: str) -> str:
        """`path` with its parent directories resolved through the tree's symlinks, as a
        runtime's scoped join does; refused when a symlink would lead out of the root."""
        if self._in_directory(path):
            # Nearly every entry: the one lookup of its parent, not a walk whose memo
            # would keep a string and a tuple per directory of a million-entry tree.
            return path
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
        return self.table.kind(path) is Kind.SYMLINK

    def _readlink(self, path: str) -> str:
        return self.table[path].target

    # -- one layer -----------------------------------------------------------------------

    def apply_layer(self, loaded: LoadedLayer) -> None:
        assert self.store is not None
        self.begin_layer(loaded.index)
        layer = loaded.name
        # Every file of the layer goes into one pack file, back to back (see HostSlice).
        pack_path = os.path.join(self.store, f"layer-{loaded.index}.pack")
        self.pack_offset = 0
        spans = self.rule is not None and loaded.compression() is Compression.GZIP
        # Each file's size is declared by its header: checked against the free space before
        # its bytes are written (a layer's uncompressed size is known only once read).
        most = expansion_bound(loaded.size)[0]
        self.space = SpaceBudget(self.store, f"the files of layer {layer}", most)
        with (
            writing_in(self.store),
            loaded.open(threaded=True, checkpoints=spans) as reader,
            open(pack_path, "wb", buffering=READ_SIZE) as pack,
        ):
            self.spans = None
            if spans:
                spill = os.path.join(self.store, f"layer-{loaded.index}.spill")
                self.spans = GzipSpans(loaded.unchecked_path, f"layer {layer}", spill)
                assert reader.checkpoints is not None
                self.spans.checkpoints = reader.checkpoints  # filled as the layer is read
            elif self.rule is not None and reader.compression is Compression.NONE:
                self.spans = loaded.unchecked_path  # checked by this pass, as it is read
            stream = TarStream(reader.read_piece)

            def store(member: Member, path: str) -> Content:
                return self._store(stream, member, path, pack)

            with layer_errors(reader, f"layer {layer}"):
                for member in stream:
                    self.apply_member(member, layer, store)
                reader.drain()
        self.spans = None
        self.bytes += reader.size
        check_diff_id(reader.digest(), layer, loaded.diff_id)

    def apply_member(
        self, member: Member, layer: str, store: Callable[[Member, str], Content]
    ) -> None:
        """Apply one entry of the layer begun last (begin_layer); `store` gives a regular
        file's content (reading its body), given the member and its path in the tree."""
        self.entries += 1
        if self.entries > self.max_entries:
            raise self.entry_limit.error(f"layer {layer}: entries of the image's layers")
        name = member.name
        path = canonical_member_name(name, layer)
        if not path:
            if member.isdir():
                return  # "./": the root itself, whose metadata a runtime keeps
            raise UnsafePathError(f"layer {layer}: entry {name!r} names the root")
        in_directory = self._in_directory(path)  # nearly always: no link to resolve
        if not in_directory:
            path = self._resolve_parent(path, layer, name)
            check_depth(path, name, layer)  # through symlinks, a short name can lead deep
        parent, _, base = path.rpartition("/")
        if parent.startswith(WHITEOUT) or "/" + WHITEOUT in parent:
            # A whiteout name is a marker, never a directory a layer may put things in.
            raise UnsafePathError(f"layer {layer}: entry {name!r} is below a whiteout name")
        if base.startswith(WHITEOUT):
            if parent:
                parent_kind = self.table.kind(parent)
                if parent_kind is not None and parent_kind is not Kind.DIR:
                    raise UnsafePathError(
                        f"layer {layer}: whiteout {name!r} is below {parent!r}, "
                        "which is not a directory"
                    )
            if base == OPAQUE:
                for child in list(self._children(parent)):
                    self._remove(child, keep=True)
            else:
                hidden = base[len(WHITEOUT) :]
                if hidden in ("", ".", "..") or hidden.startswith(WHITEOUT):
                    raise UnsafePathError(f"layer {layer}: whiteout {name!r} names no valid entry")
                self._remove(f"{parent}/{hidden}" if parent else hidden, keep=True)
            return
        origin = layer
        if not in_directory:
            self._ensure_parents(path, origin)
        uid, gid = member.uid, member.gid
        added = self.layer_mark
        if member.isdir():
            mode = stat.S_IMODE(member.mode)
            self._insert(path, Entry(path, Kind.DIR, mode, uid, gid, origin=origin), added)
        elif member.issym():
            link = Entry(path, Kind.SYMLINK, 0o777, uid, gid, target=member.linkname, origin=origin)
            self._insert(path, link, added)
        elif member.islnk():
            target = canonical_member_name(member.linkname, layer, what="hard link target")
            target = self._resolve_parent(target, layer, name) if target else target
            node = self.table.get(target)
            if node is not None and node.kind is Kind.SYMLINK:
                # link(2) on a symlink links the symlink itself (GNU tar writes these and
                # docker imports them): a second symlink with the same target and owner.
                if target != path:
                    self._insert(path, replace(node, path=path, origin=origin), added)
                else:
                    self._note_added(path)
                return
            if node is None or node.kind is not Kind.FILE:
                raise UnsafePathError(
                    f"layer {layer}: hard link {name!r} points to {member.linkname!r}, "
                    "which is not a regular file or symlink of the image"
                )
            if target == path:
                return
            inode = self.linked.get(target)
            if inode is None:
                inode = self.linked[target] = len(self.inode_origin)
                self.inode_origin[inode] = node.origin
            # The same content, mode and owner: what the inode has, whatever later
            # happens to the other name.
            self._insert(path, replace(node, path=path, origin=origin), added)
            self.linked[path] = inode
        elif member.isreg():
            mode = stat.S_IMODE(member.mode)
            content = store(member, path)
            entry = Entry(path, Kind.FILE, mode, uid, gid, member.size, "", content, origin)
            self._insert(path, entry, added)
        else:
            self.special += 1  # device, FIFO, socket: a microcontainer carries none
            self._remove(path)

    def _store(self, stream: TarStream, member: Member, path: str, pack: BinaryIO) -> Content:
        if member.size == 0:
            return InlineBytes(b"")
        self.files += 1
        offset = stream.offset  # where the body starts in the layer's tar
        body: Iterator[memoryview | bytes] = stream.body()
        spans, rule = self.spans, self.rule
        if (
            spans is not None
            and rule is not None
            and member.size >= rule.small
            and not rule.names(path)
        ):
            held, head = first_bytes(body)
            if not head.startswith((ELF_MAGIC, SCRIPT_MAGIC)):
                stream.skip_body()
                if isinstance(spans, str):
                    return HostSlice(spans, offset, member.size)
                return LayerSpan(spans, offset, member.size)
            body = chain(held, body)
        self.space.claim(member.size)  # what is written only: a file left in the layer is not
        # The offset is counted here: BufferedWriter.tell() costs a system call.
        start = self.pack_offset
        for piece in body:
            pack.write(piece)
        self.pack_offset += member.size
        self.copied += member.size
        return HostSlice(pack.name, start, member.size)

    # -- the result ----------------------------------------------------------------------

    def tree(self) -> FileTree:
        """The merged tree; names sharing an inode become one FILE and HARDLINKs to the
        first name in bytewise order (the writer's convention). The applier is used up:
        its table becomes the tree's."""
        groups: dict[int, list[str]] = {}
        for path, inode in self.linked.items():
            groups.setdefault(inode, []).append(path)
        for inode, names in groups.items():
            carrier = min(names, key=lambda p: p.encode("utf-8", "surrogateescape"))
            for name in names:
                entry = self.table[name]
                if name == carrier:
                    self.table[name] = replace(entry, origin=self.inode_origin[inode])
                else:
                    self.table[name] = Entry(
                        name, Kind.HARDLINK, entry.mode, entry.uid, entry.gid,
                        target=carrier, origin=entry.origin,
                    )  # fmt: skip
        self._kids = None
        return FileTree(self.table)

    def stats(self, layers: int) -> UnpackStats:
        return UnpackStats(layers, self.entries, self.bytes, self.files, self.special)


def first_bytes(
    body: Iterator[memoryview | bytes],
) -> tuple[list[memoryview | bytes], bytes]:
    """The pieces of a body (of 4 bytes or more) that hold its first 4 bytes (one, nearly
    always), and those bytes; the body goes on after the pieces."""
    held: list[memoryview | bytes] = []
    head = b""
    for piece in body:
        head += bytes(piece[: 4 - len(head)])
        if len(head) >= 4:
            held.append(piece)
            break
        held.append(bytes(piece))  # a view lasts only until the next piece
    return held, head


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


def apply_layers(
    image: LoadedImage, store: str, rule: PackRule | None = None
) -> tuple[FileTree, UnpackStats]:
    """The flattened filesystem of `image`; regular files' bytes go under `store` (those
    `rule` names, with one; every file without)."""
    applier = Applier(store, rule)
    with progress.meter(image.compressed_size):
        for layer in image.layers:
            applier.apply_layer(layer)
            progress.advance(layer.size)  # by layer: a bar, not a hot loop
    return applier.tree(), applier.stats(len(image.layers))
