"""Whole images to and from a registry: `push_image` and `pull_image`.

Push: every blob the registry already has is skipped (HEAD), or mounted from another
repository of the same registry; the others stream from disk, in one PUT, or in PATCH
chunks above `chunk_size` (a dropped chunk resumes where the registry says it stands).
The manifest goes last, so a tag never names an image with missing blobs.

Pull: the manifest (through an index or manifest list for the wanted platform), then every
blob streamed into a staging layout, each checked against its digest and size before it
gets its name; the output appears through the same atomic savers as a built image.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from urllib3.exceptions import HTTPError

from smith.errors import ImageFormatError, RegistryError, UsageError
from smith.oci.blobs import BlobStore, check_digest_form
from smith.oci.image import (
    MEDIA_DOCKER_CONFIG,
    MEDIA_DOCKER_LAYER,
    MEDIA_DOCKER_LAYER_GZIP,
    MEDIA_DOCKER_LIST,
    MEDIA_DOCKER_MANIFEST,
    MEDIA_OCI_INDEX,
    MEDIA_OCI_LAYER,
    MEDIA_OCI_MANIFEST,
    Descriptor,
    Platform,
    canonical_json,
    index_document,
    sha256_digest,
)
from smith.oci.layout import (
    LoadedImage,
    OutputFormat,
    choose_format,
    load_json,
    open_image,
    pick_manifest,
    read_blob_json,
    read_image_manifest,
    save_layout,
    staging_layout,
    unpacked,
)
from smith.oci.reference import Reference, parse_reference
from smith.oci.registry import (
    BLOCK_SIZE,
    RegistryClient,
    RegistryOptions,
    RegistryRequestError,
    decode_json,
    with_query,
)
from smith.oci.writer import ImageResult, Layer, write_index

log = logging.getLogger("smith.registry")

MANIFEST_ACCEPT = (MEDIA_OCI_MANIFEST, MEDIA_DOCKER_MANIFEST, MEDIA_OCI_INDEX, MEDIA_DOCKER_LIST)
# OCI layer types and their Docker schema 2 equivalents; zstd has none.
DOCKER_LAYER_TYPES = {
    MEDIA_OCI_LAYER + "+gzip": MEDIA_DOCKER_LAYER_GZIP,
    MEDIA_OCI_LAYER: MEDIA_DOCKER_LAYER,
    MEDIA_DOCKER_LAYER_GZIP: MEDIA_DOCKER_LAYER_GZIP,
    MEDIA_DOCKER_LAYER: MEDIA_DOCKER_LAYER,
}
T = TypeVar("T")
R = TypeVar("R")


class Stopped(Exception):
    """Another transfer failed (or Ctrl-C): this one stops between two blocks."""


@dataclass(frozen=True)
class PushResult:
    reference: str  # without credentials
    digest: str  # of the manifest as pushed
    media_type: str
    uploaded: int  # blob bytes sent
    skipped: tuple[str, ...]  # blobs the registry already had
    mounted: tuple[str, ...]  # blobs mounted from another repository


@dataclass(frozen=True)
class PullResult:
    reference: str
    digest: str  # of the image manifest
    image: ImageResult
    downloaded: int  # blob bytes received


def as_reference(ref: str | Reference) -> Reference:
    return parse_reference(ref) if isinstance(ref, str) else ref


def run_parallel(work: Callable[[T, threading.Event], R], items: Sequence[T], jobs: int) -> list[R]:
    """`work(item, stop)` for every item on `jobs` threads; the first error stops the rest
    (they check `stop` between blocks) and is raised.

    The workers are daemon threads, unlike ThreadPoolExecutor's, which the interpreter joins
    at exit: Ctrl-C must end smith at once even while a worker waits on a stalled socket.
    The caller's cleanup (the staging directory) then also defeats any late write."""
    stop = threading.Event()
    lock = threading.Lock()
    pending = list(enumerate(items))
    results: dict[int, R] = {}
    errors: list[BaseException] = []

    def worker() -> None:
        while not stop.is_set():
            with lock:
                if not pending:
                    return
                index, item = pending.pop(0)
            try:
                results[index] = work(item, stop)
            except BaseException as err:
                with lock:
                    errors.append(err)
                stop.set()
                return

    threads = [
        threading.Thread(target=worker, name=f"smith-xfer-{n}", daemon=True)
        for n in range(max(1, min(jobs, len(items))))
    ]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        stop.set()
    if errors:
        raise errors[0]
    return [results[i] for i in range(len(items))]


# -- push ----------------------------------------------------------------------------------


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
) -> PushResult:
    """Push the image at `source` (a layout, an archive, or another registry reference)."""
    options = options or RegistryOptions()
    target = as_reference(ref)
    with open_image(source, platform=platform, registry=options) as image:
        client = RegistryClient(target, options, push=True, mount_from=mount_from)
        return push_loaded(client, image, target, docker_media=docker_media, mount_from=mount_from)


def push_index(
    source: str,
    ref: str | Reference,
    *,
    options: RegistryOptions | None = None,
    mount_from: Sequence[str] = (),
) -> PushResult:
    """Push every image of a multi-platform layout or archive, then the index under the tag
    (as `skopeo copy --all`). The layout holds either one image index, pushed byte for byte,
    or several image manifests, pushed as a new index of them."""
    options = options or RegistryOptions()
    target = as_reference(ref)
    with unpacked(source) as root:
        top = load_json(os.path.join(root, "index.json"), f"{source}: index.json")
        try:
            entries = [Descriptor.from_json(m) for m in top.get("manifests") or []]
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise ImageFormatError(f"{source}: index.json is malformed ({err})") from None
        if len(entries) == 1 and entries[0].media_type in (MEDIA_OCI_INDEX, MEDIA_DOCKER_LIST):
            media_type = entries[0].media_type
            data = open_read(os.path.join(root, "blobs", "sha256", entries[0].digest[7:]))
            index = read_blob_json(root, source, entries[0], "index")
            children = [Descriptor.from_json(m) for m in index.get("manifests") or []]
        elif len(entries) > 1:
            media_type = MEDIA_OCI_INDEX
            children = [replace(d, annotations=()) for d in entries]
            data = canonical_json(index_document(children))
        else:
            raise UsageError(f"{source} holds a single image: push it without --all")
        client = RegistryClient(target, options, push=True, mount_from=mount_from)
        uploaded = 0
        skipped: list[str] = []
        mounted: list[str] = []
        for desc in children:
            if desc.media_type not in (MEDIA_OCI_MANIFEST, MEDIA_DOCKER_MANIFEST):
                raise UsageError(f"{source}: nested index {desc.digest} is not supported")
            image = read_image_manifest(root, source, desc)
            one = push_loaded(client, image, target.with_digest(desc.digest), mount_from=mount_from)
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
) -> PushResult:
    """Push one image through `client`: blobs first, then the manifest under `target`'s tag
    (or its digest, for the images of an index)."""
    options = client.options
    blobs = {d.digest: d for d in (image.config_descriptor, *image.layers)}

    def push_one(desc: Descriptor, stop: threading.Event) -> tuple[str, int]:
        return push_blob(client, desc, image.blob_path(desc.digest), mount_from, stop)

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


def manifest_bytes(image: LoadedImage) -> tuple[bytes, str]:
    """The manifest exactly as stored (its digest is the image's identity)."""
    desc = image.manifest_descriptor
    if desc.digest in image.blob_paths:
        with open(image.blob_path(desc.digest), "rb") as f:
            data = f.read()
    else:  # a docker-archive has no manifest blob: smith's reader made a canonical one
        data = canonical_json(image.manifest)
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
    path: str,
    mount_from: Sequence[str],
    stop: threading.Event,
) -> tuple[str, int]:
    """Make sure the registry has the blob: ("skipped"|"mounted"|"uploaded", bytes sent)."""
    if client.has_blob(desc.digest):
        log.info("%s: %s already there", client.ref, desc.digest)
        return "skipped", 0
    location = ""
    for repo in mount_from:
        location = client.start_upload(desc.digest, mount_from=repo)
        if not location:
            log.info("%s: %s mounted from %s", client.ref, desc.digest, repo)
            return "mounted", 0
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
    client.request(
        "PUT",
        with_query(location, digest=desc.digest),
        headers={"Content-Length": "0"},
        ok=(201,),
        what=f"finish upload of {desc.digest}",
    )
    return sent


def upload_offset(client: RegistryClient, location: str, digest: str) -> tuple[int, str]:
    """Where an interrupted upload stands: `Range: 0-<last byte>` from GET on it."""
    resp = client.request("GET", location, ok=(204,), what=f"status of upload of {digest}")
    last = resp.headers.get("Range", "").rpartition("-")[2]
    if not last.isdigit() or int(last) == 0:
        # "0-0" means zero or one byte: only starting again is unambiguous.
        raise RegistryRequestError(f"upload of {digest}: cannot resume", transient=True)
    return int(last) + 1, client.location(resp)


# -- pull ----------------------------------------------------------------------------------


def pull_image(
    ref: str | Reference,
    output: str,
    *,
    options: RegistryOptions | None = None,
    platform: Platform | None = None,
    fmt: str | None = None,
    tag: str = "",
) -> PullResult:
    """Pull one image (for `platform`) and save it to `output`, which appears only whole."""
    options = options or RegistryOptions()
    source = as_reference(ref)
    out_format, gz = choose_format(output, fmt)
    if out_format is OutputFormat.DOCKER_ARCHIVE and not tag and source.tag:
        tag = f"{source.registry}/{source.repository}:{source.tag}"
    client = RegistryClient(source, options)
    with staging_layout(output) as store:
        result, downloaded = pull_into(client, store, platform)
        write_index(store, result, tag)
        save_layout(store, result, output, out_format, gz=gz, tag=tag)
    return PullResult(str(source), result.manifest.digest, result, downloaded)


@contextmanager
def pulled_layout(
    ref: str, *, platform: Platform | None = None, options: RegistryOptions | None = None
) -> Iterator[tuple[str, str]]:
    """Pull into a temporary OCI layout: (its root, the reference for messages)."""
    source = as_reference(ref)
    client = RegistryClient(source, options or RegistryOptions())
    with tempfile.TemporaryDirectory(prefix="smith-pull-") as root:
        store = BlobStore(root)
        result, _ = pull_into(client, store, platform)
        write_index(store, result)
        yield root, str(source)


def fetch_manifest(client: RegistryClient, reference: str) -> bytes:
    """Manifest bytes, checked against the digest asked for, or the one the registry says."""
    if ":" in reference:  # a digest (tags have no colon): it goes into the URL path
        check_digest_form(reference, f"{client.ref}: a manifest")
    data, _, said = client.get_manifest(reference, MANIFEST_ACCEPT)
    digest = sha256_digest(data)
    expected = reference if reference.startswith("sha256:") else said
    if expected.startswith("sha256:") and expected != digest:
        raise RegistryError(
            f"{client.ref}: the manifest {expected} arrived with digest {digest}: refusing it"
        )
    return data


def pull_into(
    client: RegistryClient, store: BlobStore, platform: Platform | None
) -> tuple[ImageResult, int]:
    ref = client.ref
    data = fetch_manifest(client, ref.reference)
    doc = decode_json(data, f"{ref}: manifest")
    media_type = str(doc.get("mediaType", "")) if isinstance(doc, dict) else ""
    if media_type in (MEDIA_OCI_INDEX, MEDIA_DOCKER_LIST) or "manifests" in doc:
        chosen = pick_manifest(
            doc,
            str(ref),
            platform,
            "",
            lambda d: decode_json(fetch_manifest(client, d.digest), f"{ref}: index {d.digest}"),
        )
        data = fetch_manifest(client, chosen.digest)
        doc = decode_json(data, f"{ref}: manifest {chosen.digest}")
        mdesc = replace(chosen, annotations=())
    else:
        if media_type not in (MEDIA_OCI_MANIFEST, MEDIA_DOCKER_MANIFEST, ""):
            raise RegistryError(f"{ref}: unsupported manifest media type {media_type!r}")
        mdesc = Descriptor(media_type or MEDIA_OCI_MANIFEST, sha256_digest(data), len(data))
    try:
        config_desc = Descriptor.from_json(doc["config"])
        layers = tuple(Descriptor.from_json(layer) for layer in doc.get("layers") or [])
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise RegistryError(f"{ref}: manifest {mdesc.digest} is malformed ({err})") from None
    for desc in (config_desc, *layers):
        check_descriptor(desc, f"{ref}: manifest {mdesc.digest}")
    store.add_bytes(data)
    blobs = list({d.digest: d for d in (config_desc, *layers)}.values())
    counts = run_parallel(
        lambda d, stop: fetch_blob(client, store, d, stop), blobs, client.options.jobs
    )
    config = decode_json(open_read(store.path(config_desc.digest)), f"{ref}: config")
    image_platform = Platform(
        str(config.get("architecture", "")),
        str(config.get("os", "")),
        str(config.get("variant", "")),
    )
    if mdesc.platform is None:
        if platform is not None and (
            (image_platform.os, image_platform.architecture) != (platform.os, platform.architecture)
            or (platform.variant and image_platform.variant != platform.variant)
        ):
            raise RegistryError(f"{ref} is an image for {image_platform}, not {platform}")
        if image_platform.os and image_platform.architecture:
            mdesc = replace(mdesc, platform=image_platform)
    diff_ids = tuple((config.get("rootfs") or {}).get("diff_ids") or ())
    if len(diff_ids) != len(layers):
        raise RegistryError(
            f"{ref}: config lists {len(diff_ids)} diff_ids for {len(layers)} layers"
        )
    result_layers = tuple(Layer(d, i) for d, i in zip(layers, diff_ids, strict=True))
    return ImageResult(mdesc, config_desc, result_layers), sum(counts)


def check_descriptor(desc: Descriptor, what: str) -> None:
    """A registry's documents are untrusted: a digest becomes a URL path and a file name,
    so only the sha256:<hex> form passes, and a size must be a size."""
    check_digest_form(desc.digest, f"{what}: a descriptor")
    if desc.size < 0:
        raise RegistryError(f"{what}: descriptor {desc.digest} has a negative size")


def open_read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def fetch_blob(
    client: RegistryClient, store: BlobStore, desc: Descriptor, stop: threading.Event
) -> int:
    """Stream one blob to disk. A connection that drops or stalls mid-blob resumes with a
    Range request; the blob gets its name only once size and digest match."""
    if store.has(desc.digest):
        return 0
    tmp = os.path.join(store.dir, f".pull-{desc.digest[7:23]}-{threading.get_ident()}")
    hasher = hashlib.sha256()
    have = failures = 0
    try:
        with open(tmp, "wb") as out:
            while True:
                resp = client.get_blob(desc.digest, have)
                if have and resp.status == 200:  # no Range support: start again
                    out.seek(0)
                    out.truncate()
                    hasher, have = hashlib.sha256(), 0
                try:
                    for block in resp.stream(BLOCK_SIZE):
                        if stop.is_set():
                            raise Stopped
                        have += len(block)
                        if have > desc.size:
                            raise RegistryError(
                                f"{client.ref}: blob {desc.digest} is longer than its "
                                f"{desc.size} bytes: refusing it"
                            )
                        hasher.update(block)
                        out.write(block)
                    if have < desc.size:
                        raise ConnectionError("the blob ended early")
                    break
                except (HTTPError, ConnectionError, TimeoutError) as err:
                    if stop.is_set():
                        raise Stopped from None
                    if failures >= client.options.retries:
                        raise RegistryError(
                            f"{client.ref}: blob {desc.digest} broke off at {have} of "
                            f"{desc.size} bytes ({type(err).__name__}) after {failures + 1} "
                            "attempt(s)"
                        ) from None
                    client.pause(failures, f"blob {desc.digest}: {type(err).__name__} at {have}")
                    failures += 1
                finally:
                    resp.release_conn()
        actual = "sha256:" + hasher.hexdigest()
        if actual != desc.digest:
            raise RegistryError(
                f"{client.ref}: blob {desc.digest} arrived with digest {actual}: refusing it"
            )
        os.replace(tmp, store.path(desc.digest))
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    log.info("%s: %s downloaded (%d bytes)", client.ref, desc.digest, desc.size)
    return desc.size
