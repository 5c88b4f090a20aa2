"""A synthetic 1 GiB image for the peak-memory check: a static busybox as the program, one
512 MiB file (kept, so the writer streams it too) and 512 files of 1 MiB (dropped), in a
gzip layer written as a stream, so that making it needs no memory either."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path
from typing import BinaryIO

from tests.imagekit import image_config, put_blob
from tests.tools import require_tool

MIB = 1 << 20
BIG_KEPT = ("/data/big.bin",)


class Pattern(io.RawIOBase):
    """`size` bytes of a repeating, cheap-to-compress pattern, read in pieces."""

    def __init__(self, size: int, seed: int) -> None:
        self.left = size
        self.block = (hashlib.sha256(str(seed).encode()).digest() + b"\x00" * 4064) * 16

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        n = min(len(buffer), self.left, len(self.block))
        buffer[:n] = self.block[:n]
        self.left -= n
        return n


class Hashing:
    """A write-only sink that hashes (and counts) what passes through to `out`."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.hash = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        return self.out.write(data)

    def flush(self) -> None:
        self.out.flush()


def write_big_image(
    root: Path, *, big: int = 512 * MIB, small_count: int = 512, small_size: int = MIB
) -> None:
    """The image, by default of 1 GiB; bench/bench_minimize.py asks for other shapes
    (2 GiB; a million small entries, 1000 to a directory)."""
    root.mkdir(parents=True)
    with open(require_tool("busybox"), "rb") as f:
        busybox = f.read()
    tmp = root / "layer.tmp"
    with open(tmp, "wb") as raw:
        gz = gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0)
        sink = Hashing(gz)  # type: ignore[arg-type]
        with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]

            def add(name: str, size: int, data: BinaryIO, mode: int = 0o644) -> None:
                info = tarfile.TarInfo(name)
                info.size, info.mode = size, mode
                tar.addfile(info, data)

            add("bin/busybox", len(busybox), io.BytesIO(busybox), 0o755)
            add("data/big.bin", big, io.BufferedReader(Pattern(big, 0)))
            for i in range(small_count):
                name = f"data/small/{i // 1000:04d}/{i % 1000:03d}"
                add(name, small_size, io.BufferedReader(Pattern(small_size, i)))
        gz.close()
    diff_id = "sha256:" + sink.hash.hexdigest()
    with open(tmp, "rb") as f:
        digest = "sha256:" + hashlib.file_digest(f, "sha256").hexdigest()
    size = os.path.getsize(tmp)
    blob = root / "blobs" / "sha256" / digest.removeprefix("sha256:")
    blob.parent.mkdir(parents=True, exist_ok=True)
    os.rename(tmp, blob)
    config = json.dumps(image_config([diff_id], {"Entrypoint": ["/bin/busybox", "true"]})).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": put_blob(str(root), config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": digest,
                    "size": size,
                }
            ],
        }
    ).encode()
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": put_blob(str(root), manifest),
                "size": len(manifest),
            }
        ],
    }
    (root / "index.json").write_text(json.dumps(index))
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
