"""Fixed trees whose image digests are golden (tests/golden/writer.json, platforms.json).

Content is generated from fixed seeds, never read from the host, so the digests are the
same on every machine. Run as a script to print the digests of every tree (the
reproducibility test runs it under other Pythons, umasks, locales and hash seeds).
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from dataclasses import replace

from smith.oci.compress import Compression
from smith.oci.image import ImageConfig, Platform
from smith.oci.output import PlatformImage, write_image, write_index_image
from smith.tree import FileTree, InlineBytes


def noise(seed: str, size: int) -> bytes:
    """Deterministic, poorly compressible bytes."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


def text(seed: str, size: int) -> bytes:
    """Deterministic, compressible text."""
    words = [hashlib.md5(f"{seed}{i}".encode()).hexdigest()[:6] for i in range(64)]
    out = bytearray()
    i = 0
    while len(out) < size:
        out += words[(i * 7 + len(out)) % 64].encode() + (b"\n" if i % 11 == 0 else b" ")
        i += 1
    return bytes(out[:size])


def small_tree() -> FileTree:
    tree = FileTree()
    tree.add_file("bin/hello", InlineBytes(b"#!/bin/sh\necho hello\n"), 0o755)
    tree.add_file("etc/empty", InlineBytes(b""))
    tree.add_symlink("usr/bin/hi", "/bin/hello")
    tree.add_dir("run")
    return tree


def awkward_tree() -> FileTree:
    tree = FileTree()
    deep = "/".join(f"level{i:02d}-" + "d" * 20 for i in range(8))
    tree.add_file(f"{deep}/file", InlineBytes(b"deep"))
    tree.add_file("long/" + "n" * 150, InlineBytes(b"long name"))
    tree.add_file("\u00e9t\u00e9/\u65e5\u672c\u8a9e.txt", InlineBytes(b"non-ASCII"))
    tree.add_file(b"latin1-\xe9t\xe9".decode("utf-8", "surrogateescape"), InlineBytes(b"raw"))
    tree.add_file("data/first", InlineBytes(text("a", 5000)), 0o600)
    tree.add_hardlink("data/second", "data/first")
    tree.add_hardlink("aaa-also-first", "data/first")
    tree.add_symlink("data/dangling", "../nowhere/" + "t" * 120)
    tree.add_file("exe/tool", InlineBytes(b"\x7fELF" + noise("tool", 3000)), 0o755)
    tree.add_file("exe/setuid", InlineBytes(b"s"), 0o4755)
    tree.add_dir("sticky", 0o1777)
    tree.add_file("owned", InlineBytes(b"o"), 0o640, uid=1000, gid=3000000)
    return tree


def big_tree() -> FileTree:
    # More than one gzip member (4 MiB cut points) and zstd frames of real size.
    tree = FileTree()
    tree.add_file("blob/noise", InlineBytes(noise("big", 5 << 20)))
    tree.add_file("blob/text", InlineBytes(text("big", 3 << 20)))
    return tree


TREES = {"small": small_tree, "awkward": awkward_tree, "big": big_tree}
CONFIG = ImageConfig(
    user="65534",
    env=("PATH=/usr/bin:/bin", "B=2", "A=1"),
    entrypoint=("/bin/hello",),
    cmd=("--greet",),
    working_dir="/write",
    exposed_ports=("8080/tcp",),
    volumes=("/write",),
    labels=(("org.example.b", "2"), ("org.example.a", "1")),
    stop_signal="SIGTERM",
)


def digests() -> dict[str, dict[str, dict[str, str]]]:
    result: dict[str, dict[str, dict[str, str]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, make in TREES.items():
            for compression in Compression:
                out = f"{tmp}/{name}-{compression}"
                image = write_image(make(), CONFIG, out, compression=compression, tag="golden")
                with open(f"{out}/index.json", "rb") as f:
                    index = "sha256:" + hashlib.sha256(f.read()).hexdigest()
                result.setdefault(name, {})[compression.value] = {
                    "index": index,
                    "manifest": image.manifest.digest,
                    "config": image.config.digest,
                    "layer": image.layers[0].descriptor.digest,
                    "diff_id": image.layers[0].diff_id,
                }
    return result


def platform_digests() -> dict[str, str]:
    """A two-platform index (tests/golden/platforms.json): the small tree as linux/amd64,
    the awkward one as linux/arm64/v8, gzip. Each manifest must also be the one write_image
    writes for its tree alone (test_oci_writer checks that)."""
    images = [
        PlatformImage(small_tree(), CONFIG),
        PlatformImage(awkward_tree(), replace(CONFIG, platform=Platform("arm64", "linux", "v8"))),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        written = write_index_image(images, f"{tmp}/out", tag="golden")
        with open(f"{tmp}/out/index.json", "rb") as f:
            index = "sha256:" + hashlib.sha256(f.read()).hexdigest()
    return {
        "index.json": index,
        "index": written.index.digest,
        "amd64": written.images[0].manifest.digest,
        "arm64": written.images[1].manifest.digest,
    }


if __name__ == "__main__":
    if sys.argv[1:] == ["platforms"]:
        json.dump(platform_digests(), sys.stdout, indent=1, sort_keys=True)
        sys.stdout.write("\n")
        sys.exit(0)
    json.dump(digests(), sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
