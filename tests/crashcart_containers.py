"""Real containers for crashcart's tests: hand-made microcontainer bundles run by runc/crun.

The bundle stands in for one built by `smith build` (issue 5), which does not exist yet:
a rootfs holding only a static busybox as the program (no `sh` on PATH, nothing else),
read-only, run as a non-root user, with /dev /proc /sys as empty directories.
"""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.containers import CRUN_WRAPPER


def make_rootfs(root: Path, busybox: str) -> None:
    for name in ("dev", "proc", "sys", "write", "read", "run", "etc", "app"):
        (root / name).mkdir(parents=True)
    shutil.copyfile(busybox, root / "app" / "busybox")
    (root / "app" / "busybox").chmod(0o755)
    (root / "etc" / "passwd").write_text("app:x:65534:65534::/:/sbin/nologin\n")
    (root / "etc" / "group").write_text("app:x:65534:\n")
    (root / "etc" / "marker").write_text("inside the microcontainer\n")


def make_bundle(bundle: Path, busybox: str, *, userns: bool = False, dev: bool = True) -> None:
    """A runtime bundle whose process is `/app/busybox sleep` as uid 65534, root read-only."""
    make_rootfs(bundle / "rootfs", busybox)
    subprocess.run(["runc", "spec", "--bundle", str(bundle)], check=True)
    config = json.loads((bundle / "config.json").read_text())
    config["process"]["terminal"] = False
    config["process"]["args"] = ["/app/busybox", "sleep", "100000"]
    config["process"]["user"] = {"uid": 65534, "gid": 65534}
    config["process"]["env"] = ["PATH=/bin"]  # nothing there: no shell usable from PATH
    config["root"]["readonly"] = True
    config["hostname"] = "micro"
    if userns:
        config["linux"]["namespaces"].append({"type": "user"})
        config["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 200000, "size": 65536}]
        config["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 200000, "size": 65536}]
        # A user namespace cannot mount sysfs for a netns it does not own: bind it instead.
        config["mounts"] = [
            m
            for m in config["mounts"]
            if m["destination"] not in ("/sys", "/sys/fs/cgroup", "/dev/mqueue")
        ]
    if not dev:  # /dev stays a plain directory of the root filesystem
        config["mounts"] = [m for m in config["mounts"] if not m["destination"].startswith("/dev")]
    (bundle / "config.json").write_text(json.dumps(config, indent=1))


@dataclass(frozen=True)
class Container:
    runtime: str
    id: str
    pid: int
    bundle: Path


def runtime_command(runtime: str, verb: str) -> list[str]:
    if runtime == "crun" and verb in ("run", "create"):
        return [*CRUN_WRAPPER, verb]
    return [runtime, verb]


def container_pid(runtime: str, cid: str) -> int:
    out = subprocess.run([runtime, "state", cid], capture_output=True, text=True, check=True)
    return int(json.loads(out.stdout)["pid"])


@contextmanager
def running_container(runtime: str, cid: str, bundle: Path) -> Iterator[Container]:
    """Start a detached container; always delete it afterwards, even when the test failed."""
    subprocess.run([runtime, "delete", "--force", cid], capture_output=True, check=False)
    cmd = [*runtime_command(runtime, "run"), "--detach", "--bundle", str(bundle), cid]
    # The detached container inherits stdout/stderr: a pipe would never reach EOF.
    log = bundle / "run.log"
    with log.open("w") as out:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, check=False)
    try:
        assert proc.returncode == 0, f"{runtime} run failed: {log.read_text()}"
        for _ in range(100):
            pid = container_pid(runtime, cid)
            if pid:
                break
            time.sleep(0.05)
        yield Container(runtime, cid, pid, bundle)
    finally:
        subprocess.run([runtime, "delete", "--force", cid], capture_output=True, check=False)


def list_tree(root: Path, *, device_times: bool = True) -> bytes:
    """A byte-exact listing of a tree (path, mode, uid, gid, size, mtime), symlinks unfollowed."""
    lines = []
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        rel = path.relative_to(root)
        mtime = st.st_mtime_ns if device_times or not stat.S_ISCHR(st.st_mode) else 0
        lines.append(f"{rel} {st.st_mode:o} {st.st_uid} {st.st_gid} {st.st_size} {mtime}")
    return "\n".join(lines).encode()
