"""A synthetic 1 GiB image for the peak-memory check: a static busybox as the program, one
512 MiB file (kept, so the writer streams it too) and 512 files of 1 MiB (dropped), in a
gzip layer written as a stream, so that making it needs no memory either."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import random
import subprocess
import tarfile
from collections.abc import Iterator
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
    busybox = busybox_bytes()
    with (
        gzip_layer(root, ["/bin/busybox", "true"]) as sink,
        tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar,  # type: ignore[call-overload]
    ):

        def add(name: str, size: int, data: BinaryIO, mode: int = 0o644) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mode = size, mode
            tar.addfile(info, data)

        add("bin/busybox", len(busybox), io.BytesIO(busybox), 0o755)
        add("data/big.bin", big, io.BufferedReader(Pattern(big, 0)))
        for i in range(small_count):
            name = f"data/small/{i // 1000:04d}/{i % 1000:03d}"
            add(name, small_size, io.BufferedReader(Pattern(small_size, i)))


def busybox_bytes() -> bytes:
    with open(require_tool("busybox"), "rb") as f:
        return f.read()


@contextlib.contextmanager
def gzip_layer(root: Path, entrypoint: list[str]) -> Iterator[Hashing]:
    """The sink of a gzip layer (level 1) written as a stream into a new directory `root`,
    made the one-layer OCI layout of an image running `entrypoint` at the end."""
    root.mkdir(parents=True)
    tmp = root / "layer.tmp"
    with open(tmp, "wb") as raw:
        gz = gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0)
        sink = Hashing(gz)  # type: ignore[arg-type]
        yield sink
        gz.close()
    write_one_layer_layout(root, tmp, "sha256:" + sink.hash.hexdigest(), entrypoint)


NAME_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_-"
SUFFIXES = ("", ".py", ".h", ".so.1", ".txt", ".json", ".mo", ".gz", ".pm", ".js")


def deep_paths(entries: int, seed: int = 0) -> Iterator[tuple[str, bool]]:
    """`entries` (path, is_directory) in tar order, as a real image's tree is (as this
    host's /usr: paths of ~70 characters, one directory to ~10 files): directories nested
    up to 4 levels, 2 to 20 files each, names of 8 to 30 characters (a tree of synthetic
    `NNNN/NNN` names would understate what a real path costs)."""
    rng = random.Random(seed)

    def name() -> str:
        stem = "".join(rng.choices(NAME_CHARS, k=rng.randint(8, 26)))
        return stem + rng.choice(SUFFIXES)

    left = entries
    pending = [("usr", 0)]
    while pending and left > 0:
        directory, depth = pending.pop()
        yield directory, True
        left -= 1
        for _ in range(min(left, rng.randint(2, 20))):
            yield f"{directory}/{name()}", False
            left -= 1
        below = rng.randint(1, 12) if depth < 3 else 0
        pending += ((f"{directory}/{name()}", depth + 1) for _ in range(below))
        if not pending and left > 0:  # a tree ran out of room below: start another
            pending.append((f"usr/{name()}", 1))


def write_deep_image(root: Path, *, entries: int, seed: int = 0) -> None:
    """An image of busybox and `entries` small files and directories (deep_paths), in one
    gzip layer: the per-entry memory of a real tree's paths (bench_entry_memory.py)."""
    busybox = busybox_bytes()
    with gzip_layer(root, ["/bin/busybox", "true"]) as sink:
        # Not tarfile.open: a TarFile keeps every member it wrote (a million of them).
        info = tarfile.TarInfo("bin/busybox")
        info.size, info.mode = len(busybox), 0o755
        write_member(sink, info, busybox)
        for path, is_dir in deep_paths(entries, seed):
            info = tarfile.TarInfo(path)
            if is_dir:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                write_member(sink, info, b"")
            else:
                body = path.encode()[-40:]  # small, different files (packed, as small are)
                info.size = len(body)
                write_member(sink, info, body)
        sink.write(b"\0" * 1024)


def write_member(sink: Hashing, info: tarfile.TarInfo, body: bytes) -> None:
    sink.write(info.tobuf(tarfile.PAX_FORMAT))
    if body:
        sink.write(body + b"\0" * (-len(body) % tarfile.BLOCKSIZE))


# In this order, so that an image of ~78k entries and ~1.6 GB is what real ones hold: the
# libraries, many small data files (share, include), some of everything else.
HOST_DIRS = (
    "usr/bin/bash",
    "usr/lib/x86_64-linux-gnu",
    "usr/lib64",
    "usr/sbin",
    "usr/share",
    "usr/include",
    "usr/lib",
    "usr/bin",
)
HOST_LINKS = {"bin": "usr/bin", "lib": "usr/lib", "lib64": "usr/lib64", "sbin": "usr/sbin"}


def write_host_image(root: Path, *, entries: int, max_bytes: int, program: str) -> None:
    """An image as a real one is: the host's own files (ELF programs and libraries, data,
    scripts, symlinks) under HOST_DIRS, taken in that order and path order until `entries`
    entries or `max_bytes` bytes of files (none over 32 MiB), in one layer compressed by
    `pigz -6` (gzip's default level, as docker writes them); its entrypoint is `program`."""
    root.mkdir(parents=True)
    tmp = root / "layer.tmp"
    seen: set[str] = set()
    with open(tmp, "wb") as raw:
        pigz = subprocess.Popen(
            [require_tool("pigz"), "-6", "-c"], stdin=subprocess.PIPE, stdout=raw
        )
        assert pigz.stdin is not None
        sink = Hashing(pigz.stdin)  # type: ignore[arg-type]
        count = total = 0
        with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
            for name, target in HOST_LINKS.items():
                info = tarfile.TarInfo(name)
                info.type, info.linkname = tarfile.SYMTYPE, target
                tar.addfile(info)
            for top in HOST_DIRS:
                for path in host_files(Path("/") / top):
                    rel = str(path.relative_to("/"))
                    if rel in seen or count >= entries or total >= max_bytes:
                        continue
                    seen.add(rel)
                    info = tar.gettarinfo(str(path), rel)
                    info.uid = info.gid = 0
                    info.uname = info.gname = ""
                    if info.isreg():
                        if info.size > 32 * MIB:
                            continue
                        total += info.size
                        with open(path, "rb") as f:
                            tar.addfile(info, f)
                    elif info.isdir() or info.issym():
                        tar.addfile(info)
                    else:
                        continue
                    count += 1
        pigz.stdin.close()
        assert pigz.wait() == 0
    write_one_layer_layout(root, tmp, "sha256:" + sink.hash.hexdigest(), [program])


def host_files(top: Path) -> list[Path]:
    """Directories, files and symlinks below `top`, in path order (a directory first)."""
    if not top.is_dir():
        return [top]
    found: list[Path] = []
    for base, dirs, files in os.walk(top):
        dirs.sort()
        found.append(Path(base))
        found += (Path(base) / name for name in dirs if (Path(base) / name).is_symlink())
        found += (Path(base) / name for name in sorted(files))
    return found


def write_one_layer_layout(root: Path, layer: Path, diff_id: str, entrypoint: list[str]) -> None:
    """An OCI layout around the gzip layer file `layer` (moved into its blobs)."""
    with open(layer, "rb") as f:
        digest = "sha256:" + hashlib.file_digest(f, "sha256").hexdigest()
    size = os.path.getsize(layer)
    blob = root / "blobs" / "sha256" / digest.removeprefix("sha256:")
    blob.parent.mkdir(parents=True, exist_ok=True)
    os.rename(layer, blob)
    config = json.dumps(image_config([diff_id], {"Entrypoint": entrypoint})).encode()
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
