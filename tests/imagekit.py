"""Hand-made images for tests: arbitrary (even hostile) layer tars, written into an OCI
layout without going through smith's writer, so that smith's reader is tested against
bytes it did not produce itself."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import zstandard


@dataclass(frozen=True)
class M:
    """One tar member: kind is file, dir, symlink, hardlink, fifo, chardev."""

    name: str
    kind: str = "file"
    data: bytes = b""
    link: str = ""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0


KINDS = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "fifo": tarfile.FIFOTYPE,
    "chardev": tarfile.CHRTYPE,
}


def layer_tar(members: Sequence[M], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        for m in members:
            info = tarfile.TarInfo(m.name)
            info.type = KINDS[m.kind]
            info.mode = m.mode if m.kind != "dir" or m.mode != 0o644 else 0o755
            info.uid, info.gid = m.uid, m.gid
            info.linkname = m.link
            if m.kind == "file":
                info.size = len(m.data)
                tar.addfile(info, io.BytesIO(m.data))
            else:
                tar.addfile(info)
    return out.getvalue()


def compress(data: bytes, how: str) -> bytes:
    if how == "gzip":
        return gzip.compress(data, mtime=0)
    if how == "zstd":
        return zstandard.ZstdCompressor().compress(data)
    return data


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def put_blob(root: str, data: bytes) -> str:
    digest = sha256(data)
    path = os.path.join(root, "blobs", "sha256", digest.removeprefix("sha256:"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return digest


def image_config(diff_ids: Sequence[str], config: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "architecture": "amd64",
        "os": "linux",
        "config": config or {},
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
    }


def write_layout(
    root: str,
    layers: Sequence[bytes],
    config: dict[str, Any] | None = None,
    *,
    how: str = "gzip",
    diff_ids: Sequence[str] | None = None,
    blobs: Sequence[bytes] | None = None,
) -> str:
    """An OCI layout of uncompressed layer tars `layers` (or of ready `blobs`, which may be
    deliberately broken, with their `diff_ids`); returns the manifest digest."""
    os.makedirs(root, exist_ok=True)
    suffix = {"gzip": "+gzip", "zstd": "+zstd", "none": ""}[how]
    descs = []
    for blob in blobs if blobs is not None else [compress(t, how) for t in layers]:
        descs.append(
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar" + suffix,
                "digest": put_blob(root, blob),
                "size": len(blob),
            }
        )
    ids = list(diff_ids) if diff_ids is not None else [sha256(t) for t in layers]
    cfg = json.dumps(image_config(ids, config)).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": put_blob(root, cfg),
                "size": len(cfg),
            },
            "layers": descs,
        }
    ).encode()
    mdigest = put_blob(root, manifest)
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": mdigest,
                "size": len(manifest),
                "annotations": {"org.opencontainers.image.ref.name": "latest"},
            }
        ],
    }
    with open(os.path.join(root, "index.json"), "w") as f:
        json.dump(index, f)
    with open(os.path.join(root, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')
    return mdigest


def layer_blob_path(root: str, index: int) -> str:
    """The blob file of layer `index` of the (single) image in the layout at `root`."""
    with open(os.path.join(root, "index.json")) as f:
        mdigest = json.load(f)["manifests"][0]["digest"]
    with open(os.path.join(root, "blobs", "sha256", mdigest.removeprefix("sha256:"))) as f:
        digest = json.load(f)["layers"][index]["digest"]
    return os.path.join(root, "blobs", "sha256", digest.removeprefix("sha256:"))
