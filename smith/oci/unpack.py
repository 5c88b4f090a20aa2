"""Apply an image's layers, in order, to one FileTree, as a container runtime would.

Every layer is read once, as a stream: decompressed on the fly (gzip, zstd or plain tar,
told apart by their magic bytes, not by the media type, which docker-archives do not
state), hashed to check its diff_id, and each regular file's bytes appended to the layer's
pack file in a content store directory. The tree keeps only metadata and (pack, offset,
size), so memory does not grow with the image size; one pack per layer instead of one host
file per entry is what keeps this close to the cost of reading the layer at all.

Runtime semantics (those of containerd's and umoci's appliers):
- `.wh.NAME` removes NAME of the lower layers; `.wh..wh..opq` empties its directory of
  what the lower layers put there. Neither touches what the same layer adds.
- A non-directory replaces whatever was at its path; a directory replaces a non-directory
  but merges into an existing directory, whose metadata it takes.
- A hard link shares the inode of its target at the time it is applied: replacing the
  target later does not change the link's content.
- Devices, FIFOs and sockets are left out (a microcontainer carries none).

Hostile entries are refused with an error naming the layer and the entry: absolute names,
`..`, a write or whiteout through a symlink that leads out of the root, a hard link to
something that is not a regular file of the tree.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import queue
import stat
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, BinaryIO, cast

import zstandard

from smith import progress
from smith.errors import ImageFormatError, UnsafePathError
from smith.oci.layout import LoadedImage
from smith.oci.tarstream import Member, TarFormatError, TarStream
from smith.paths import climbs_out
from smith.tree import MAX_SYMLINK_HOPS, Entry, FileTree, HostSlice, InlineBytes, Kind

READ_SIZE = 1 << 20
PREFETCH = 4  # decompressed pieces of READ_SIZE waiting for the tar reader
WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
# No runtime can use a longer name (the kernel's PATH_MAX), and smith's tree walks go
# (recursively) one or two frames per directory level: a layer deeper than this is
# refused by name, not crashed on.
MAX_NAME_BYTES = 4096
MAX_DEPTH = 256
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class DecompressError(Exception):
    """The compressed stream of a layer is malformed or truncated."""


class LayerReader:
    """A read()-able stream of a layer's uncompressed tar that hashes what it yields.

    gzip may be several members in a row (smith itself writes them so); zstd several
    frames. Trailing zero bytes after the last gzip member are tolerated, as gzip does.
    After start(), decompression runs on a producer thread; read() raises its errors.
    """

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.hasher = hashlib.sha256()
        self.size = 0
        head = raw.read(4)
        self._pending = head
        self._buffer = bytearray()
        self._eof = False
        self._produced_eof = False
        self._gzip: zlib._Decompress | None = None
        self._zstd: zstandard.ZstdDecompressionReader | None = None
        self.compression = "none"
        if head.startswith(GZIP_MAGIC):
            self.compression = "gzip"
            self._gzip = zlib.decompressobj(31)
        elif head.startswith(ZSTD_MAGIC):
            self.compression = "zstd"
            self._zstd = zstandard.ZstdDecompressor().stream_reader(
                cast(IO[bytes], _Prefixed(head, raw)), read_size=READ_SIZE, read_across_frames=True
            )

    def _fill(self) -> bytes:
        """The next piece of uncompressed bytes (at most READ_SIZE), or b"" at the end."""
        if self._zstd is not None:
            try:
                return self._zstd.read(READ_SIZE)
            except zstandard.ZstdError as err:
                raise DecompressError(f"not a valid zstd stream ({err})") from None
        if self._gzip is not None:
            try:
                return self._fill_gzip(self._gzip)
            except zlib.error as err:
                raise DecompressError(f"not a valid gzip stream ({err})") from None
        data = self._pending or self._raw.read(READ_SIZE)
        self._pending = b""
        return data

    def _fill_gzip(self, d: zlib._Decompress) -> bytes:
        while not self._produced_eof:
            if d.eof:
                rest = d.unused_data or self._raw.read(READ_SIZE)
                if not rest.strip(b"\x00"):
                    self._check_zero_tail()
                    self._produced_eof = True
                    return b""
                if len(rest) < 2:
                    rest += self._raw.read(READ_SIZE)
                if not rest.startswith(GZIP_MAGIC):
                    raise DecompressError("garbage after the end of the gzip stream")
                d = self._gzip = zlib.decompressobj(31)
                data = rest
            else:
                data = d.unconsumed_tail or self._pending or self._raw.read(READ_SIZE)
                self._pending = b""
                if not data:
                    raise DecompressError("the gzip stream is truncated")
            # Bounded output: a small input can inflate to gigabytes (a file of zeros).
            out = d.decompress(data, READ_SIZE)
            if out:
                return out
        return b""

    def _check_zero_tail(self) -> None:
        """After the last gzip member only zero padding may follow."""
        while rest := self._raw.read(READ_SIZE):
            if rest.strip(b"\x00"):
                raise DecompressError("garbage after the end of the gzip stream")

    def start(self) -> None:
        """Decompress and hash on a second thread (zlib, zstd and sha256 release the GIL),
        so that it overlaps with tar parsing and file writing, as `tar -xz` overlaps gzip
        with tar. At most PREFETCH pieces wait in the queue: memory stays bounded."""
        self._queue: queue.Queue[bytes | BaseException] = queue.Queue(PREFETCH)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, daemon=True)
        self._thread.start()

    def _produce(self) -> None:
        try:
            while not self._stop.is_set():
                piece = self._fill()
                if piece:
                    self.hasher.update(piece)
                    self.size += len(piece)
                self._queue.put(piece)
                if not piece:
                    return
        except BaseException as err:  # handed to the reading thread, raised there
            self._queue.put(err)

    def close(self) -> None:
        """Stop the producer (after an error in the consumer), freeing what it queued."""
        self._stop.set()
        while self._thread.is_alive():
            with contextlib.suppress(queue.Empty):
                self._queue.get(timeout=0.05)
        self._thread.join()

    def read(self, size: int = -1) -> bytes:
        while not self._eof and (size < 0 or len(self._buffer) < size):
            piece = self._queue.get()
            if isinstance(piece, BaseException):
                self._eof = True
                raise piece
            if not piece:
                self._eof = True
                break
            self._buffer += piece
        if size < 0 or size >= len(self._buffer):
            data = bytes(self._buffer)
            self._buffer.clear()
        else:
            data = bytes(self._buffer[:size])
            del self._buffer[:size]
        return data

    def read_piece(self, _hint: int = 0) -> bytes:
        """The next decompressed piece, whatever its size (b"" at the end): no copying
        into a buffer for a reader that gathers pieces itself."""
        if self._buffer:
            data = bytes(self._buffer)
            self._buffer.clear()
            return data
        if self._eof:
            return b""
        piece = self._queue.get()
        if isinstance(piece, BaseException):
            self._eof = True
            raise piece
        if not piece:
            self._eof = True
        return piece

    def drain(self) -> None:
        """Read (and hash) whatever the tar reader left: the end-of-archive padding."""
        while self.read(READ_SIZE):
            pass


class _Prefixed:
    """A raw file whose first bytes were already read (to look at the magic)."""

    def __init__(self, head: bytes, raw: BinaryIO) -> None:
        self._head = head
        self._raw = raw

    def read(self, size: int = -1) -> bytes:
        if self._head:
            head, self._head = self._head, b""
            return head + self._raw.read(max(0, size - len(head)) if size >= 0 else -1)
        return self._raw.read(size)


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


class Applier:
    """The merged filesystem of the layers applied so far (path -> node, with a
    children index so whiteouts and replacements cost what they remove, not the tree)."""

    def __init__(self, store: str) -> None:
        self.store = store
        os.makedirs(store, exist_ok=True)
        self.nodes: dict[str, _Node] = {}
        self.children: dict[str, set[str]] = {"": set()}
        self.entries = 0
        self.files = 0
        self.special = 0
        self.bytes = 0
        self.pack_offset = 0

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
        parts = path.split("/")
        done: list[str] = []
        todo = parts[:-1]
        hops = 0
        while todo:
            part = todo.pop(0)
            current = "/".join([*done, part])
            node = self.nodes.get(current)
            if node is not None and node.kind is Kind.SYMLINK:
                hops += 1
                if hops > MAX_SYMLINK_HOPS:
                    raise UnsafePathError(
                        f"layer {layer}: entry {name!r}: too many levels of symbolic links"
                    )
                base = "/" if node.target.startswith("/") else "/" + "/".join(done)
                joined = posixpath.normpath(posixpath.join(base, node.target))
                if not node.target.startswith("/") and climbs_out(len(done), node.target):
                    raise UnsafePathError(
                        f"layer {layer}: entry {name!r} goes through the symlink "
                        f"{current!r} -> {node.target!r}, which leads out of the root"
                    )
                done = []
                todo = [p for p in joined.split("/") if p] + todo
                continue
            done.append(part)
        return "/".join([*done, parts[-1]])

    # -- one layer -----------------------------------------------------------------------

    def apply_layer(self, blob: str, layer: str, diff_id: str, index: int) -> None:
        added: set[str] = set()
        # Every file of the layer goes into one pack file, back to back (see HostSlice).
        pack_path = os.path.join(self.store, f"layer-{index}.pack")
        try:
            raw = open(blob, "rb")  # noqa: SIM115 - closed by the with below
        except FileNotFoundError:
            raise ImageFormatError(f"layer {layer}: blob is missing") from None
        self.pack_offset = 0
        with raw, open(pack_path, "wb", buffering=READ_SIZE) as pack:
            reader = LayerReader(raw)
            reader.start()
            try:
                stream = TarStream(reader.read_piece)
                for member in stream:
                    self.entries += 1
                    self._apply_member(stream, member, layer, pack, added)
                reader.drain()
            except DecompressError as err:
                raise ImageFormatError(f"layer {layer}: {err}") from None
            except TarFormatError as err:
                # Corrupt compressed data decodes to garbage before its CRC is checked:
                # read on, so that the root cause is what gets reported.
                try:
                    reader.drain()
                except DecompressError as cause:
                    raise ImageFormatError(f"layer {layer}: {cause}") from None
                raise ImageFormatError(f"layer {layer}: not a valid tar stream ({err})") from None
            finally:
                reader.close()
        self.bytes += reader.size
        actual = "sha256:" + reader.hasher.hexdigest()
        if diff_id and actual != diff_id:
            raise ImageFormatError(
                f"layer {layer}: uncompressed content has digest {actual}, "
                f"but the config's diff_id is {diff_id}"
            )

    def _apply_member(
        self,
        stream: TarStream,
        member: Member,
        layer: str,
        pack: BinaryIO,
        added: set[str],
    ) -> None:
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
            if node is None or node.kind is not Kind.FILE or node.inode is None:
                raise UnsafePathError(
                    f"layer {layer}: hard link {name!r} points to {member.linkname!r}, "
                    "which is not a regular file of the image"
                )
            if target == path:
                return
            self._insert(path, _Node(Kind.FILE, inode=node.inode, origin=origin))
        elif member.isreg():
            inode = self._store(stream, member, pack, origin)
            self._insert(path, _Node(Kind.FILE, inode=inode, origin=origin))
        else:
            self.special += 1  # device, FIFO, socket: a microcontainer carries none
            self._remove(path)
            return
        added.add(path)

    def _store(self, stream: TarStream, member: Member, pack: BinaryIO, origin: str) -> _Inode:
        mode = stat.S_IMODE(member.mode)
        content: HostSlice | InlineBytes
        if member.size == 0:
            content = InlineBytes(b"")
        else:
            self.files += 1
            # The offset is counted here: BufferedWriter.tell() costs a system call.
            offset = self.pack_offset
            for piece in stream.body():
                pack.write(piece)
            self.pack_offset += member.size
            content = HostSlice(pack.name, offset, member.size)
        return _Inode(content, member.size, mode, member.uid, member.gid, origin)

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


def canonical_member_name(name: str, layer: str, *, what: str = "entry") -> str:
    """A tar member name in canonical form; absolute names and `..` are hostile."""
    if name.startswith("/"):
        raise UnsafePathError(f"layer {layer}: {what} {name!r} is an absolute name")
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
