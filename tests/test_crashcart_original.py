"""The original crashcart's command lines on a real container: `crashcart ID [CMD]`,
`crashcart -m ID`, `crashcart -u ID`, `crashcart -i IMAGE ID CMD` mean what they meant."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests import test_crashcart_attach as attach_tests
from tests.crashcart_containers import Container

# The attach tests' fixtures and helpers (the toolbox is built once for both modules).
busybox = attach_tests.busybox
micro = attach_tests.micro
state_dir = attach_tests.state_dir
toolbox = attach_tests.toolbox
crashcart = attach_tests.crashcart
crashcart_cmd = attach_tests.crashcart_cmd
env_for = attach_tests.env_for
has_toolbox = attach_tests.has_toolbox
snapshot = attach_tests.snapshot


def test_id_and_command(micro: Container, toolbox: Path, state_dir: Path) -> None:
    before = snapshot(micro)
    env = {**env_for(state_dir), "CRASHCART_TOOLBOX": str(toolbox)}
    done = subprocess.run(
        crashcart_cmd(micro.id, "ls", "-l", "/proc/1/exe"),  # no `--`: all of it is the command
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "/proc/1/exe -> /app/busybox" in done.stdout
    assert snapshot(micro) == before


def test_mount_only_and_unmount(micro: Container, toolbox: Path, state_dir: Path) -> None:
    before = snapshot(micro)
    env = {**env_for(state_dir), "CRASHCART_TOOLBOX": str(toolbox)}
    for flag, mounted in (("-m", True), ("-u", False)):
        done = subprocess.run(
            crashcart_cmd(flag, micro.id), capture_output=True, text=True, env=env, check=False
        )
        assert done.returncode == 0, done.stderr
        assert has_toolbox(micro) is mounted
    assert snapshot(micro) == before


def test_image_option(micro: Container, toolbox: Path, state_dir: Path, tmp_path: Path) -> None:
    from crashcart.image import write_toolbox_image

    image = tmp_path / "toolbox.oci"
    write_toolbox_image(str(toolbox), str(image))
    done = subprocess.run(
        crashcart_cmd("-i", str(image), micro.id, "strace", "-e", "trace=none", "true"),
        capture_output=True,
        text=True,
        env={**env_for(state_dir), "CRASHCART_IMAGES": str(tmp_path / "cache")},
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
