"""The images of a multi-platform layout or archive: what `upload --all` pushes and what
`minimize` and `diff` take with `--platform all`."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from smith.errors import ImageFormatError, UsageError
from smith.oci.image import (
    MEDIA_DOCKER_LIST,
    MEDIA_OCI_INDEX,
    Descriptor,
    Platform,
    canonical_json,
    index_document,
    parse_platform,
)
from smith.oci.layout import load_json, read_blob_json, unpacked
from smith.oci.reference import is_registry_reference
from smith.oci.referrers import is_referrer_entry
from smith.oci.transfer import open_read


@dataclass(frozen=True)
class PlatformIndex:
    """The index of a layout's images: its media type and bytes, and its manifests."""

    media_type: str
    data: bytes
    children: tuple[Descriptor, ...]


def read_platform_index(root: str, source: str) -> PlatformIndex | None:
    """The layout at `root` holds one image index (read byte for byte) or several image
    manifests (a new index of them); None when it holds a single image."""
    top = load_json(os.path.join(root, "index.json"), f"{source}: index.json")
    try:
        entries = [
            Descriptor.from_json(m)
            for m in top.get("manifests") or []
            if not is_referrer_entry(m)  # attached artifacts go with their image
        ]
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise ImageFormatError(f"{source}: index.json is malformed ({err})") from None
    if len(entries) == 1 and entries[0].media_type in (MEDIA_OCI_INDEX, MEDIA_DOCKER_LIST):
        data = open_read(os.path.join(root, "blobs", "sha256", entries[0].digest[7:]))
        index = read_blob_json(root, source, entries[0], "index")
        try:
            children = tuple(Descriptor.from_json(m) for m in index.get("manifests") or [])
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise ImageFormatError(f"{source}: index is malformed ({err})") from None
        return PlatformIndex(entries[0].media_type, data, children)
    if len(entries) > 1:
        children = tuple(replace(d, annotations=()) for d in entries)
        return PlatformIndex(MEDIA_OCI_INDEX, canonical_json(index_document(children)), children)
    return None


def index_children(source: str) -> tuple[Descriptor, ...]:
    """The manifests of a multi-platform layout or archive, in its order (none for one
    image)."""
    with unpacked(source) as root:
        index = read_platform_index(root, source)
        return index.children if index is not None else ()


def index_platforms(source: str) -> tuple[Platform, ...]:
    """The platforms of a multi-platform layout or archive, in its order (one image: its
    platform if the index names it, else none)."""
    children = index_children(source)
    missing = [d.digest for d in children if d.platform is None]
    if missing:
        raise ImageFormatError(f"{source}: the index names no platform for {missing[0]}")
    return tuple(d.platform for d in children if d.platform is not None)


def chosen_platforms(image: str, platforms: tuple[str, ...], command: str) -> tuple[Platform, ...]:
    """The platforms a repeatable --platform names; `all`: every one of `image`'s index."""
    if "all" not in platforms:
        return tuple(parse_platform(p) for p in platforms)
    if len(platforms) > 1:
        raise UsageError("--platform all goes alone")
    if is_registry_reference(image):
        raise UsageError(f"--platform all reads a local layout or archive, not {image!r}")
    found = index_platforms(image)
    if not found:
        raise UsageError(f"{image} holds a single image: {command} it without --platform all")
    return found
