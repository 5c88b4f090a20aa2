"""OCI config, manifest and index documents, as canonical JSON.

Canonical means: sorted keys, compact separators, UTF-8, no trailing newline. The same
values always give the same bytes, and so the same digest; no host name, path, time or tool
version is ever written into a hashed document.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import platform as host_platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from smith.arch import oci_platform_of
from smith.errors import ImageFormatError, UsageError

MEDIA_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
MEDIA_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MEDIA_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
MEDIA_DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"


def canonical_json(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def rfc3339(epoch: int) -> str:
    # Always UTC with a Z: TZ must not reach any hashed byte.
    moment = datetime.datetime.fromtimestamp(epoch, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Platform:
    architecture: str = "amd64"
    os: str = "linux"
    variant: str = ""

    def to_json(self) -> dict[str, str]:
        doc = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            doc["variant"] = self.variant
        return doc

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


# What `smith minimize` asks for when no --platform is named: every platform of an index
# (pick_manifest raises SeveralPlatforms naming them), else the one image there is.
EVERY_PLATFORM = Platform("*", "*")


class SeveralPlatforms(Exception):
    """pick_manifest, asked for EVERY_PLATFORM, found an index of several platforms."""

    def __init__(self, platforms: tuple[Platform, ...]) -> None:
        super().__init__(", ".join(map(str, platforms)))
        self.platforms = platforms


def refuse_one_of_several(candidates: Sequence[Descriptor]) -> None:
    """For EVERY_PLATFORM: SeveralPlatforms when `candidates` are one image per platform
    (each names a platform of its own; docker buildx's attestation entries, unknown/unknown,
    are not images). Several images without platforms are named images: chosen by name."""
    found = [c.platform for c in candidates if c.platform is None or c.platform.os != "unknown"]
    platforms = tuple(p for p in found if p is not None)
    if len(platforms) > 1 and len(platforms) == len(found) == len(set(platforms)):
        raise SeveralPlatforms(platforms)


def host_platform_default() -> Platform:
    """The platform to pick from an index when none is named: the host's."""
    arch, variant = oci_platform_of(host_platform.machine())
    # arm64 has one variant, v8, which many indexes leave out: ask for the architecture
    # alone (a platform without a variant matches any); arm's v6 and v7 must be told apart.
    return Platform(arch, "linux", "" if variant == "v8" else variant)


def parse_platform(value: str) -> Platform:
    parts = value.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise UsageError(f"platform must be OS/ARCH[/VARIANT], not {value!r}")
    return Platform(parts[1], parts[0], parts[2] if len(parts) == 3 else "")


def descriptor_size(value: Any) -> int:
    """An int64 size, as the OCI spec has it: `Infinity`, 1e400, "12", true are not sizes
    (int() of the first raises OverflowError, which no caller expects)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise ValueError(f"the size {json_excerpt(value)} is not a size in bytes")
    return value


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: tuple[tuple[str, str], ...] = ()
    platform: Platform | None = None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.annotations:
            doc["annotations"] = dict(self.annotations)
        if self.platform is not None:
            doc["platform"] = self.platform.to_json()
        return doc

    @classmethod
    def from_json(cls, doc: Any) -> Descriptor:
        """A descriptor of an untrusted document: KeyError, TypeError or ValueError when it
        is not one (the caller names the document)."""
        if not isinstance(doc, Mapping):
            raise TypeError(f"a descriptor is {json_excerpt(doc)}, not an object")
        annotations = doc.get("annotations") or {}
        if not isinstance(annotations, Mapping) or not all(
            isinstance(v, str) for v in annotations.values()
        ):
            raise TypeError(f"annotations are {json_excerpt(annotations)}, not strings by name")
        plat = doc.get("platform")
        return cls(
            media_type=str(doc.get("mediaType", "")),
            digest=str(doc["digest"]),
            size=descriptor_size(doc["size"]),
            annotations=tuple(sorted((str(k), v) for k, v in annotations.items())),
            platform=Platform(
                str(plat.get("architecture", "")),
                str(plat.get("os", "")),
                str(plat.get("variant", "")),
            )
            if isinstance(plat, Mapping)
            else None,
        )


@dataclass(frozen=True)
class ImageConfig:
    """What a runtime needs to run the image; the fields of the OCI config's `config`."""

    platform: Platform = field(default_factory=Platform)
    user: str = ""
    env: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    working_dir: str = ""
    exposed_ports: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    stop_signal: str = ""


def config_document(
    config: ImageConfig,
    diff_ids: Sequence[str],
    epoch: int,
    history: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    inner: dict[str, Any] = {}
    if config.user:
        inner["User"] = config.user
    if config.env:
        inner["Env"] = list(config.env)  # declared order: later entries may refer to earlier
    if config.entrypoint is not None:
        inner["Entrypoint"] = list(config.entrypoint)
    if config.cmd is not None:
        inner["Cmd"] = list(config.cmd)
    if config.working_dir:
        inner["WorkingDir"] = config.working_dir
    if config.exposed_ports:
        inner["ExposedPorts"] = {port: {} for port in config.exposed_ports}
    if config.volumes:
        inner["Volumes"] = {vol: {} for vol in config.volumes}
    if config.labels:
        inner["Labels"] = dict(config.labels)
    if config.stop_signal:
        inner["StopSignal"] = config.stop_signal
    doc: dict[str, Any] = {
        **config.platform.to_json(),
        "created": rfc3339(epoch),
        "config": inner,
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
    }
    doc["history"] = list(history) or [
        {"created": rfc3339(epoch), "created_by": "smith"} for _ in diff_ids
    ]
    return doc


def manifest_document(
    config: Descriptor, layers: Sequence[Descriptor], annotations: Mapping[str, str] | None = None
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": MEDIA_OCI_MANIFEST,
        "config": config.to_json(),
        "layers": [layer.to_json() for layer in layers],
    }
    if annotations:
        doc["annotations"] = dict(annotations)
    return doc


def index_document(manifests: Sequence[Descriptor]) -> dict[str, Any]:
    return {
        "schemaVersion": 2,
        "mediaType": MEDIA_OCI_INDEX,
        "manifests": [m.to_json() for m in manifests],
    }


def config_from_document(doc: Any) -> ImageConfig:
    """The ImageConfig of an existing image's config JSON (for minimize and parents).
    The document is untrusted: a field of the wrong type is an ImageFormatError naming it,
    as a runtime refuses to decode it; Entrypoint and Cmd may be one string (Docker's
    strslice)."""
    if not isinstance(doc, Mapping):
        raise ImageFormatError(f"the image config is {json_excerpt(doc)}, not an object")
    inner = doc.get("config") or {}
    if not isinstance(inner, Mapping):
        raise ImageFormatError(f"the image config's config is {json_excerpt(inner)}, not an object")

    def wrong(key: str, value: Any, want: str) -> ImageFormatError:
        return ImageFormatError(f"the image config's {key} is {json_excerpt(value)}, not {want}")

    def strings(key: str, *, one: bool = False) -> tuple[str, ...] | None:
        value = inner.get(key)
        if value is None:
            return None
        if one and isinstance(value, str):
            return (value,)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise wrong(key, value, "a list of strings")
        return tuple(value)

    def names(key: str) -> tuple[str, ...]:
        value = inner.get(key) or {}
        if not isinstance(value, Mapping):
            raise wrong(key, value, "an object")
        return tuple(sorted(str(k) for k in value))

    labels = inner.get("Labels") or {}
    if not isinstance(labels, Mapping) or not all(isinstance(v, str) for v in labels.values()):
        raise wrong("Labels", labels, "an object of strings")
    for key in ("User", "WorkingDir", "StopSignal"):
        if not isinstance(inner.get(key) or "", str):
            raise wrong(key, inner[key], "a string")
    return ImageConfig(
        platform=Platform(
            str(doc.get("architecture", "")), str(doc.get("os", "")), str(doc.get("variant", ""))
        ),
        user=str(inner.get("User") or ""),
        env=strings("Env") or (),
        entrypoint=strings("Entrypoint", one=True),
        cmd=strings("Cmd", one=True),
        working_dir=str(inner.get("WorkingDir") or ""),
        exposed_ports=names("ExposedPorts"),
        volumes=names("Volumes"),
        labels=tuple(sorted((str(k), v) for k, v in labels.items())),
        stop_signal=str(inner.get("StopSignal") or ""),
    )


def json_excerpt(value: Any) -> str:
    """A piece of an untrusted JSON value for a one-line message."""
    try:
        text = json.dumps(value, ensure_ascii=True)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
