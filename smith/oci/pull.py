"""Pull images from a registry: `pull_image` to a layout or archive, `pulled_layout` for
`open_image`.

The manifest (through an index or manifest list, for the wanted platform), then every blob
streamed into a staging layout, each checked against its digest and size before it gets
its name; the output appears through the same atomic savers as a built image.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

from urllib3.exceptions import HTTPError

from smith import progress
from smith.diskspace import check_space, writing_in
from smith.errors import RegistryError
from smith.leftovers import temp_dir
from smith.limits import DOCUMENT_BYTES
from smith.netread import BoundedBody, deadline_from_now
from smith.oci.blobs import BlobStore, check_digest_form
from smith.oci.image import (
    EVERY_PLATFORM,
    MEDIA_DOCKER_LIST,
    MEDIA_DOCKER_MANIFEST,
    MEDIA_OCI_INDEX,
    MEDIA_OCI_MANIFEST,
    Descriptor,
    Platform,
    sha256_digest,
)
from smith.oci.layout import OutputFormat, choose_format, save_layout, staging_layout
from smith.oci.reading import config_diff_ids, pick_manifest
from smith.oci.reference import Reference, check_tag
from smith.oci.registry import BLOCK_SIZE, RegistryClient, RegistryOptions, decode_json
from smith.oci.transfer import Stopped, as_reference, open_read, run_parallel
from smith.oci.writer import ImageResult, Layer, write_index

log = logging.getLogger("smith.registry")

MANIFEST_ACCEPT = (MEDIA_OCI_MANIFEST, MEDIA_DOCKER_MANIFEST, MEDIA_OCI_INDEX, MEDIA_DOCKER_LIST)


@dataclass(frozen=True)
class PullResult:
    reference: str
    digest: str  # of the image manifest
    image: ImageResult
    downloaded: int  # blob bytes received


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
    check_tag(tag)
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
    with temp_dir("smith-pull-") as root:
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
    """Fetch the image (for `platform`) into `store`; its ImageResult and the bytes fetched."""
    ref = client.ref
    data = fetch_manifest(client, ref.reference)
    doc = decode_json(data, f"{ref}: manifest")
    if not isinstance(doc, dict) or doc.get("schemaVersion") != 2:
        version = doc.get("schemaVersion") if isinstance(doc, dict) else None
        raise RegistryError(f"{ref}: unsupported manifest (schemaVersion {version!r}, not 2)")
    media_type = str(doc.get("mediaType", ""))
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
    if config_desc.size > DOCUMENT_BYTES.count():  # it is read into memory whole
        raise DOCUMENT_BYTES.error(
            f"{ref}: config {config_desc.digest} of {config_desc.size} bytes"
        )
    store.add_bytes(data)
    blobs = list({d.digest: d for d in (config_desc, *layers)}.values())
    missing = sum(d.size for d in blobs if not store.has(d.digest))
    # Their sizes are declared. The layout is a temporary directory: its parent is named.
    check_space(os.path.dirname(store.root), missing, f"the blobs of {ref}")
    with progress.meter(missing):
        counts = run_parallel(
            lambda d, stop: fetch_blob(client, store, d, stop), blobs, client.options.jobs
        )
    config = decode_json(open_read(store.path(config_desc.digest)), f"{ref}: config")
    if not isinstance(config, dict):
        raise RegistryError(f"{ref}: config {config_desc.digest} is not a JSON object")
    image_platform = Platform(
        str(config.get("architecture", "")),
        str(config.get("os", "")),
        str(config.get("variant", "")),
    )
    if mdesc.platform is None:
        # EVERY_PLATFORM (minimize's default) takes a single image whatever its platform.
        if (
            platform is not None
            and platform != EVERY_PLATFORM
            and (
                (image_platform.os, image_platform.architecture)
                != (platform.os, platform.architecture)
                or (platform.variant and image_platform.variant != platform.variant)
            )
        ):
            raise RegistryError(f"{ref} is an image for {image_platform}, not {platform}")
        if image_platform.os and image_platform.architecture:
            mdesc = replace(mdesc, platform=image_platform)
    diff_ids = config_diff_ids(config, f"{ref}: config {config_desc.digest}")
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


def fetch_blob(
    client: RegistryClient, store: BlobStore, desc: Descriptor, stop: threading.Event
) -> int:
    """Stream one blob to disk. A connection that drops or stalls mid-blob resumes with a
    Range request; the blob gets its name only once size and digest match."""
    if store.has(desc.digest):
        return 0
    tmp = os.path.join(store.dir, f".pull-{desc.digest[7:23]}-{threading.get_ident()}")
    what = f"{client.ref}: blob {desc.digest}"
    deadline = deadline_from_now()
    hasher = hashlib.sha256()
    have = failures = 0
    try:
        with writing_in(os.path.dirname(store.root)), open(tmp, "wb") as out:
            while True:
                resp = client.get_blob(desc.digest, have)
                resumed = resp.headers.get("Content-Range", "").startswith(f"bytes {have}-")
                if have and not (resp.status == 206 and resumed):  # no Range: start again
                    out.seek(0)
                    out.truncate()
                    hasher, have = hashlib.sha256(), 0
                complete = False
                # read1 through netread: a registry that trickles meets the deadline.
                body = BoundedBody(resp, what, deadline=deadline, most=desc.size - have, limit=None)
                try:
                    while block := body.read(BLOCK_SIZE):
                        if stop.is_set():
                            raise Stopped
                        have += len(block)
                        hasher.update(block)
                        out.write(block)
                        progress.advance(len(block))
                    if have < desc.size:
                        raise ConnectionError("the blob ended early")
                    complete = True
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
                    if not complete:  # unread bytes must not reach the next request
                        resp.close()
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
