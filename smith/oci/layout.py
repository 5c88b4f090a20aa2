"""Where images live on disk: OCI layout directories, oci-archives and docker-archives.

Writing: an image is always assembled as an OCI layout in a temporary directory beside the
output, then either renamed into place (layout) or packed into a tar with the same
deterministic tar writer as the layers (archives). Reading: all three forms, every blob
checked against its descriptor, archives unpacked without ever leaving their directory.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import stat
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any, cast

from smith.atomic import atomic_path, check_output, temp_beside
from smith.errors import ImageFormatError, UnsafePathError, UsageError
from smith.leftovers import temp_dir
from smith.limits import DOCUMENT_BYTES, json_document
from smith.oci.blobs import BlobStore, blob_file, verify_blob
from smith.oci.compress import CompressedWriter, Compression
from smith.oci.image import (
    ANNOTATION_REF_NAME,
    EVERY_PLATFORM,
    MEDIA_DOCKER_CONFIG,
    MEDIA_DOCKER_LAYER,
    MEDIA_DOCKER_LAYER_GZIP,
    MEDIA_DOCKER_LIST,
    MEDIA_DOCKER_MANIFEST,
    MEDIA_OCI_INDEX,
    MEDIA_OCI_MANIFEST,
    Descriptor,
    ImageConfig,
    Platform,
    canonical_json,
    config_from_document,
    host_platform_default,
    json_excerpt,
    refuse_one_of_several,
)
from smith.oci.layerread import DecompressError, blob_compression, open_blob
from smith.oci.reference import is_registry_reference
from smith.oci.referrers import is_referrer_entry
from smith.oci.tarball import stream_layer
from smith.oci.tarstream import Member, TarFormatError, TarStream
from smith.oci.writer import ImageResult
from smith.paths import normalize_path
from smith.tree import FileTree, Kind

if TYPE_CHECKING:
    from smith.oci.registry import RegistryOptions


class OutputFormat(StrEnum):
    OCI = "oci"
    OCI_ARCHIVE = "oci-archive"
    DOCKER_ARCHIVE = "docker-archive"


# Suffixes of archive and compression formats that are not smith's outputs.
NOT_WRITTEN = frozenset(
    (".zst", ".zstd", ".zip", ".xz", ".bz2", ".lz4", ".7z", ".gz", ".tzst", ".txz", ".rar")
)


def choose_format(output: str, explicit: str | None) -> tuple[OutputFormat, bool]:
    """The format of `output` and whether the archive is gzip-compressed."""
    gz = output.endswith((".tar.gz", ".tgz"))
    suffix = os.path.splitext(output.rstrip("/"))[1]
    if suffix in NOT_WRITTEN and not gz:
        # A name that promises a format smith does not write would silently become an OCI
        # layout directory of that name.
        raise UsageError(
            f"the output {output!r} asks for a {suffix} file, which smith does not write: "
            "name a directory (OCI layout), NAME.tar or NAME.tar.gz (oci-archive, or "
            "docker-archive with --format docker-archive)"
        )
    if explicit:
        try:
            fmt = OutputFormat(explicit)
        except ValueError:
            known = ", ".join(f.value for f in OutputFormat)
            raise UsageError(f"unknown output format {explicit!r} (known: {known})") from None
        if fmt is OutputFormat.OCI and (gz or output.endswith(".tar")):
            raise UsageError(f"format 'oci' is a directory, but the output is named {output!r}")
        return fmt, gz
    if gz or output.endswith(".tar"):
        return OutputFormat.OCI_ARCHIVE, gz
    return OutputFormat.OCI, False


@contextmanager
def staging_layout(output: str) -> Iterator[BlobStore]:
    """A temporary OCI layout beside `output`; removed afterwards whatever happens."""
    check_output(output)  # before the work, not only when the output is moved into place
    with temp_beside(output, directory=True) as root:
        yield BlobStore(root)


def save_layout(
    store: BlobStore,
    result: ImageResult,
    output: str,
    fmt: OutputFormat,
    *,
    gz: bool = False,
    tag: str = "",
    epoch: int = 0,
) -> None:
    """Move or pack the complete layout in `store` to `output`, atomically."""
    if fmt is OutputFormat.OCI:
        with atomic_path(output, directory=True) as tmp:
            os.rmdir(tmp)
            os.rename(store.root, tmp)
            os.makedirs(store.root)  # staging_layout removes it again
        return
    if fmt is OutputFormat.DOCKER_ARCHIVE:
        refuse_zstd_docker_archive(fmt, [layer.descriptor.media_type for layer in result.layers])
        write_docker_manifest(store, result, tag)
    tree = layout_tree(store.root)
    with atomic_path(output) as tmp, open(tmp, "wb") as out:
        writer = CompressedWriter(out, Compression.GZIP if gz else Compression.NONE, lambda _: None)
        for chunk in stream_layer(tree, epoch):
            writer.write(chunk)
        writer.close()


def refuse_zstd_docker_archive(fmt: OutputFormat, media_types: Iterable[str]) -> None:
    """Docker's archive format has no zstd: `docker load` (20.10) fails on such a layer
    with `archive/tar: invalid tar header`. Refused before anything is written."""
    if fmt is OutputFormat.DOCKER_ARCHIVE and any(m.endswith("zstd") for m in media_types):
        raise UsageError(
            "a docker-archive cannot hold zstd layers (docker load reads only gzip or plain "
            "tar): use --compression gzip, or write an OCI archive (--format oci-archive)"
        )


def layout_tree(root: str) -> FileTree:
    """The layout directory as a tree with fixed owners and modes: the archive must not
    carry the build host's uid or umask."""
    tree = FileTree()
    for entry in FileTree.from_directory(root):
        if entry.kind is Kind.DIR:
            tree.add_dir(entry.path, 0o755)
        elif entry.kind is Kind.FILE and entry.content is not None:
            tree.add_file(entry.path, entry.content, 0o644, size=entry.size)
    return tree


def write_docker_manifest(store: BlobStore, result: ImageResult, tag: str) -> None:
    """docker-archive: `manifest.json` as `docker load` reads it, beside the OCI layout (as
    Docker 25+ itself writes). `docker load` decompresses gzip and zstd layers itself."""
    repo_tag = tag if ":" in tag.rsplit("/", 1)[-1] else (f"{tag}:latest" if tag else "")
    manifest = [
        {
            "Config": "blobs/sha256/" + result.config.digest.removeprefix("sha256:"),
            "RepoTags": [repo_tag] if repo_tag else None,
            "Layers": [
                "blobs/sha256/" + layer.descriptor.digest.removeprefix("sha256:")
                for layer in result.layers
            ],
        }
    ]
    with open(os.path.join(store.root, "manifest.json"), "wb") as f:
        f.write(canonical_json(manifest))


# -- reading -------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedImage:
    """One image (one platform) read from disk, every blob checked."""

    source: str
    manifest_descriptor: Descriptor
    manifest: Mapping[str, Any]
    config_descriptor: Descriptor
    config: Mapping[str, Any]
    layers: tuple[Descriptor, ...]
    diff_ids: tuple[str, ...]
    blob_paths: Mapping[str, str] = field(repr=False)
    # The bytes of the layout's index.json or the docker-archive's manifest.json as read
    # (None for a registry pull, whose index smith wrote itself): `smith diff` compares them.
    top: bytes | None = field(default=None, repr=False)
    # The manifest and config as read (a docker-archive's manifest as smith synthesised it).
    manifest_bytes: bytes = field(default=b"", repr=False)
    config_bytes: bytes = field(default=b"", repr=False)

    def blob_path(self, digest: str) -> str:
        try:
            return self.blob_paths[digest]
        except KeyError:
            raise ImageFormatError(f"{self.source}: blob {digest} is missing") from None

    def image_config(self) -> ImageConfig:
        try:
            return config_from_document(self.config)
        except ImageFormatError as err:
            raise ImageFormatError(f"{self.source}: {err}") from None

    @property
    def platform(self) -> Platform:
        return self.image_config().platform


@contextmanager
def open_image(
    source: str,
    *,
    platform: Platform | None = None,
    name: str = "",
    registry: RegistryOptions | None = None,
) -> Iterator[LoadedImage]:
    """Read an OCI layout directory, an oci-archive (.tar, .tar.gz) or a docker-archive;
    or pull a registry reference (`docker://`, `https://`, `http://`) into a temporary
    layout first, with `registry`'s options."""
    if is_registry_reference(source):
        from smith.oci.pull import pulled_layout  # the HTTP stack only when needed

        with pulled_layout(source, platform=platform, options=registry) as (root, shown):
            yield replace(read_layout(root, shown, None, ""), top=None)
        return
    path, name = split_image_name(source, name)
    with unpacked(path) as root:
        yield read_unpacked(root, path, platform, name)


def split_image_name(source: str, name: str) -> tuple[str, str]:
    """`LAYOUT:NAME` (as skopeo's oci:LAYOUT:NAME) picks the image whose ref.name is NAME
    from a layout or archive holding several (for a docker-archive: whose RepoTags hold
    NAME); a path that exists is never split."""
    if name or os.path.exists(source):
        return source, name
    # The name may hold colons itself (a docker-archive's `app:1`, `host:5000/app:1`): the
    # longest prefix that exists is the path. A name with `/` only picks from an archive.
    pos = len(source)
    while (pos := source.rfind(":", 0, pos)) > 0:
        path, ref = source[:pos], source[pos + 1 :]
        if ref and os.path.exists(path) and ("/" not in ref or os.path.isfile(path)):
            return path, ref
    return source, name


@contextmanager
def unpacked(source: str) -> Iterator[str]:
    """The directory of a layout, or of an archive unpacked into a temporary one."""
    if os.path.isdir(source):
        yield source
        return
    if not os.path.exists(source):
        raise ImageFormatError(f"no image at {source!r}")
    if not stat.S_ISREG(os.stat(source).st_mode):  # /dev/zero, a FIFO: endless or blocking
        raise ImageFormatError(f"{source!r} is not an image: neither a directory nor a file")
    with temp_dir("smith-image-") as tmp:
        unpack_archive(source, tmp)
        yield tmp


def read_unpacked(root: str, source: str, platform: Platform | None, name: str) -> LoadedImage:
    if os.path.exists(os.path.join(root, "index.json")):
        return read_layout(root, source, platform, name)
    if os.path.exists(os.path.join(root, "manifest.json")):
        return read_docker_archive(root, source, name)
    raise ImageFormatError(
        f"{source!r} is neither an OCI layout nor a docker-archive (no index.json or manifest.json)"
    )


def load_json(path: str, what: str) -> Any:
    return read_json(path, what)[1]


def read_json(path: str, what: str) -> tuple[bytes, Any]:
    """A JSON document's bytes and value."""
    try:
        with open(path, "rb") as f:
            raw = f.read(DOCUMENT_BYTES.count() + 1)
        if len(raw) > DOCUMENT_BYTES.count():
            raise DOCUMENT_BYTES.error(what)
        return raw, json_document(raw, what)
    except FileNotFoundError:
        raise ImageFormatError(f"{what} is missing") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise ImageFormatError(f"{what} is not valid JSON: {err}") from None


def read_layout(root: str, source: str, platform: Platform | None, name: str) -> LoadedImage:
    top, index = read_json(os.path.join(root, "index.json"), f"{source}: index.json")
    desc = pick_manifest(
        index, source, platform, name, lambda d: read_blob_json(root, source, d, "index")
    )
    return replace(read_image_manifest(root, source, desc), top=top)


def read_blob_json(root: str, source: str, desc: Descriptor, what: str) -> Any:
    """A JSON blob of a layout, checked against its descriptor."""
    return read_blob_document(root, source, desc, what)[1]


def read_blob_document(root: str, source: str, desc: Descriptor, what: str) -> tuple[bytes, Any]:
    """A JSON blob's bytes and value, checked against its descriptor."""
    path = blob_file(root, desc.digest)
    verify_blob(path, desc.digest, desc.size, f"{source}: {what}")
    return read_json(path, f"{source}: {what} {desc.digest}")


def read_image_manifest(root: str, source: str, desc: Descriptor) -> LoadedImage:
    """The image that manifest `desc` of the layout at `root` describes, every blob checked."""
    manifest_raw, manifest = read_blob_document(root, source, desc, "manifest")
    try:
        config_desc = Descriptor.from_json(manifest["config"])
        layers = tuple(Descriptor.from_json(layer) for layer in manifest.get("layers") or [])
    except (KeyError, TypeError, ValueError) as err:
        raise ImageFormatError(f"{source}: manifest {desc.digest} is malformed ({err})") from None
    config_raw, config = read_blob_document(root, source, config_desc, "config")
    diff_ids = config_diff_ids(config, f"{source}: config {config_desc.digest}")
    paths = {
        config_desc.digest: blob_file(root, config_desc.digest),
        desc.digest: blob_file(root, desc.digest),
    }
    for layer in layers:
        paths[layer.digest] = blob_file(root, layer.digest)
        verify_blob(paths[layer.digest], layer.digest, layer.size, f"{source}: layer")
    if len(diff_ids) != len(layers):
        raise ImageFormatError(
            f"{source}: config lists {len(diff_ids)} diff_ids for {len(layers)} layers"
        )
    return LoadedImage(
        source, desc, manifest, config_desc, config, layers, diff_ids, paths,
        manifest_bytes=manifest_raw, config_bytes=config_raw,
    )  # fmt: skip


def config_diff_ids(config: Any, what: str) -> tuple[str, ...]:
    """The diff_ids of an untrusted config document (the rest is read by
    config_from_document)."""
    if not isinstance(config, dict):
        raise ImageFormatError(f"{what} is {json_excerpt(config)}, not an object")
    rootfs = config.get("rootfs") or {}
    diff_ids = (rootfs.get("diff_ids") or []) if isinstance(rootfs, dict) else rootfs
    if not isinstance(diff_ids, list) or not all(isinstance(d, str) for d in diff_ids):
        raise ImageFormatError(
            f"{what}: rootfs.diff_ids is {json_excerpt(diff_ids)}, not a list of digests"
        )
    return tuple(diff_ids)


IMAGE_MEDIA_TYPES = (
    MEDIA_OCI_MANIFEST,
    MEDIA_DOCKER_MANIFEST,
    MEDIA_OCI_INDEX,
    MEDIA_DOCKER_LIST,
    "",  # an index entry without a mediaType: read the manifest to know
)


def pick_manifest(
    index: Any, source: str, platform: Platform | None, name: str, load: Any
) -> Descriptor:
    """The image manifest an index leads to, for `platform` (and ref `name` if given)."""
    every = platform == EVERY_PLATFORM
    platform = None if every else platform
    for _depth in range(4):
        try:
            # Attached artifacts (an SBOM, a signature) refer to an image; they are not one.
            candidates = [
                Descriptor.from_json(m) for m in index["manifests"] if not is_referrer_entry(m)
            ]
        except (KeyError, TypeError, ValueError) as err:
            raise ImageFormatError(f"{source}: index is malformed ({err})") from None
        # Only manifests and indexes are images: Oracle smith's layouts list their recipe
        # (application/vnd.smith.spec) and package list beside the image manifest.
        listed, candidates = (
            candidates,
            [c for c in candidates if c.media_type in IMAGE_MEDIA_TYPES],
        )
        if listed and not candidates:
            kinds = ", ".join(sorted({c.media_type for c in listed}))
            raise ImageFormatError(f"{source}: the index lists no image manifest, only {kinds}")
        if name:
            candidates = [
                c for c in candidates if dict(c.annotations).get(ANNOTATION_REF_NAME) == name
            ]
            if not candidates:
                raise ImageFormatError(f"{source}: no image is named {name!r}")
        if not candidates:
            raise ImageFormatError(f"{source}: the index lists no image")
        if every:
            refuse_one_of_several(candidates)
        if len(candidates) > 1 or platform is not None:
            want = platform or host_platform_default()
            matching = [
                c
                for c in candidates
                if c.platform is None
                or (
                    c.platform.os == want.os
                    and c.platform.architecture == want.architecture
                    and (not want.variant or c.platform.variant == want.variant)
                )
            ]
            if not matching:
                have = ", ".join(str(c.platform) for c in candidates)
                raise ImageFormatError(f"{source}: no image for platform {want} (it has: {have})")
            names = sorted({dict(c.annotations).get(ANNOTATION_REF_NAME, "") for c in matching})
            if len(matching) > 1 and len(names) > 1:
                # Several named images for one platform (a layout of `app:1` and `app:2`):
                # taking the first would silently minimize, push or diff the wrong one.
                shown = ", ".join(n or "(unnamed)" for n in names)
                raise ImageFormatError(
                    f"{source} holds {len(matching)} images for {want} ({shown}): "
                    f"name one as {source}:NAME"
                )
            candidates = matching[:1]
        chosen = candidates[0]
        if chosen.media_type in (MEDIA_OCI_INDEX, MEDIA_DOCKER_LIST):
            index, name = load(chosen), ""
            continue
        if chosen.media_type not in (MEDIA_OCI_MANIFEST, MEDIA_DOCKER_MANIFEST, ""):
            raise ImageFormatError(
                f"{source}: unsupported manifest media type {chosen.media_type!r}"
            )
        return chosen
    raise ImageFormatError(f"{source}: indexes nested too deeply")


def read_docker_archive(root: str, source: str, name: str = "") -> LoadedImage:
    """A docker-archive (`docker save`): manifest.json naming a config and layer files."""
    top, manifest = read_json(os.path.join(root, "manifest.json"), f"{source}: manifest.json")
    listed = isinstance(manifest, list) and bool(manifest)
    if not listed or not all(isinstance(entry, dict) for entry in manifest):
        raise ImageFormatError(f"{source}: manifest.json does not list an image")
    entry = pick_docker_image(manifest, source, name)
    try:
        config_path = os.path.join(root, normalize_path(entry["Config"]))
        if not isinstance(entry["Layers"], list):
            raise TypeError(f"Layers is {json_excerpt(entry['Layers'])}, not a list")
        layer_paths = [os.path.join(root, normalize_path(p)) for p in entry["Layers"]]
    except (KeyError, TypeError) as err:
        raise ImageFormatError(f"{source}: manifest.json is malformed ({err})") from None
    paths: dict[str, str] = {}

    def describe(path: str, media_type: str) -> Descriptor:
        name = os.path.relpath(path, root)
        if os.path.isdir(path):
            raise ImageFormatError(f"{source}: manifest.json names {name!r}, a directory")
        digest = file_digest(path, f"{source}: {name}")
        paths[digest] = path
        return Descriptor(media_type, digest, os.path.getsize(path))

    config_desc = describe(config_path, MEDIA_DOCKER_CONFIG)
    config_raw, config = read_json(config_path, f"{source}: config")
    diff_ids = config_diff_ids(config, f"{source}: config")
    layers = []
    for path in layer_paths:
        gz = os.path.isfile(path) and blob_compression(path) is Compression.GZIP
        layers.append(describe(path, MEDIA_DOCKER_LAYER_GZIP if gz else MEDIA_DOCKER_LAYER))
    if len(diff_ids) != len(layers):
        raise ImageFormatError(
            f"{source}: config lists {len(diff_ids)} diff_ids for {len(layers)} layers"
        )
    doc = {
        "schemaVersion": 2,
        "mediaType": MEDIA_DOCKER_MANIFEST,
        "config": config_desc.to_json(),
        "layers": [layer.to_json() for layer in layers],
    }
    raw = canonical_json(doc)
    mdesc = Descriptor(MEDIA_DOCKER_MANIFEST, "sha256:" + hashlib.sha256(raw).hexdigest(), len(raw))
    return LoadedImage(
        source, mdesc, doc, config_desc, config, tuple(layers), diff_ids, paths, top,
        manifest_bytes=raw, config_bytes=config_raw,
    )  # fmt: skip


def repo_tags(entry: Mapping[str, Any]) -> list[str]:
    tags = entry.get("RepoTags") or []
    return [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else []


def pick_docker_image(manifest: list[Any], source: str, name: str) -> Mapping[str, Any]:
    """The entry of a docker-archive's manifest.json for `name` (matched against RepoTags
    as docker matches names: `app` is `app:latest` is `docker.io/library/app:latest`), or
    its only image. `docker save a b` orders the entries arbitrarily: never take the first
    of several silently."""
    if name:
        for entry in manifest:
            if short_ref(name) in {short_ref(t) for t in repo_tags(entry)}:
                return cast(Mapping[str, Any], entry)
        raise ImageFormatError(
            f"{source}: no image is named {name!r} (it has: {tag_list(manifest)})"
        )
    if len(manifest) > 1:
        raise ImageFormatError(
            f"{source} holds {len(manifest)} images ({tag_list(manifest)}): "
            f"name one as {source}:NAME"
        )
    return cast(Mapping[str, Any], manifest[0])


def short_ref(ref: str) -> str:
    """`ref` without docker's default registry and namespace, with its default tag."""
    for prefix in ("docker.io/library/", "docker.io/"):
        ref = ref.removeprefix(prefix)
    return ref if ":" in ref.rsplit("/", 1)[-1] else f"{ref}:latest"


def tag_list(manifest: list[Any]) -> str:
    return ", ".join(", ".join(repo_tags(e)) or "(untagged)" for e in manifest)


def file_digest(path: str, what: str) -> str:
    try:
        with open(path, "rb") as f:
            return "sha256:" + hashlib.file_digest(f, "sha256").hexdigest()
    except FileNotFoundError:
        raise ImageFormatError(f"{what} is missing") from None


def unpack_archive(archive: str, dest: str) -> None:
    """Unpack an image archive (tar, optionally gzip) into `dest`, on the layer-reading
    stack (one compression check, bounded inflation, one tar parser).

    Image archives hold only directories and regular files, so anything else is refused
    (links, devices), as are absolute names and `..`: nothing can be written outside `dest`.
    Files are created with O_EXCL|O_NOFOLLOW, so not even a race can redirect them.
    """
    if os.path.getsize(archive) == 0:
        raise ImageFormatError(f"{archive}: not a readable image archive (it is empty)")
    links: list[tuple[str, str]] = []
    with open_blob(archive, archive) as reader:
        stream = TarStream(reader.read_piece)
        try:
            for member in stream:
                link = unpack_member(archive, dest, stream, member)
                if link is not None:
                    links.append(link)
            reader.drain()
        except (DecompressError, TarFormatError) as err:
            raise ImageFormatError(f"{archive}: not a readable image archive ({err})") from None
    for rel, linkname in links:
        copy_link_target(archive, dest, rel, linkname)


def unpack_member(
    archive: str, dest: str, stream: TarStream, member: Member
) -> tuple[str, str] | None:
    """Write one archive entry under `dest`; a relative symlink is returned, to be resolved
    once everything is read."""
    name = member.name.rstrip("/") or member.name  # as tarfile shows names (a dir's no `/`)
    if name.startswith("/"):
        raise UnsafePathError(f"{archive}: entry has an absolute name: {name!r}")
    rel = normalize_path(name, what=f"{archive}: entry")
    if not rel:
        return None
    target = os.path.join(dest, rel)
    if member.isdir():
        make_dirs(archive, target, name)
    elif member.isreg():
        make_dirs(archive, os.path.dirname(target), name)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
        try:
            fd = os.open(target, flags, 0o644)
        except IsADirectoryError:
            raise ImageFormatError(f"{archive}: entry {name!r} is a file and a directory") from None
        with os.fdopen(fd, "wb") as out:
            for piece in stream.body():
                out.write(piece)
    elif member.issym() and not member.linkname.startswith("/"):
        # `docker save` and skopeo's docker-archive link a layer shared by two images
        # (`<id>/layer.tar -> ../<digest>.tar`): resolved once all is read.
        return rel, member.linkname
    else:
        raise UnsafePathError(
            f"{archive}: entry {name!r} is a link or special file, "
            "which an image archive never needs"
        )
    return None


def make_dirs(archive: str, path: str, name: str) -> None:
    """A directory of an unpacked archive, where an earlier entry may have put a file."""
    try:
        os.makedirs(path, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ImageFormatError(f"{archive}: entry {name!r} is a file and a directory") from None


def copy_link_target(archive: str, dest: str, rel: str, linkname: str) -> None:
    """Give the name `rel` the content of the archive file a relative symlink points to,
    as a hard link: no symlink is ever created, and nothing outside `dest` is reachable."""
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(rel), linkname))
    if joined.startswith("../") or joined == ".." or joined.startswith("/"):
        raise UnsafePathError(f"{archive}: link {rel!r} -> {linkname!r} leads out of the archive")
    source = os.path.join(dest, joined)
    if os.path.islink(source) or not os.path.isfile(source):
        raise ImageFormatError(f"{archive}: link {rel!r} -> {linkname!r} names no file of it")
    target = os.path.join(dest, rel)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    os.link(source, target)
