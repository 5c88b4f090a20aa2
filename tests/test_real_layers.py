"""Layers as the real tools of this machine write them (umoci 0.4.7, GNU tar), read as Go's
archive/tar and containerd read them: umoci's `/` entry and missing tar footer, absolute
names mapped into the root, a hard link to a symlink; `..` escapes still refused, and
nothing is ever written outside the content store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from smith.errors import ImageFormatError, UnsafePathError
from smith.oci.reading import open_image, pick_docker_image
from smith.oci.unpack import apply_layers
from smith.tree import FileTree, Kind
from tests.imagekit import compress, layer_blob_path, sha256, write_layout
from tests.tools import require_tool


def flatten(image: str, store: Path) -> FileTree:
    with open_image(image) as loaded:
        tree, _stats = apply_layers(loaded, str(store))
    return tree


def content(tree: FileTree, path: str) -> bytes:
    entry = tree.get(path)
    assert entry is not None and entry.kind is Kind.FILE and entry.content is not None
    with entry.content.open() as f:
        return f.read()


def make_root(root: Path) -> Path:
    """usr/bin/sh -> busybox, and usr/bin/sh.hard a hard link to that symlink (ln -P)."""
    (root / "usr/bin").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "etc/conf").write_bytes(b"conf\n")
    (root / "usr/bin/busybox").write_bytes(b"#!/bin/true\n")
    os.symlink("busybox", root / "usr/bin/sh")
    subprocess.run(["ln", "-P", root / "usr/bin/sh", root / "usr/bin/sh.hard"], check=True)
    return root


def gnu_tar(*args: str | Path) -> bytes:
    tar = require_tool("tar")
    return subprocess.run([tar, *map(str, args)], check=True, capture_output=True).stdout


def tar_names(layer: bytes, tmp: Path) -> list[str]:
    (tmp / "listed.tar").write_bytes(layer)
    listing = gnu_tar("-P", "-tf", tmp / "listed.tar").decode()
    return listing.splitlines()


def umoci_image(tmp: Path, greeting: bytes) -> Path:
    """An image of two `umoci insert` layers: at `/` and at /opt/sub."""
    umoci = require_tool("umoci")
    src = tmp / "src"
    (src / "bin").mkdir(parents=True)
    (src / "bin/hi").write_bytes(greeting)
    # umoci records the source's mtimes: two images made in different seconds would also
    # differ there (seen in CI: `.: mtime differs` before the changed file).
    for path in (src / "bin/hi", src / "bin", src):
        os.utime(path, (1_700_000_000, 1_700_000_000))
    layout = tmp / "layout"

    def run(*args: str | Path) -> None:
        subprocess.run([umoci, *map(str, args)], check=True, capture_output=True)

    run("init", "--layout", layout)
    run("new", "--image", f"{layout}:t")
    run("insert", "--image", f"{layout}:t", src, "/")
    run("insert", "--image", f"{layout}:t", src, "/opt/sub")
    return layout


def test_umoci_insert_at_the_root_and_below(tmp_path: Path) -> None:
    """umoci 0.4.7 writes the root as `/` and ends the layer right after the last file's
    data: no padding, no end-of-archive blocks (umoci #436)."""
    layout = umoci_image(tmp_path, b"hello\n")
    for index in (0, 1):
        raw = subprocess.run(
            ["zcat", layer_blob_path(str(layout), index)], check=True, capture_output=True
        ).stdout
        # The umoci bug this test is about is really there (GNU tar itself refuses these).
        assert len(raw) % 512 != 0 and not raw.endswith(b"\x00" * 1024)
        if index == 0:
            assert raw[:100].rstrip(b"\x00") == b"/"
    tree = flatten(f"{layout}:t", tmp_path / "store")
    assert content(tree, "bin/hi") == b"hello\n"
    assert content(tree, "opt/sub/bin/hi") == b"hello\n"
    assert sorted(tree.paths()) == [
        "bin",
        "bin/hi",
        "opt",
        "opt/sub",
        "opt/sub/bin",
        "opt/sub/bin/hi",
    ]


@pytest.mark.parametrize("how", ["none", "gzip", "zstd"])
def test_gnu_tar_absolute_names_map_into_the_root(tmp_path: Path, how: str) -> None:
    """`tar -P` keeps the leading `/` (as `tar -C / -cf - /etc` with an importer that keeps
    it): docker and containerd put such names inside the root, and so does smith."""
    root = make_root(tmp_path / "root")
    layer = gnu_tar("-P", "-cf", "-", f"--transform=s|^{root}||", root / "etc", root / "usr")
    names = tar_names(layer, tmp_path)
    assert "/etc/conf" in names and all(n.startswith("/") for n in names)
    write_layout(str(tmp_path / "img"), [layer], how=how)
    tree = flatten(str(tmp_path / "img"), tmp_path / "store")
    assert content(tree, "etc/conf") == b"conf\n"
    check_hard_link_to_symlink(tree)


def test_gnu_tar_hard_link_to_a_symlink(tmp_path: Path) -> None:
    """GNU tar writes `usr/bin/sh.hard` as a hard link to the symlink `usr/bin/sh` (what
    `ln -P` made): a second symlink with the same target, as link(2) makes."""
    root = make_root(tmp_path / "root")
    layer = gnu_tar("-C", root, "-cf", "-", "./usr")
    assert "./usr/bin/sh.hard" in tar_names(layer, tmp_path)
    write_layout(str(tmp_path / "img"), [layer])
    check_hard_link_to_symlink(flatten(str(tmp_path / "img"), tmp_path / "store"))


def check_hard_link_to_symlink(tree: FileTree) -> None:
    for name in ("usr/bin/sh", "usr/bin/sh.hard"):
        entry = tree.get(name)
        assert entry is not None and entry.kind is Kind.SYMLINK and entry.target == "busybox"


@pytest.mark.parametrize("transform", ["s|^|../../|", "s|^|/../|", "s|^etc|etc/../..|"])
def test_gnu_tar_dotdot_names_are_refused(tmp_path: Path, transform: str) -> None:
    """`..` names (GNU tar -P keeps them) are refused, never written outside the root."""
    root = make_root(tmp_path / "work" / "root")
    layer = gnu_tar("-P", "-C", root, "-cf", "-", f"--transform={transform}", "etc/conf")
    assert ".." in tar_names(layer, tmp_path)[0]
    blob = compress(layer, "gzip")
    write_layout(str(tmp_path / "img"), [], blobs=[blob], diff_ids=[sha256(layer)])
    before = sorted(p.name for p in tmp_path.iterdir())
    store = tmp_path / "work" / "store"
    with pytest.raises(UnsafePathError, match="climbs out of the root"):
        flatten(str(tmp_path / "img"), store)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    written = [f for f in (tmp_path / "work").rglob("conf") if "root" not in f.parts]
    assert not written


def test_docker_archive_names_match_as_docker_matches_them() -> None:
    manifest = [{"RepoTags": ["app:1"]}, {"RepoTags": ["docker.io/library/web:latest"]}, {}]
    assert pick_docker_image(manifest, "x.tar", "app:1") is manifest[0]
    for name in ("web", "web:latest", "docker.io/library/web", "docker.io/web:latest"):
        assert pick_docker_image(manifest, "x.tar", name) is manifest[1]
    with pytest.raises(ImageFormatError, match=r"no image is named 'app' \(it has: app:1, "):
        pick_docker_image(manifest, "x.tar", "app")
    with pytest.raises(ImageFormatError, match=r"holds 3 images \(.*\(untagged\)\): name one"):
        pick_docker_image(manifest, "x.tar", "")


def test_smith_diff_reads_umoci_layers(tmp_path: Path) -> None:
    """smith diff reads what minimize reads: two umoci images are compared (exit 1, the
    changed file named), not refused."""
    a = umoci_image(tmp_path / "a", b"hello\n")
    b = umoci_image(tmp_path / "b", b"hallo\n")
    proc = subprocess.run(
        [sys.executable, "-m", "smith", "diff", f"{a}:t", f"{b}:t"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.startswith("first cause: layer 1: bin/hi: content"), proc.stdout
