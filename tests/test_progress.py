"""Progress bars on a terminal for upload, download and minimize: bytes and rate; nothing
when stderr is no terminal or with -q."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import pytest

from smith.oci.image import ImageConfig
from smith.oci.output import write_image
from smith.tree import FileTree, InlineBytes
from tests.registry_servers import Registry
from tests.test_original_recipes import registry  # noqa: F401 - the module's registry fixture


def on_terminal(*args: str) -> tuple[int, str]:
    """Run smith with stdout and stderr on a pseudo-terminal; (status, what it showed)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "smith", *args],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        env={**os.environ, "COLUMNS": "120", "TERM": "xterm"},
    )
    os.close(slave)
    shown = b""
    while True:
        ready, _, _ = select.select([master], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    return proc.wait(timeout=60), shown.decode(errors="replace")


@pytest.fixture
def image(tmp_path: Path) -> Path:
    tree = FileTree()
    tree.add_dir("bin")
    tree.add_file("bin/data", InlineBytes(os.urandom(3 << 20)), 0o755)
    out = tmp_path / "img.tar"
    write_image(tree, ImageConfig(entrypoint=("/bin/data",)), str(out))
    return out


def test_upload_download_and_minimize_show_bytes_and_rate(
    tmp_path: Path,
    image: Path,
    registry: Registry,  # noqa: F811
) -> None:
    ref = f"docker://{registry.host}/progress/img:1"
    status, shown = on_terminal("upload", "-i", str(image), "-r", ref, "--insecure")
    assert status == 0, shown
    assert "uploading" in shown and "MB / 3.1 MB at " in shown and "/s" in shown, shown
    status, shown = on_terminal("download", "-r", ref, "-i", str(tmp_path / "d"), "--insecure")
    assert status == 0, shown
    assert "downloading" in shown and " / 3.1 MB at " in shown, shown
    status, shown = on_terminal("minimize", str(image), "-o", str(tmp_path / "m"))
    assert status == 0, shown
    assert "minimizing" in shown and " / 3.1 MB at " in shown, shown
    # -q: no bar on a terminal either.
    status, shown = on_terminal("download", "-q", "-r", ref, "-i", str(tmp_path / "q"),
                                "--insecure")  # fmt: skip
    assert status == 0 and "downloading" not in shown, shown


def test_no_bar_without_a_terminal(tmp_path: Path, image: Path, registry: Registry) -> None:  # noqa: F811
    ref = f"docker://{registry.host}/progress/plain:1"
    for args in (
        ["upload", "-i", str(image), "-r", ref, "--insecure"],
        ["download", "-r", ref, "-i", str(tmp_path / "d"), "--insecure"],
        ["minimize", str(image), "-o", str(tmp_path / "m")],
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "smith", *args], capture_output=True, text=True, check=False
        )
        assert proc.returncode == 0, proc.stderr
        assert "/s" not in proc.stderr and "MB /" not in proc.stderr
