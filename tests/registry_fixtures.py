"""Shared pieces of the registry tests: test images, the smith and skopeo command lines."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

from smith.oci.image import ImageConfig, Platform, canonical_json, sha256_digest
from smith.oci.output import write_image
from smith.oci.reading import open_image
from smith.tree import FileTree, InlineBytes

SMITH = str(Path(sys.executable).parent / "smith")


def noise(size: int, seed: int) -> bytes:
    # Incompressible, so that the blob is as large as the test means it to be.
    return random.Random(seed).randbytes(size)


def make_image(
    directory: Path, name: str, *, big: int = 3 << 20, seed: int = 1, arch: str = "amd64"
) -> tuple[Path, str]:
    """A two-layer OCI layout: a large incompressible file, then a small file on top."""
    base_tree = FileTree()
    base_tree.add_dir("data", 0o755)
    base_tree.add_file("data/big", InlineBytes(noise(big, seed)), 0o644, size=big)
    config = ImageConfig(platform=Platform(arch, "linux"), cmd=("/data/app",))
    base = directory / f"{name}-base"
    write_image(base_tree, config, str(base))
    top_tree = FileTree()
    top_tree.add_dir("data", 0o755)
    app = f"#!/bin/sh\necho {name} {seed}\n".encode()
    top_tree.add_file("data/app", InlineBytes(app), 0o755, size=len(app))
    layout = directory / name
    with open_image(str(base)) as parent:
        result = write_image(top_tree, config, str(layout), parent=parent)
    return layout, result.manifest.digest


def make_multi_platform(directory: Path) -> tuple[Path, dict[str, str]]:
    """An OCI layout whose one entry is an image index of an amd64 and an arm64 image."""
    digests = {}
    layout = directory / "multi"
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    manifests = []
    for seed, arch in enumerate(("amd64", "arm64")):
        one, digest = make_image(directory, f"multi-{arch}", big=1 << 16, seed=10 + seed, arch=arch)
        digests[arch] = digest
        for blob in (one / "blobs" / "sha256").iterdir():
            target = blobs / blob.name
            if not target.exists():
                target.write_bytes(blob.read_bytes())
        entry = json.loads((one / "index.json").read_text())["manifests"][0]
        entry.pop("annotations", None)  # the layout's name for it, `latest`: not the index's
        manifests.append(entry)
    index = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": manifests,
        }
    )
    index_digest = sha256_digest(index)
    (blobs / index_digest.removeprefix("sha256:")).write_bytes(index)
    top = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "digest": index_digest,
                "size": len(index),
                "annotations": {"org.opencontainers.image.ref.name": "multi"},
            }
        ],
    }
    (layout / "index.json").write_text(json.dumps(top))
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    digests["index"] = index_digest
    return layout, digests


def run_smith(
    *args: str, home: Path, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "DOCKER_CONFIG"}
    environ["HOME"] = str(home)
    environ.update(env or {})
    proc = subprocess.run(
        [SMITH, *args], capture_output=True, text=True, env=environ, check=False, timeout=300
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"smith {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}")
    return proc


def run_skopeo(skopeo: str, *args: str, home: Path) -> subprocess.CompletedProcess[bytes]:
    environ = dict(os.environ, HOME=str(home))
    proc = subprocess.run(
        [skopeo, *args], capture_output=True, env=environ, check=False, timeout=300
    )
    if proc.returncode != 0:
        raise AssertionError(f"skopeo {' '.join(args)} failed:\n{proc.stderr.decode()}")
    return proc


def layout_manifest_digest(layout: Path) -> str:
    index = json.loads((layout / "index.json").read_text())
    digest: str = index["manifests"][0]["digest"]
    return digest
