"""A toolbox is recognised, not trusted by its path; an image becomes a relocated toolbox.

Refused in one line: the host's root, a symlink to it, /proc/PID/root, a mount root of the
host, a directory without the marker `crashcart toolbox build` writes. What is mounted is
the toolbox directory alone (no submount of it), read-only, nosuid, nodev. `--toolbox
IMAGE` of an image of plain (unrelocated) dynamic programs relocates them as `crashcart
toolbox build` does, so they load the image's libraries, never the target's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import test_crashcart_attach as attach_tests
from tests.crashcart_containers import Container
from tests.tools import require_tool

# The attach tests' fixtures and helpers (the toolbox is built once for both modules).
busybox = attach_tests.busybox
micro = attach_tests.micro
state_dir = attach_tests.state_dir
toolbox = attach_tests.toolbox
crashcart = attach_tests.crashcart
crashcart_cmd = attach_tests.crashcart_cmd
env_for = attach_tests.env_for
snapshot = attach_tests.snapshot


@pytest.fixture
def host_mount(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs mounted on the host that carries a copy of the marker: still refused."""
    point = tmp_path / "mnt"
    point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "cc-mnt", str(point)], check=True)
    try:
        (point / "crashcart-toolbox.json").write_text("{}\n")
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], check=False)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("/", "--toolbox / is a root filesystem, not a toolbox"),
        ("{link}", "(which is /) is a root filesystem"),
        ("/proc/1/root", "--toolbox /proc/1/root"),
        ("/proc/self/root/", "is a root filesystem"),
        ("/proc/{pid}/root/", "is a root filesystem"),
        ("{mount}", "is a mount root of the host, not a toolbox"),
        ("{plain}", "is not a toolbox: it has no crashcart-toolbox.json"),
    ],
)
def test_a_toolbox_is_recognised_not_trusted(
    micro: Container,
    state_dir: Path,
    tmp_path: Path,
    host_mount: Path,
    spec: str,
    message: str,
) -> None:
    (tmp_path / "to-root").symlink_to("/")
    (tmp_path / "plain" / "bin").mkdir(parents=True)
    values = {
        "link": str(tmp_path / "to-root"),
        "mount": str(host_mount),
        "plain": str(tmp_path / "plain"),
        "pid": str(micro.pid),
    }
    before = snapshot(micro)
    done = crashcart(
        state_dir, "attach", "--toolbox", spec.format(**values), micro.id, "--", "true"
    )
    assert done.returncode == 1, done.stderr
    assert message.format(**values) in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert snapshot(micro) == before


def test_only_the_toolbox_is_mounted_read_only(
    micro: Container, toolbox: Path, state_dir: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "toolbox"
    shutil.copytree(toolbox, copy, symlinks=True)
    extra = copy / "usr" / "share" / "extra"
    extra.mkdir(parents=True)
    subprocess.run(["mount", "--bind", "/etc", str(extra)], check=True)  # not the toolbox's
    try:
        done = crashcart(
            state_dir,
            *("attach", "--toolbox", str(copy), micro.id, "--", "sh", "-c"),
            "ls /dev/crashcart/usr/share/extra | wc -l;"
            " grep ' /dev/crashcart ' /proc/self/mountinfo; touch /dev/crashcart/x 2>&1",
        )
    finally:
        subprocess.run(["umount", str(extra)], check=True)
    assert done.returncode != 0
    lines = done.stdout.splitlines()
    assert lines[0].strip() == "0", "a mount below the toolbox came along"
    options = lines[1].split()[5].split(",")
    assert {"ro", "nosuid", "nodev"} <= set(options), lines[1]
    assert "Read-only file system" in lines[2]


def plain_image_tree(root: Path) -> None:
    """The host's dynamic curl with its libraries and loader, where Debian keeps them:
    a program tree that `crashcart toolbox build` never relocated."""
    curl = require_tool("curl")
    out = subprocess.run(["ldd", curl], capture_output=True, text=True, check=True).stdout
    files = [curl]
    for line in out.splitlines():
        parts = line.split()
        if "=>" in parts and len(parts) >= 3 and parts[2].startswith("/"):
            files.append(parts[2])
        elif parts and parts[0].startswith("/"):
            files.append(parts[0])  # the loader
    for name in files:
        real = os.path.realpath(name)
        for where in {name, real}:
            dest = root / where.lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            if where == real:
                shutil.copy2(real, dest)
            elif not dest.exists():
                dest.symlink_to(os.path.relpath(real, os.path.dirname(where)))


def test_an_image_of_plain_programs_is_relocated(
    micro: Container, state_dir: Path, tmp_path: Path
) -> None:
    from crashcart.image import write_toolbox_image

    tree = tmp_path / "tree"
    plain_image_tree(tree)
    image = tmp_path / "curl.oci"
    write_toolbox_image(str(tree), str(image))
    env = {**env_for(state_dir), "CRASHCART_IMAGES": str(tmp_path / "cache")}
    before = snapshot(micro)
    done = subprocess.run(
        crashcart_cmd("attach", "--toolbox", str(image), micro.id, "--", "curl", "--version"),
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("curl ")
    (unpacked,) = (tmp_path / "cache").iterdir()
    manifest = json.loads((unpacked / "crashcart-toolbox.json").read_text())
    assert manifest["digest"].startswith("sha256:")
    assert "curl" in manifest["programs"]
    assert snapshot(micro) == before
