"""Running what smith writes with real runtimes: runc, crun (wrapped) and dockerd."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from tests.tools import require_root, require_tool

# crun fails on this host's hybrid cgroup layout unless the unified hierarchy is hidden
# from it in a private mount namespace (docs/ARCHITECTURE.md, "Tests"). Only `run`/`create` need it.
CRUN_WRAPPER = [
    "unshare",
    "-m",
    "--propagation",
    "private",
    "sh",
    "-c",
    'umount /sys/fs/cgroup/unified 2>/dev/null; exec crun "$@"',
    "crun",
]


def unpack_bundle(image: str, bundle: Path) -> Path:
    """`umoci unpack` an OCI layout reference (dir:tag) into a runtime bundle."""
    require_tool("umoci")
    subprocess.run(
        ["umoci", "unpack", "--image", image, str(bundle)], check=True, capture_output=True
    )
    return bundle


def configure_bundle(
    bundle: Path,
    *,
    args: Sequence[str] | None = None,
    readonly: bool = True,
    uid: int | None = None,
    host_network: bool = False,
) -> None:
    """Adjust a bundle's config.json: read-only root, no terminal, optional args and user."""
    path = bundle / "config.json"
    config = json.loads(path.read_text())
    config["root"]["readonly"] = readonly
    config["process"]["terminal"] = False
    if args is not None:
        config["process"]["args"] = list(args)
    if uid is not None:
        config["process"]["user"] = {"uid": uid, "gid": uid}
    if host_network:
        config["linux"]["namespaces"] = [
            ns for ns in config["linux"]["namespaces"] if ns["type"] != "network"
        ]
    path.write_text(json.dumps(config))


@dataclass(frozen=True)
class RunResult:
    returncode: int
    stdout: str
    stderr: str


def run_bundle(runtime: str, bundle: Path, timeout: float = 60) -> RunResult:
    """Run a bundle to completion with runc or crun; always delete the container."""
    require_root()
    require_tool(runtime)
    cid = f"smith-test-{uuid.uuid4().hex[:12]}"
    base = CRUN_WRAPPER if runtime == "crun" else ["runc"]
    try:
        proc = subprocess.run(
            [*base, "run", "--bundle", str(bundle), cid],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    finally:
        subprocess.run([runtime, "delete", "--force", cid], capture_output=True, check=False)
    return RunResult(proc.returncode, proc.stdout, proc.stderr)


@dataclass(frozen=True)
class DockerDaemon:
    host: str

    def docker(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["docker", "-H", self.host, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def start_dockerd(workdir: Path, storage_driver: str = "vfs") -> Iterator[DockerDaemon]:
    """A private dockerd (own data-root, exec-root and socket; no bridge, no iptables).
    vfs works anywhere; overlay2 is what writes opaque directories into layers."""
    require_root()
    dockerd = require_tool("dockerd")
    require_tool("docker")
    workdir.mkdir(parents=True, exist_ok=True)
    sock = workdir / "docker.sock"
    log = (workdir / "dockerd.log").open("wb")
    proc = subprocess.Popen(
        [
            dockerd,
            "--data-root",
            str(workdir / "data"),
            "--exec-root",
            str(workdir / "exec"),
            "-H",
            f"unix://{sock}",
            "--pidfile",
            str(workdir / "dockerd.pid"),
            "--bridge=none",
            "--iptables=false",
            "--ip6tables=false",
            f"--storage-driver={storage_driver}",
            "--default-ulimit",
            "nofile=1024:1024",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"dockerd exited: {(workdir / 'dockerd.log').read_text()[-2000:]}"
                )
            if sock.exists():
                try:
                    with socket.socket(socket.AF_UNIX) as s:
                        s.connect(str(sock))
                    daemon = DockerDaemon(f"unix://{sock}")
                    if daemon.docker("version").returncode == 0:
                        break
                except OSError:
                    pass
            if time.monotonic() > deadline:
                raise RuntimeError("dockerd did not start within 60 s")
            time.sleep(0.2)
        yield daemon
    finally:
        stop_daemon(proc, log)
        # containerd leaves mounts under the data root; unmount before removing it.
        subprocess.run(
            [
                "sh",
                "-c",
                f"grep -o ' {workdir}[^ ]*' /proc/self/mountinfo"
                " | sort -r | xargs -r -n1 umount -l",
            ],
            check=False,
        )
        shutil.rmtree(workdir, ignore_errors=True)


def stop_daemon(proc: subprocess.Popen[bytes], log: IO[bytes]) -> None:
    """SIGTERM a daemon a fixture started, SIGKILL it after 30 s; close its log."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()


def busybox_path() -> str:
    """The static busybox from Debian's busybox-static: runs in an image with no libc."""
    return require_tool("busybox")
