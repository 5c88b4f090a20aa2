"""Independent tools agree with what the writer produces: umoci, skopeo, runc, crun, docker."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from smith.oci.image import ImageConfig
from smith.oci.output import write_image
from smith.tree import FileTree, HostFile, InlineBytes, Kind
from tests import trees
from tests.containers import (
    DockerDaemon,
    busybox_path,
    configure_bundle,
    run_bundle,
    unpack_bundle,
)
from tests.tools import require_tool

GREETING = "hello from a smith image"


def busybox_tree() -> FileTree:
    tree = FileTree()
    tree.add_file("bin/busybox", HostFile(busybox_path()), 0o755)
    tree.add_symlink("bin/sh", "busybox")
    tree.add_file("etc/greeting", InlineBytes(GREETING.encode() + b"\n"))
    for name in ("dev", "proc", "sys", "run", "write", "read"):
        tree.add_dir(name)
    return tree


BUSYBOX_CONFIG = ImageConfig(
    entrypoint=("/bin/busybox",),
    cmd=("cat", "/etc/greeting"),
    env=("PATH=/bin",),
)


@pytest.fixture(scope="module")
def busybox_layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bb") / "layout"
    write_image(busybox_tree(), BUSYBOX_CONFIG, str(out), tag="bb")
    return out


def describe_dir(root: Path) -> dict[str, tuple[str, int, str]]:
    """path -> (kind, permission bits, content digest or link target) of a host directory."""
    out: dict[str, tuple[str, int, str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = Path(dirpath) / name
            rel = str(full.relative_to(root))
            st = full.lstat()
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("symlink", 0o777, os.readlink(full))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode), "")
            else:
                out[rel] = (
                    "file",
                    stat.S_IMODE(st.st_mode),
                    hashlib.sha256(full.read_bytes()).hexdigest(),
                )
    return out


def describe_tree(tree: FileTree) -> dict[str, tuple[str, int, str]]:
    out: dict[str, tuple[str, int, str]] = {}
    for entry in tree:
        if entry.kind is Kind.SYMLINK:
            out[entry.path] = ("symlink", 0o777, entry.target)
        elif entry.kind is Kind.DIR:
            out[entry.path] = ("dir", entry.mode, "")
        else:
            source = tree.get(entry.target) if entry.kind is Kind.HARDLINK else entry
            assert source is not None and source.content is not None
            with source.content.open() as f:
                out[entry.path] = ("file", source.mode, hashlib.sha256(f.read()).hexdigest())
    for path in list(out):  # the writer adds parents that the tree leaves implicit
        parts = path.split("/")
        for i in range(1, len(parts)):
            out.setdefault("/".join(parts[:i]), ("dir", 0o755, ""))
    return out


def test_umoci_unpack_gives_back_exactly_the_tree(tmp_path: Path) -> None:
    tree = trees.awkward_tree()
    write_image(tree, ImageConfig(), str(tmp_path / "img"), tag="t")
    bundle = unpack_bundle(f"{tmp_path / 'img'}:t", tmp_path / "bundle")
    assert describe_dir(bundle / "rootfs") == describe_tree(tree)
    rootfs = bundle / "rootfs"
    assert os.stat(rootfs / "aaa-also-first").st_ino == os.stat(rootfs / "data" / "second").st_ino
    assert os.stat(rootfs / "owned").st_gid == 3000000


def test_skopeo_inspects_and_copies_with_the_same_digests(
    busybox_layout: Path, tmp_path: Path
) -> None:
    require_tool("skopeo")
    inspect = subprocess.run(
        ["skopeo", "inspect", f"oci:{busybox_layout}:bb"],
        capture_output=True,
        text=True,
        check=True,
    )
    info = json.loads(inspect.stdout)
    index = json.loads((busybox_layout / "index.json").read_text())
    assert info["Digest"] == index["manifests"][0]["digest"]
    assert info["Architecture"] == "amd64" and info["Os"] == "linux"
    copy = tmp_path / "copy"
    subprocess.run(
        ["skopeo", "copy", "--preserve-digests", f"oci:{busybox_layout}:bb", f"oci:{copy}:bb"],
        capture_output=True,
        check=True,
    )
    copied = json.loads((copy / "index.json").read_text())
    assert copied["manifests"][0]["digest"] == index["manifests"][0]["digest"]
    ours = sorted(p.name for p in (busybox_layout / "blobs" / "sha256").iterdir())
    theirs = sorted(p.name for p in (copy / "blobs" / "sha256").iterdir())
    assert ours == theirs


@pytest.mark.parametrize("runtime", ["runc", "crun"])
def test_runtime_runs_it_with_a_read_only_root(
    busybox_layout: Path, tmp_path: Path, runtime: str
) -> None:
    bundle = unpack_bundle(f"{busybox_layout}:bb", tmp_path / "bundle")
    configure_bundle(bundle, readonly=True)
    result = run_bundle(runtime, bundle)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == GREETING
    configure_bundle(bundle, args=["/bin/busybox", "touch", "/etc/new"], readonly=True)
    result = run_bundle(runtime, bundle)
    assert result.returncode != 0 and "Read-only file system" in result.stderr


@pytest.mark.docker
def test_docker_loads_and_runs_the_docker_archive(dockerd: DockerDaemon, tmp_path: Path) -> None:
    archive = tmp_path / "bb-docker.tar"
    write_image(
        busybox_tree(), BUSYBOX_CONFIG, str(archive), fmt="docker-archive", tag="smith-bb:test"
    )
    loaded = dockerd.docker("load", "-i", str(archive))
    assert loaded.returncode == 0, loaded.stderr
    assert "smith-bb:test" in loaded.stdout
    ran = dockerd.docker("run", "--rm", "--network", "none", "--read-only", "smith-bb:test")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == GREETING
