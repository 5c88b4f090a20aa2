"""Push whole images to a registry: `push_image`, and `push_index` for multi-platform ones.

Every blob the registry already has is skipped (HEAD), or mounted from another repository
of the same registry (`mount_from`, tried for every blob; `known`, the repository that holds
one blob, as a fleet's earlier pushes do); the others stream from disk, in one PUT, or in
PATCH chunks above `chunk_size` (a dropped chunk resumes where the registry says it
stands). The manifest goes last, so a tag never names an image with missing blobs.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from smith import progress
from smith.errors import ImageFormatError, RegistryError, UsageError
from smith.oci.image import (
    MEDIA_DOCKER_CONFIG,
    MEDIA_DOCKER_LAYER,
    MEDIA_DOCKER_LAYER_GZIP,
    MEDIA_DOCKER_MANIFEST,
    MEDIA_OCI_LAYER,
    MEDIA_OCI_MANIFEST,
    Descriptor,
    Platform,
    canonical_json,
    sha256_digest,
)
from smith.oci.index import read_platform_index
from smith.oci.loaded import LoadedImage
from smith.oci.reading import open_image, read_image_manifest, unpacked
from smith.oci.reference import Reference
from smith.oci.registry import (
    RegistryClient,
    RegistryOptions,
    RegistryRequestError,
    decode_json,
    with_query,
)
from smith.oci.transfer import Stopped, as_reference, run_parallel

log = logging.getLogger("smith.registry")

# OCI layer types and their Docker schema 2 equivalents; zstd has none.
DOCKER_LAYER_TYPES = {
    MEDIA_OCI_LAYER + "+gzip": MEDIA_DOCKER_LAYER_GZIP,
    MEDIA_OCI_LAYER: MEDIA_DOCKER_LAYER,
    MEDIA_DOCKER_LAYER_GZIP: MEDIA_DOCKER_LAYER_GZIP,
    MEDIA_DOCKER_LAYER: MEDIA_DOCKER_LAYER,
}


@dataclass(frozen=True)
class PushResult:
    reference: str  # without credentials
    digest: str  # of the manifest as pushed
    media_type: str
    uploaded: int  # blob bytes sent
    skipped: tuple[str, ...]  # blobs the registry already had
    mounted: tuple[str, ...]  # blobs mounted from another repository


class FileSlice:
    """`length` bytes of a file from `offset`: a request body urllib3 streams by blocks."""

    def __init__(self, path: str, offset: int, length: int, stop: threading.Event) -> None:
        self.file = open(path, "rb")  # noqa: SIM115 - closed by the request
        self.file.seek(offset)
        self.left = length
        self.stop = stop

    def read(self, size: int = -1) -> bytes:
        if self.stop.is_set():
            raise Stopped
        size = self.left if size < 0 else min(size, self.left)
        data = self.file.read(size)
        self.left -= len(data)
        progress.advance(len(data))
        return data

    def close(self) -> None:
        self.file.close()


def push_image(
    source: str,
    ref: str | Reference,
    *,
    options: RegistryOptions | None = None,
    platform: Platform | None = None,
    docker_media: bool = False,
    mount_from: Sequence[str] = (),
    known: Mapping[str, str] | None = None,
) -> PushResult:
    """Push the image at `source` (a layout, an archive, or another registry reference)."""
    options = options or RegistryOptions()
    target = as_reference(ref)
    with open_image(source, platform=platform, registry=options) as image:
        client = RegistryClient(target, options, push=True, mount_from=scoped(mount_from, known))
        return push_loaded(
            client, image, target, docker_media=docker_media, mount_from=mount_from, known=known
        )


def push_index(
    source: str,
    ref: str | Reference,
    *,
    options: RegistryOptions | None = None,
    mount_from: Sequence[str] = (),
    known: Mapping[str, str] | None = None,
) -> PushResult:
    """Push every image of a multi-platform layout or archive, then the index under the tag
    (as `skopeo copy --all`). The layout holds either one image index, pushed byte for byte,
    or several image manifests, pushed as a new index of them."""
    options = options or RegistryOptions()
    target = as_reference(ref)
    with unpacked(source) as root:
        index = read_platform_index(root, source)
        if index is None:
            raise UsageError(f"{source} holds a single image: push it without --all")
        media_type, data, children = index.media_type, index.data, index.children
        client = RegistryClient(target, options, push=True, mount_from=scoped(mount_from, known))
        uploaded = 0
        skipped: list[str] = []
        mounted: list[str] = []
        for desc in children:
            if desc.media_type not in (MEDIA_OCI_MANIFEST, MEDIA_DOCKER_MANIFEST):
                raise UsageError(f"{source}: nested index {desc.digest} is not supported")
            image = read_image_manifest(root, source, desc)
            one = push_loaded(
                client, image, target.with_digest(desc.digest), mount_from=mount_from, known=known
            )
            uploaded += one.uploaded
            skipped += one.skipped
            mounted += one.mounted
        digest, _ = push_manifest(client, target, data, media_type)
    return PushResult(str(target), digest, media_type, uploaded, tuple(skipped), tuple(mounted))


def push_loaded(
    client: RegistryClient,
    image: LoadedImage,
    target: Reference,
    *,
    docker_media: bool = False,
    mount_from: Sequence[str] = (),
    known: Mapping[str, str] | None = None,
) -> PushResult:
    """Push one image through `client`: blobs first, then the manifest under `target`'s tag
    (or its digest, for the images of an index)."""
    options = client.options
    # Each blob once, as stored: a docker-archive may list one layer file twice. A layer's
    # content is checked (read once) only when it is to be uploaded: one the registry has
    # or mounts is not read at all. The config was checked when the image was read.
    blobs: dict[str, tuple[Descriptor, str | Callable[[], str]]] = {
        image.config_descriptor.digest: (image.config_descriptor, image.config_path)
    }
    for layer in image.layers:
        blobs.setdefault(layer.digest, (layer.descriptor, layer.verified_path))

    def push_one(
        blob: tuple[Descriptor, str | Callable[[], str]], stop: threading.Event
    ) -> tuple[str, int]:
        holder = (known or {}).get(blob[0].digest)
        repos = [holder, *(r for r in mount_from if r != holder)] if holder else mount_from
        return push_blob(client, blob[0], blob[1], repos, stop)

    with progress.meter(sum(desc.size for desc, _ in blobs.values())):
        outcomes = run_parallel(push_one, list(blobs.values()), options.jobs)
    data, media_type = manifest_bytes(image)
    if docker_media and media_type == MEDIA_OCI_MANIFEST:
        data, media_type = docker_manifest(data, str(target))
    digest, media_type = push_manifest(client, target, data, media_type)
    states = dict(zip(blobs, outcomes, strict=True))
    return PushResult(
        reference=str(target),
        digest=digest,
        media_type=media_type,
        uploaded=sum(n for _, n in outcomes),
        skipped=tuple(d for d, (state, _) in states.items() if state == "skipped"),
        mounted=tuple(d for d, (state, _) in states.items() if state == "mounted"),
    )


def scoped(mount_from: Sequence[str], known: Mapping[str, str] | None) -> list[str]:
    """The repositories a push may mount from: a token must grant pull on each."""
    return list(dict.fromkeys([*mount_from, *sorted(set((known or {}).values()))]))


def manifest_bytes(image: LoadedImage) -> tuple[bytes, str]:
    """The manifest exactly as stored (its digest is the image's identity)."""
    desc = image.manifest_descriptor
    # A docker-archive has no manifest blob: these are the canonical ones smith's reader made.
    data = image.manifest_bytes
    if sha256_digest(data) != desc.digest:
        raise ImageFormatError(f"{image.source}: manifest {desc.digest} does not match")
    media_type = str(image.manifest.get("mediaType") or desc.media_type or MEDIA_OCI_MANIFEST)
    return data, media_type


def docker_manifest(data: bytes, shown: str) -> tuple[bytes, str]:
    """The same image with Docker schema 2 media types (a new manifest, a new digest)."""
    doc: dict[str, Any] = decode_json(data, "manifest")
    layers = []
    for layer in doc.get("layers") or []:
        kind = DOCKER_LAYER_TYPES.get(str(layer.get("mediaType", "")))
        if kind is None:
            raise RegistryError(
                f"{shown}: layer media type {layer.get('mediaType')!r} has no Docker schema 2 "
                "equivalent",
                hint="build with gzip layers to push Docker media types",
            )
        layers.append({**docker_descriptor(layer), "mediaType": kind})
    converted = {
        "schemaVersion": 2,
        "mediaType": MEDIA_DOCKER_MANIFEST,
        "config": {**docker_descriptor(doc["config"]), "mediaType": MEDIA_DOCKER_CONFIG},
        "layers": layers,
    }
    return canonical_json(converted), MEDIA_DOCKER_MANIFEST


def docker_descriptor(desc: dict[str, Any]) -> dict[str, Any]:
    # Schema 2 descriptors have no annotations; keep only the fields it defines.
    return {k: v for k, v in desc.items() if k in ("mediaType", "digest", "size", "urls")}


def push_manifest(
    client: RegistryClient, target: Reference, data: bytes, media_type: str
) -> tuple[str, str]:
    """PUT the manifest under the tag (or digest); fall back to Docker schema 2 media types
    when the registry refuses an OCI manifest, as old registries do. Returns the digest and
    media type of what was stored."""
    digest = sha256_digest(data)
    if target.digest and not target.tag and target.digest != digest:
        raise UsageError(f"the image's manifest is {digest}, not the {target.digest} asked for")
    where = target.tag or digest
    try:
        answered = client.put_manifest(where, data, media_type)
    except RegistryRequestError as err:
        if media_type != MEDIA_OCI_MANIFEST or err.status not in (400, 415):
            raise
        log.warning("%s refused the OCI manifest (%s); pushing Docker media types", target, err)
        data, media_type = docker_manifest(data, str(target))
        digest = sha256_digest(data)
        answered = client.put_manifest(where, data, media_type)
    if answered and answered != digest:
        raise RegistryError(
            f"{target}: the registry stored the manifest as {answered}, not {digest}"
        )
    return digest, media_type


def push_blob(
    client: RegistryClient,
    desc: Descriptor,
    blob: str | Callable[[], str],
    mount_from: Sequence[str],
    stop: threading.Event,
) -> tuple[str, int]:
    """Make sure the registry has the blob: ("skipped"|"mounted"|"uploaded", bytes sent).
    `blob` is its file, or gives it (checked) when it is to be uploaded."""
    if client.has_blob(desc.digest):
        log.info("%s: %s already there", client.ref, desc.digest)
        return "skipped", 0
    location = ""
    for repo in mount_from:
        if location:  # the previous repository did not have it: drop that session
            client.cancel_upload(location)
        location = client.start_upload(desc.digest, mount_from=repo)
        if not location:
            log.info("%s: %s mounted from %s", client.ref, desc.digest, repo)
            return "mounted", 0
    path = blob if isinstance(blob, str) else blob()
    options = client.options
    for attempt in range(options.retries + 1):
        if stop.is_set():
            raise Stopped
        location = location or client.start_upload(desc.digest)
        try:
            if desc.size <= options.chunk_size:
                sent = upload_whole(client, desc, path, location, stop)
            else:
                sent = upload_chunks(client, desc, path, location, stop)
        except RegistryRequestError as err:
            if not err.transient or attempt == options.retries:
                raise
            if client.has_blob(desc.digest):  # it landed; only the answer was lost
                return "uploaded", desc.size
            client.pause(attempt, f"upload of {desc.digest}: {err}; starting it again")
            location = ""
            continue
        log.info("%s: %s uploaded (%d bytes)", client.ref, desc.digest, desc.size)
        return "uploaded", sent
    raise AssertionError("unreachable")


def upload_whole(
    client: RegistryClient, desc: Descriptor, path: str, location: str, stop: threading.Event
) -> int:
    """One PUT with the whole blob (the 'monolithic' upload)."""
    client.request(
        "PUT",
        with_query(location, digest=desc.digest),
        headers={"Content-Type": "application/octet-stream", "Content-Length": str(desc.size)},
        body=lambda: FileSlice(path, 0, desc.size, stop),
        ok=(201,),
        retry=False,
        what=f"upload of {desc.digest}",
    )
    return desc.size


def upload_chunks(
    client: RegistryClient, desc: Descriptor, path: str, location: str, stop: threading.Event
) -> int:
    """PATCH chunks, then an empty PUT. A chunk that fails on the way resumes from what the
    registry reports it has (GET on the upload), rather than from the beginning."""
    chunk = client.options.chunk_size
    offset = sent = failures = 0
    while offset < desc.size:
        if stop.is_set():
            raise Stopped
        length = min(chunk, desc.size - offset)
        start = offset
        try:
            resp = client.request(
                "PATCH",
                location,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(length),
                    "Content-Range": f"{start}-{start + length - 1}",
                },
                body=functools.partial(FileSlice, path, start, length, stop),
                ok=(202,),
                retry=False,
                what=f"upload of {desc.digest} at {start}",
            )
        except RegistryRequestError as err:
            if not err.transient or failures >= client.options.retries:
                raise
            client.pause(failures, f"chunk of {desc.digest}: {err}")
            failures += 1
            offset, location = upload_offset(client, location, desc.digest)
            sent += length
            continue
        location = client.location(resp)
        offset += length
        sent += length
    try:
        client.request(
            "PUT",
            with_query(location, digest=desc.digest),
            headers={"Content-Length": "0"},
            ok=(201,),
            what=f"finish upload of {desc.digest}",
        )
    except RegistryRequestError:
        # A retried PUT finds the session gone if the first one landed and its answer was lost.
        if not client.has_blob(desc.digest):
            raise
    return sent


def upload_offset(client: RegistryClient, location: str, digest: str) -> tuple[int, str]:
    """Where an interrupted upload stands: `Range: 0-<last byte>` from GET on it."""
    resp = client.request("GET", location, ok=(204,), what=f"status of upload of {digest}")
    last = resp.headers.get("Range", "").rpartition("-")[2]
    if not last.isdigit() or int(last) == 0:
        # "0-0" means zero or one byte: only starting again is unambiguous.
        raise RegistryRequestError(f"upload of {digest}: cannot resume", transient=True)
    return int(last) + 1, client.location(resp)
