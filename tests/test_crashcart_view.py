"""The session's private view (crashcart/private.py) on targets whose /dev is unusual.

For each: the target's mount table and a listing of its /dev (device times included, and
/dev's own) are byte-identical before, during and after a session, and nothing appears on
the host: with the host's /dev bound at /dev (`-v /dev:/dev`), with shared mount
propagation between the container and the host, and with a read-only /dev.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests import test_crashcart_attach as attach_tests
from tests.crashcart_containers import Container, list_tree, make_bundle, running_container
from tests.tools import require_root, require_tool

# The attach tests' fixtures and helpers (the toolbox is built once for both modules).
busybox = attach_tests.busybox
state_dir = attach_tests.state_dir
toolbox = attach_tests.toolbox
crashcart_cmd = attach_tests.crashcart_cmd
env_for = attach_tests.env_for


def strict_snapshot(container: Container) -> tuple[str, bytes, str]:
    dev = Path(f"/proc/{container.pid}/root/dev")
    st = dev.stat()
    return (
        Path(f"/proc/{container.pid}/mountinfo").read_text(),
        list_tree(dev),
        f"{st.st_mode:o} {st.st_uid} {st.st_gid} {st.st_mtime_ns} {st.st_ctime_ns}",
    )


def mount_points(pid: str = "self") -> set[str]:
    return {line.split()[4] for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines()}


# A process in a copy of the target's mount namespace made the plain way (unshare(2) keeps
# the propagation): its mounts are peers of the target's shared ones, so it sees what is
# mounted there, as the host or another container sharing them would.
OBSERVER = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
assert libc.setns(os.open(sys.argv[1], os.O_RDONLY), 0x20000) == 0
assert libc.unshare(0x20000) == 0
print("ready", flush=True)
sys.stdin.read()
"""


def host_bound_dev(config: dict[str, object], bundle: Path) -> None:
    mounts = [m for m in config["mounts"] if not m["destination"].startswith("/dev")]  # type: ignore[attr-defined]
    mounts.append({"destination": "/dev", "type": "bind", "source": "/dev", "options": ["rbind"]})
    config["mounts"] = mounts


def shared_propagation(config: dict[str, object], bundle: Path) -> None:
    """/dev is a host directory bound with shared propagation (`-v DIR:/dev:rshared`): a
    mount made on the target's /dev would appear on the host."""
    host_bound_dev(config, bundle)
    mounts = config["mounts"]
    assert isinstance(mounts, list)
    mounts[-1] = {
        "destination": "/dev",
        "type": "bind",
        "source": str(bundle.parent / "hostdev"),
        "options": ["rbind", "rshared"],
    }


def readonly_dev(config: dict[str, object], bundle: Path) -> None:
    linux = config["linux"]
    assert isinstance(linux, dict)
    linux.setdefault("readonlyPaths", []).append("/dev")


@pytest.fixture
def hostdev(tmp_path: Path) -> Iterator[Path]:
    """A host tmpfs that is a shared mount, holding a null device (the shared /dev)."""
    root = tmp_path / "hostdev"
    root.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "cc-hostdev", str(root)], check=True)
    subprocess.run(["mount", "--make-shared", str(root)], check=True)
    try:
        os.mknod(root / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        yield root
    finally:
        subprocess.run(["umount", "-R", "-l", str(root)], check=False)


@contextmanager
def observing(container: Container) -> Iterator[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", OBSERVER, f"/proc/{container.pid}/ns/mnt"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
        yield str(proc.pid)
    finally:
        proc.kill()
        proc.wait()


KINDS: dict[str, Callable[[dict[str, object], Path], None]] = {
    "host /dev": host_bound_dev,
    "shared propagation": shared_propagation,
    "read-only /dev": readonly_dev,
}


@pytest.mark.parametrize(
    ("runtime", "kind"),
    # crun runs here in a private mount namespace of its own (tests/containers.py's
    # CRUN_WRAPPER, for the host's hybrid cgroups): its mounts propagate nowhere.
    [(r, k) for r in ("runc", "crun") for k in KINDS if (r, k) != ("crun", "shared propagation")],
)
def test_nothing_visible_before_during_after(
    kind: str,
    runtime: str,
    tmp_path: Path,
    hostdev: Path,
    busybox: str,
    toolbox: Path,
    state_dir: Path,
) -> None:
    require_root()
    require_tool(runtime)
    bundle = tmp_path / "bundle"
    make_bundle(bundle, busybox)
    config = json.loads((bundle / "config.json").read_text())
    KINDS[kind](config, bundle)
    (bundle / "config.json").write_text(json.dumps(config, indent=1))
    cid = f"cc-view-{runtime}-{kind.split()[0].strip('/')}-{os.getpid()}"
    with running_container(runtime, cid, bundle) as container, observing(container) as observer:
        host_before = mount_points()
        before = strict_snapshot(container)
        session = subprocess.Popen(
            crashcart_cmd(
                *("attach", "--toolbox", str(toolbox), container.id, "--", "sh", "-c"),
                "ls /dev/crashcart/bin/gdb /dev/null 2>&1; echo ready; read x",
            ),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env_for(state_dir),
            text=True,
        )
        try:
            assert session.stdout is not None
            seen = [session.stdout.readline() for _ in range(3)]
            assert seen == ["/dev/crashcart/bin/gdb\n", "/dev/null\n", "ready\n"], seen
            during = strict_snapshot(container)
            host_during = mount_points()
            crashcart_dirs = [p for p in host_during if p.endswith("/crashcart")]
            assert not crashcart_dirs, "the toolbox mount reached the host"
            assert not Path("/dev/crashcart").exists()
            assert "/dev/crashcart" not in mount_points(observer)
            _, err = session.communicate("\n", timeout=30)
            assert session.returncode == 0, err
        finally:
            if session.poll() is None:
                session.kill()
                session.wait()
        after = strict_snapshot(container)
        assert during == before
        assert after == before
        ours = str(tmp_path)
        assert {p for p in host_during if p.startswith(ours)} == {
            p for p in host_before if p.startswith(ours)
        }
        if kind == "shared propagation":
            # The propagation is real: a mount made in the target shows up on the host.
            (hostdev / "probe").mkdir()  # the target's /dev is this host directory
            nsenter = require_tool("nsenter")
            subprocess.run(
                [
                    nsenter,
                    "-t",
                    str(container.pid),
                    "-m",
                    "/app/busybox",
                    "mount",
                    "-t",
                    "tmpfs",
                    "probe",
                    "/dev/probe",
                ],
                check=True,
            )
            assert "/dev/probe" in mount_points(observer)
    assert list(state_dir.iterdir()) == []
