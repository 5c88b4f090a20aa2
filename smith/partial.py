"""Partial cache hits: a build whose packages mostly match an earlier build's extracts only
the packages that changed.

A build records its *listing*: every entry its packages put in the tree (path, kind, mode,
owner, size, link target, content sha256, package), each package's dependencies as layer
ordering reads them, and the paths two packages both ship as files. A later build of the
same recipe and settings (the same *family*: the build key without packages and rootfs/)
rebuilds that tree from the listing instead of fetching and extracting every package: the
packages that changed are extracted and merged into it exactly as a cold build would have
added them, the others' files take their bytes from the content store (which the cached
layers fill: the files that were kept are the ones a layer holds). A file whose bytes are
in no cached layer is there by name, size and digest only (`Unfetched`): listing a
directory, resolving a symlink or matching a glob sees the very tree a cold build sees, and
anything that needs such a file's bytes (the closure opening a new library, a kept file
that no layer held) stops the partial build, which then runs whole. The rest of the build
(closure, conventions, layers, writer) runs unchanged over that tree, so the image is the
cold build's, byte for byte; the unchanged layers' keys match and their blobs come from the
layer cache (filled from the registry on a machine that never built them).

Whenever the merge cannot be sure to give the cold build's tree (another package order, a
changed package sharing a file with another, a path through another package's symlink, a
directory it no longer ships), it refuses with NotReusable and the build runs whole.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO

from smith.buildkey import BUILDKEY_VERSION, BuildInputs, PackagePin, canonical, smith_digest
from smith.errors import SmithError
from smith.layering import PackageDeps
from smith.paths import normalize_path, parent_paths
from smith.tree import Entry, FileTree, HostFile, Kind

if TYPE_CHECKING:
    from smith.resolve.rpm import RpmPackage
    from smith.resolve.solver import ResolvedPackage
    from smith.resolve.store import ContentStore, Sink

log = logging.getLogger(__name__)

LISTING_VERSION = 1
KINDS = {k.value: k for k in Kind}
HEX = "0123456789abcdef"
INLINE_FILE = 4096  # the etc/ files whose bytes a listing carries: each at most this,
INLINE_TOTAL = 256 << 10  # and all at most this


class NotReusable(Exception):
    """The earlier build cannot stand in for part of this one (the message says why)."""


@dataclass(frozen=True, slots=True)
class Unfetched(HostFile):
    """A file of an unchanged package whose bytes no cached layer holds: its digest is
    known (layer keys need no more), its bytes are not."""

    def open(self) -> BinaryIO:
        # `path` names the tree's path (there is no host file): for this message only.
        raise NotReusable(f"{self.path} is needed now, and its bytes are in no cached layer")


def family_key(inputs: BuildInputs) -> str:
    """The build key without its packages and rootfs/: builds of one recipe with the same
    settings, whatever their packages' versions and application files."""
    doc = {
        "version": BUILDKEY_VERSION,
        "family": LISTING_VERSION,
        "smith": smith_digest(),
        "recipe": inputs.recipe_sha256,
        "settings": dict(inputs.settings),
        **({"named": dict(inputs.named)} if inputs.named else {}),
    }
    return hashlib.sha256(canonical(doc)).hexdigest()


@dataclass(frozen=True)
class Listing:
    """What a build's packages put in its tree, before rootfs/ (see the module doc)."""

    packages: tuple[tuple[str, PackagePin], ...]  # (NEVRA, pin), in installation order
    deps: Mapping[str, PackageDeps]  # NEVRA -> what ordering reads of its header
    rows: tuple[tuple[Any, ...], ...]  # path, kind, mode, uid, gid, size, target, origin, sha
    shared: frozenset[str]  # paths two or more packages ship as non-directories
    # sha256 -> bytes of the packages' small files under etc/ (ld.so.conf and the files it
    # includes): the closure reads them without keeping them, so no cached layer has them.
    inline: Mapping[str, bytes] = field(default_factory=dict)
    # How many packages the build that made it extracted (reported, never recorded).
    extracted: int = field(default=0, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": LISTING_VERSION,
            "packages": [[nevra, pin.row()] for nevra, pin in self.packages],
            "deps": {
                k: [list(d.requires), list(d.provides), list(d.files)]
                for k, d in sorted(self.deps.items())
            },
            "rows": [list(r) for r in self.rows],
            "shared": sorted(self.shared),
            "inline": {d: base64.b64encode(b).decode() for d, b in sorted(self.inline.items())},
        }

    @classmethod
    def from_json(cls, doc: Any) -> Listing:
        """A listing read from a cache (untrusted): every path inside the root, every entry
        of one of its packages, or NotReusable."""
        try:
            if doc["version"] != LISTING_VERSION:
                raise NotReusable(f"a listing of version {doc['version']!r}")
            packages = tuple((str(n), PackagePin(*row)) for n, row in doc["packages"])
            nevras = {n for n, _pin in packages}
            deps = {
                str(k): PackageDeps(str(k), *(tuple(str(x) for x in part) for part in v))
                for k, v in doc["deps"].items()
            }
            rows = tuple(_checked_row(r, nevras) for r in doc["rows"])
            shared = frozenset(_checked_path(p) for p in doc["shared"])
            inline = {str(d): base64.b64decode(b, validate=True) for d, b in doc["inline"].items()}
        except (KeyError, TypeError, ValueError) as err:
            raise NotReusable(f"a damaged listing ({type(err).__name__}: {err})") from None
        if set(deps) != nevras:
            raise NotReusable("the listing's dependencies are not its packages'")
        for digest, data in inline.items():
            if hashlib.sha256(data).hexdigest() != digest:
                raise NotReusable(f"the listing's bytes {digest[:12]} do not match their digest")
        return cls(packages, deps, rows, shared, inline)


def _checked_path(path: object) -> str:
    try:
        if isinstance(path, str) and path and normalize_path(path) == path:
            return path
    except SmithError:
        pass
    raise NotReusable(f"the plan names the path {path!r}, not one inside the root")


def _checked_row(row: Any, nevras: Collection[str]) -> tuple[Any, ...]:
    path, kind, mode, uid, gid, size, target, origin, sha = row
    if kind not in KINDS or origin not in nevras:
        raise NotReusable(f"the listing's /{path} is a {kind!r} of {origin!r}: not its package's")
    for number in (mode, uid, gid, size):
        if not isinstance(number, int) or number < 0:
            raise NotReusable(f"the listing's /{path} has {number!r} for a number")
    if (kind == "file") != (isinstance(sha, str) and len(sha) == 64 and not sha.strip(HEX)):
        raise NotReusable(f"the listing's /{path} has {sha!r} for a content digest")
    return (_checked_path(path), kind, mode, uid, gid, size, str(target), origin, sha)


def stored(store: ContentStore, sha: str) -> bool:
    return os.path.exists(store.path_for(sha))


def capture(
    tree: FileTree,
    packages: Sequence[tuple[str, PackagePin]],
    deps: Iterable[PackageDeps],
    shared: frozenset[str],
    extracted: int,
) -> Listing:
    """The listing of `tree`, the packages' tree before rootfs/ is laid over it."""
    rows = []
    inline: dict[str, bytes] = {}
    room = INLINE_TOTAL
    for e in tree:
        sha = e.content.sha256 if isinstance(e.content, HostFile) else ""
        if e.kind is Kind.FILE and not sha and e.content is not None:
            from smith.tree import content_digest

            sha = content_digest(e.content)
        rows.append((e.path, e.kind.value, e.mode, e.uid, e.gid, e.size, e.target, e.origin, sha))
        small = (
            e.kind is Kind.FILE and e.size <= min(INLINE_FILE, room) and e.path.startswith("etc/")
        )
        if small and e.content is not None and not isinstance(e.content, Unfetched):
            with e.content.open() as f:
                inline[sha] = f.read(e.size + 1)
            room -= e.size
    packages_deps = {d.key: d for d in deps}
    return Listing(tuple(packages), packages_deps, tuple(rows), shared, inline, extracted=extracted)


def shared_files(headers: Iterable[RpmPackage]) -> frozenset[str]:
    """Paths that two or more packages ship as something other than a directory."""
    seen: dict[str, int] = {}
    for h in headers:
        for path in {f.path.strip("/") for f in h.files if not f.ghost and not _is_dir(f.mode)}:
            seen[path] = seen.get(path, 0) + 1
    return frozenset(p for p, n in seen.items() if n > 1)


def _is_dir(mode: int) -> bool:
    return mode & 0o170000 == 0o040000


@dataclass(frozen=True)
class Prior:
    """An earlier build of the same family: its listing, the paths its image kept with the
    package each came from, and its layers' keys (what counts as taken from the cache)."""

    listing: Listing
    kept: Mapping[str, str]  # path -> owner, of the earlier image
    layer_keys: frozenset[str]
    source: str  # "local" or the registry reference
    pulled: int = 0  # layer bytes fetched from the registry for it


# A package alone in a tree, and its dependencies as ordering reads them.
Extract = Callable[["ResolvedPackage"], tuple[FileTree, PackageDeps]]


@dataclass(frozen=True)
class Reassembled:
    tree: FileTree
    deps: tuple[PackageDeps, ...]  # in installation order
    extracted: int


def layer_records(
    trees: Sequence[FileTree], keys: Sequence[str], nevras: Collection[str]
) -> list[dict[str, Any]]:
    """Per layer, bottom first: its key, the packages whose files it holds, its paths."""
    return [
        {
            "key": key,
            "packages": sorted({e.origin for e in tree if e.origin in nevras}),
            "paths": [e.path for e in tree],
        }
        for tree, key in zip(trees, keys, strict=True)
    ]


def checked_records(records: Any, keys: Sequence[str], nevras: Collection[str]) -> None:
    """Layer records read from a cache: one per layer key, each path inside the root, each
    package one of the build's, or NotReusable."""
    if not isinstance(records, list) or [r.get("key") for r in records] != list(keys):
        raise NotReusable("the plan's layer records are not its layers'")
    for record in records:
        for path in record["paths"]:
            _checked_path(path)
        for package in record["packages"]:
            if package not in nevras:
                raise NotReusable(f"a layer of the plan holds {package!r}, not one of its packages")


def reassemble(
    prior: Prior,
    packages: Sequence[ResolvedPackage],
    pins: Sequence[PackagePin],
    store: ContentStore,
    extract: Extract,
) -> Reassembled:
    """This build's packages' tree from `prior`, extracting only what changed (see the
    module doc), or NotReusable."""
    listing = prior.listing
    old = listing.packages
    if [(p.name, p.arch) for _n, p in old] != [(p.name, p.arch) for p in pins]:
        raise NotReusable("the packages are not the earlier build's (names or order differ)")
    rows_of: dict[str, list[tuple[Any, ...]]] = {}
    for row in listing.rows:
        rows_of.setdefault(row[7], []).append(row)
    position = {p.nevra: i for i, p in enumerate(packages)}
    changed: list[int] = []
    for i, ((nevra, pin), new) in enumerate(zip(old, pins, strict=True)):
        # A kept path's bytes are the package's only where the image has them from it (smith
        # writes its own /etc/passwd over setup's, say): those are the cached layers'.
        kept_bytes = [
            r[8] for r in rows_of.get(nevra, ()) if r[1] == "file" and prior.kept.get(r[0]) == nevra
        ]
        if pin != new or not all(stored(store, sha) for sha in kept_bytes):
            changed.append(i)
    gone = {old[i][0] for i in changed}
    tree = FileTree()
    for row in listing.rows:
        if row[7] not in gone:
            tree.add(_entry(row, store))
    deps = dict(listing.deps)
    for i in changed:
        nevra, package = old[i][0], packages[i]
        fresh, package_deps = extract(package)
        _merge(tree, fresh, rows_of.get(nevra, ()), package.nevra, position, listing.shared)
        del deps[nevra]
        deps[package.nevra] = package_deps
    order = [p.nevra for p in packages]
    return Reassembled(tree, tuple(deps[n] for n in order), len(changed))


def _entry(row: tuple[Any, ...], store: ContentStore) -> Entry:
    path, kind, mode, uid, gid, size, target, origin, sha = row
    content = None
    if kind == "file":
        content = (
            HostFile(str(store.path_for(sha)), sha)
            if stored(store, sha)
            else Unfetched("/" + path, sha)
        )
    return Entry(path, KINDS[kind], mode, uid, gid, size, target, content, origin)


def _merge(
    tree: FileTree,
    fresh: FileTree,
    old_rows: Sequence[tuple[Any, ...]],
    nevra: str,
    position: Mapping[str, int],
    shared: frozenset[str],
) -> None:
    """Add a changed package (`fresh`: it alone in a tree) where the earlier version was,
    as add_rpm_to_tree would have added it in its place in the order."""
    links = {(e.path, e.target) for e in fresh if e.kind is Kind.SYMLINK}
    if links != {(r[0], r[6]) for r in old_rows if r[1] == "symlink"}:
        # Other packages' paths may have been placed through its links.
        raise NotReusable(f"{nevra} changes its symlinks")
    for row in old_rows:
        if row[1] == "dir":
            entry = fresh.get(row[0])
            if entry is None or entry.kind is not Kind.DIR:
                raise NotReusable(f"{nevra} no longer ships the directory /{row[0]}")
        elif row[0] in shared:
            # Another package ships it too: which copy a cold build keeps is the order's.
            raise NotReusable(f"{nevra} shares /{row[0]} with another package")
    for e in fresh:
        if any(_is_link(tree, d) for d in parent_paths(e.path)):
            raise NotReusable(f"{nevra}'s /{e.path} lies under another package's symlink")
        there = tree.get(e.path)
        if there is None:
            tree.add(e)
        elif there.kind is Kind.DIR and e.kind is Kind.DIR:
            # Both ship the directory: the later in the order is what the tree holds.
            if position.get(there.origin, -1) < position[nevra]:
                tree.add(e)
        else:
            raise NotReusable(f"{nevra}'s /{e.path} is shipped by {there.origin} too")


def _is_link(tree: FileTree, path: str) -> bool:
    entry = tree.get(path)
    return entry is not None and entry.kind is Kind.SYMLINK


def check_kept(tree: FileTree) -> None:
    """Every kept file's bytes are at hand (else the build runs whole)."""
    for e in tree:
        if isinstance(e.content, Unfetched):
            raise NotReusable(f"/{e.path} is kept now, and its bytes are in no cached layer")


def unpack_layer(path: str, store: ContentStore, what: str) -> tuple[FileTree, str]:
    """A layer blob's regular files into the content store (found there by digest): the
    layer as a tree (its key can be checked) and its diff_id."""
    from smith.oci.layerread import open_blob
    from smith.oci.tarstream import TarStream
    from smith.oci.unpack import layer_errors

    tree = FileTree()
    with open_blob(path, what) as reader:
        stream = TarStream(reader.read_piece)
        with layer_errors(reader, what):
            for member in stream:
                name = normalize_path(member.name)
                if member.isreg():

                    def copy(sink: Sink) -> None:
                        for piece in stream.body():
                            sink(piece)

                    content = store.put_stream(copy)
                    tree.add(
                        Entry(name, Kind.FILE, member.mode, member.uid, member.gid,
                              member.size, content=content)
                    )  # fmt: skip
                    continue
                kind = (
                    Kind.DIR if member.isdir() else Kind.SYMLINK if member.issym()
                    else Kind.HARDLINK if member.islnk() else None
                )  # fmt: skip
                if kind is None:
                    raise NotReusable(f"{what}: /{name} is of a kind smith never writes")
                target = (
                    normalize_path(member.linkname) if kind is Kind.HARDLINK else member.linkname
                )
                tree.add(Entry(name, kind, member.mode, member.uid, member.gid, 0, target))
            stream.trailer()
    return tree, reader.digest()
