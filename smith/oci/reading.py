"""Reading images: OCI layout directories, oci-archives, docker-archives and registry
references, all into the one image object (smith.oci.loaded.LoadedImage).

Every blob is checked against its descriptor: the index, manifest and config (small) before
the image is handed out; a layer's presence and size too, its content where it is first
read (smith.oci.loaded: in the same pass as its inflation, or before its bytes are used as
stored). Archives are unpacked into a temporary directory first (smith.oci.unarchive),
never leaving it; a registry reference is pulled into a temporary layout (smith.oci.pull),
whose blobs were checked as they arrived.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any, cast

from smith.errors import ImageFormatError
from smith.leftovers import temp_dir
from smith.limits import DOCUMENT_BYTES, json_document
from smith.oci.blobs import DIGEST_RE, blob_file, check_blob_file, check_digest_form, verify_blob
from smith.oci.compress import Compression
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
    Platform,
    canonical_json,
    host_platform_default,
    json_excerpt,
    refuse_one_of_several,
)
from smith.oci.layerread import blob_compression
from smith.oci.loaded import BlobCheck, LoadedImage, LoadedLayer
from smith.oci.reference import is_registry_reference
from smith.oci.referrers import is_referrer_entry
from smith.oci.unarchive import unpack_archive
from smith.paths import normalize_path

if TYPE_CHECKING:
    from smith.oci.registry import RegistryOptions


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
            # Every blob of the temporary layout got its name once its digest matched.
            yield replace(read_layout(root, shown, None, "", checked=True), top=None)
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
        first = source.split("/", 1)[0]
        looks_remote = (
            "/" in source
            and not first.startswith(".")  # ./x, ../x: a path
            and ("." in first or ":" in first or first == "localhost")  # HOST[:PORT]/REPO
        )
        raise ImageFormatError(
            f"no image at {source!r}",
            hint=f"a registry image is named docker://{source}" if looks_remote else "",
        )
    if not stat.S_ISREG(os.stat(source).st_mode):  # /dev/zero, a FIFO: endless or blocking
        raise ImageFormatError(f"{source!r} is not an image: neither a directory nor a file")
    with temp_dir("smith-image-") as tmp:
        unpack_archive(source, tmp)
        yield tmp


def read_unpacked(root: str, source: str, platform: Platform | None, name: str) -> LoadedImage:
    if os.path.exists(os.path.join(root, "index.json")):
        return read_layout(root, source, platform, name)
    if is_directory_transport(root):
        return read_directory_transport(root, source, platform, name)
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


def read_layout(
    root: str, source: str, platform: Platform | None, name: str, *, checked: bool = False
) -> LoadedImage:
    """The image of the layout at `root`; `checked`: its blobs are known to match their
    names (smith wrote the layout itself, checking each)."""
    top, index = read_json(os.path.join(root, "index.json"), f"{source}: index.json")
    desc = pick_manifest(
        index, source, platform, name, lambda d: read_blob_json(root, source, d, "index")
    )
    return replace(read_image_manifest(root, source, desc, checked=checked), top=top)


def read_blob_json(root: str, source: str, desc: Descriptor, what: str) -> Any:
    """A JSON blob of a layout, checked against its descriptor."""
    return read_blob_document(root, source, desc, what)[1]


def read_blob_document(root: str, source: str, desc: Descriptor, what: str) -> tuple[bytes, Any]:
    """A JSON blob's bytes and value, checked against its descriptor."""
    return read_document_at(blob_file(root, desc.digest), source, desc, what)


def read_document_at(path: str, source: str, desc: Descriptor, what: str) -> tuple[bytes, Any]:
    """The JSON document in file `path`: its bytes and value, checked against `desc`."""
    verify_blob(path, desc.digest, desc.size, f"{source}: {what}")
    return read_json(path, f"{source}: {what} {desc.digest}")


def read_image_manifest(
    root: str, source: str, desc: Descriptor, *, checked: bool = False
) -> LoadedImage:
    """The image that manifest `desc` of the layout at `root` describes: the manifest and
    config checked, each layer's presence and size (its content where it is read)."""
    manifest_raw, manifest = read_blob_document(root, source, desc, "manifest")
    return image_of_manifest(
        source, desc, manifest_raw, manifest, lambda digest: blob_file(root, digest), checked
    )


def image_of_manifest(
    source: str,
    desc: Descriptor,
    manifest_raw: bytes,
    manifest: Any,
    blob_at: Callable[[str], str],
    checked: bool,
) -> LoadedImage:
    """The image an image manifest (already checked against `desc`) describes, its config
    and layers in the files `blob_at(digest)` names."""
    try:
        config_desc = Descriptor.from_json(manifest["config"])
        layers = tuple(Descriptor.from_json(layer) for layer in manifest.get("layers") or [])
    except (KeyError, TypeError, ValueError) as err:
        raise ImageFormatError(f"{source}: manifest {desc.digest} is malformed ({err})") from None
    config_path = blob_at(config_desc.digest)
    config_raw, config = read_document_at(config_path, source, config_desc, "config")
    diff_ids = config_diff_ids(config, f"{source}: config {config_desc.digest}")
    paths = [blob_at(layer.digest) for layer in layers]
    for layer, path in zip(layers, paths, strict=True):
        check_blob_file(path, layer.digest, layer.size, f"{source}: layer")
    return LoadedImage(
        source, desc, manifest, config_desc, config,
        image_layers(source, layers, diff_ids, paths, checked=checked),
        config_path,
        manifest_bytes=manifest_raw, config_bytes=config_raw,
    )  # fmt: skip


def image_layers(
    source: str,
    layers: Sequence[Descriptor],
    diff_ids: Sequence[str],
    paths: Sequence[str],
    *,
    checked: bool,
) -> tuple[LoadedLayer, ...]:
    """The image object's layers: each descriptor with its diff_id and blob file, whose
    content is `checked` already or is to be checked where it is read."""
    if len(diff_ids) != len(layers):
        raise ImageFormatError(
            f"{source}: config lists {len(diff_ids)} diff_ids for {len(layers)} layers"
        )
    return tuple(
        LoadedLayer(i, desc, diff_id, path, source, BlobCheck(checked))
        for i, (desc, diff_id, path) in enumerate(zip(layers, diff_ids, paths, strict=True))
    )


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


DIRECTORY_TRANSPORT = b"Directory Transport Version: "


def is_directory_transport(root: str) -> bool:
    """skopeo's and podman's `dir:` form (`skopeo copy … dir:D`, `podman save --format
    docker-dir|oci-dir`… of containers/image): a `version` file saying so, manifest.json
    the image's own manifest (a docker-archive's is a list), each blob a file named by its
    hex digest, and with --all each instance's manifest as HEX.manifest.json."""
    try:
        with open(os.path.join(root, "version"), "rb") as f:
            return f.read(len(DIRECTORY_TRANSPORT)) == DIRECTORY_TRANSPORT
    except OSError:
        return False


def read_directory_transport(
    root: str, source: str, platform: Platform | None, name: str
) -> LoadedImage:
    """The image of a `dir:` directory (see is_directory_transport)."""
    if name:
        raise ImageFormatError(f"{source}: a dir: copy holds one image; it has no {name!r}")

    def blob_at(digest: str) -> str:
        return os.path.join(
            root, check_digest_form(digest, f"{source}: blob").removeprefix("sha256:")
        )

    raw, top = read_json(os.path.join(root, "manifest.json"), f"{source}: manifest.json")
    if not isinstance(top, dict):
        raise ImageFormatError(f"{source}: manifest.json is not a manifest")
    media_type = top.get("mediaType")
    if not isinstance(media_type, str):  # optional in an OCI manifest or index
        media_type = MEDIA_OCI_INDEX if "manifests" in top else MEDIA_OCI_MANIFEST
    desc = Descriptor(media_type, "sha256:" + hashlib.sha256(raw).hexdigest(), len(raw))
    if media_type in (MEDIA_OCI_INDEX, MEDIA_DOCKER_LIST):

        def instance(d: Descriptor) -> str:
            return blob_at(d.digest) + ".manifest.json"

        desc = pick_manifest(
            top,
            source,
            platform,
            "",
            lambda d: read_document_at(instance(d), source, d, "index")[1],
        )
        raw, top = read_document_at(instance(desc), source, desc, "manifest")
    return image_of_manifest(source, desc, raw, top, blob_at, False)


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

    def describe(path: str, media_type: str) -> Descriptor:
        name = os.path.relpath(path, root)
        if os.path.isdir(path):
            raise ImageFormatError(f"{source}: manifest.json names {name!r}, a directory")
        digest = file_digest(path, f"{source}: {name}")
        return Descriptor(media_type, digest, os.path.getsize(path))

    config_desc = describe(config_path, MEDIA_DOCKER_CONFIG)
    config_raw, config = read_json(config_path, f"{source}: config")
    diff_ids = config_diff_ids(config, f"{source}: config")
    layers = []
    stated: set[int] = set()  # layers whose digest is the config's diff_id, not yet checked
    for i, path in enumerate(layer_paths):
        compression = blob_compression(path) if os.path.isfile(path) else None
        if (
            compression is Compression.NONE
            and len(diff_ids) == len(layer_paths)
            and DIGEST_RE.match(diff_ids[i])
        ):
            # An uncompressed layer (what `docker save` writes) is its own tar: its digest
            # is the diff_id the config states, checked in the pass that reads the layer
            # (or before its bytes are used as stored), not by reading every layer now.
            layers.append(Descriptor(MEDIA_DOCKER_LAYER, diff_ids[i], os.path.getsize(path)))
            stated.add(i)
            continue
        gz = compression is Compression.GZIP
        layers.append(describe(path, MEDIA_DOCKER_LAYER_GZIP if gz else MEDIA_DOCKER_LAYER))
    # The other layers' digests are those of their files, just read: nothing to check.
    loaded_layers = image_layers(source, layers, diff_ids, layer_paths, checked=True)
    for i in stated:
        loaded_layers[i].check.done = False
    doc = {
        "schemaVersion": 2,
        "mediaType": MEDIA_DOCKER_MANIFEST,
        "config": config_desc.to_json(),
        "layers": [layer.to_json() for layer in layers],
    }
    raw = canonical_json(doc)
    mdesc = Descriptor(MEDIA_DOCKER_MANIFEST, "sha256:" + hashlib.sha256(raw).hexdigest(), len(raw))
    return LoadedImage(
        source, mdesc, doc, config_desc, config, loaded_layers, config_path, top,
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
