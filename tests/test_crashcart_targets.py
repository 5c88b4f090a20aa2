"""Finding the target: containerd (NAMESPACE/ID, or an ID in one namespace), podman by name,
and one-line refusals that say what to try (a hung dockerd: attach by pid or full id).

containerd and podman are started here with their own state under the test's directory;
their containers run the same stand-in microcontainer as the other crashcart tests.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from crashcart.target import CONTAINERD_RUNC_ROOT
from tests import test_crashcart_attach as attach_tests
from tests.crashcart_containers import make_rootfs
from tests.tools import require_root, require_tool

# The attach tests' fixtures and helpers (the toolbox is built once for both modules).
busybox = attach_tests.busybox
state_dir = attach_tests.state_dir
toolbox = attach_tests.toolbox
crashcart_cmd = attach_tests.crashcart_cmd
env_for = attach_tests.env_for

SCRIPT = "ls -l /proc/1/exe; cat /etc/marker"


def run_script(
    verb: str, env: dict[str, str], toolbox: Path, *args: str, script: str = SCRIPT
) -> subprocess.CompletedProcess[str]:
    """`crashcart VERB --toolbox TOOLBOX ARGS... -- sh -c SCRIPT`, finished."""
    return subprocess.run(
        crashcart_cmd(verb, "--toolbox", str(toolbox), *args, "--", "sh", "-c", script),
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def attach(env: dict[str, str], toolbox: Path, target: str) -> subprocess.CompletedProcess[str]:
    return run_script("attach", env, toolbox, target)


def sees_the_micro(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 0, done.stderr
    assert "/proc/1/exe -> /app/busybox" in done.stdout
    assert "inside the microcontainer" in done.stdout


POD = f"web-{os.getpid()}"  # a Kubernetes pod of the fixture's containerd, namespace "shop"
POD_LABELS = (f"io.kubernetes.pod.name={POD}", "io.kubernetes.pod.namespace=shop")


@pytest.fixture(scope="module")
def containerd_task(busybox: str) -> Iterator[tuple[str, str]]:
    """(address, namespace) of a containerd of the test's own with a task `micro` running,
    and in its k8s.io namespace a CRI-style pod POD: a sandbox (pause) container, which is
    never a target, and a running container `app` with the labels the CRI plugin sets."""
    require_root()
    containerd = require_tool("containerd")
    ctr_tool = require_tool("ctr")
    work = Path(tempfile.mkdtemp(prefix="cc-ctd-"))  # short: a socket path has 108 bytes
    address = str(work / "c.sock")
    (work / "config.toml").write_text(
        f'version = 2\nroot = "{work}/root"\nstate = "{work}/state"\n'
        f'[grpc]\n  address = "{address}"\n[ttrpc]\n  address = "{address}.ttrpc"\n'
    )
    daemon = subprocess.Popen(
        [containerd, "--config", str(work / "config.toml")],
        stdout=subprocess.DEVNULL,
        stderr=(work / "log").open("w"),
    )
    namespace = f"cctest{os.getpid()}"
    ctr = [ctr_tool, "-a", address, "-n", namespace]
    try:
        deadline = time.monotonic() + 30
        while subprocess.run([*ctr, "version"], capture_output=True, check=False).returncode:
            assert daemon.poll() is None and time.monotonic() < deadline, (work / "log").read_text()
            time.sleep(0.1)
        make_rootfs(work / "rootfs", busybox)
        subprocess.run(
            [
                *ctr,
                "run",
                "-d",
                "--rootfs",
                str(work / "rootfs"),
                "micro",
                "/app/busybox",
                "sleep",
                "100000",
            ],
            check=True,
            capture_output=True,
        )
        cri = [ctr_tool, "-a", address, "-n", "k8s.io"]
        labels = [arg for label in POD_LABELS for arg in ("--label", label)]
        subprocess.run(
            [
                *cri,
                "containers",
                "create",
                *labels,
                "--label",
                "io.cri-containerd.kind=sandbox",
                "--rootfs",
                str(work / "rootfs"),
                f"{POD}-sandbox",
                "/app/busybox",
                "true",
            ],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [
                *cri,
                "run",
                "-d",
                *labels,
                "--label",
                "io.kubernetes.container.name=app",
                "--label",
                "io.cri-containerd.kind=container",
                "--rootfs",
                str(work / "rootfs"),
                f"{POD}-app",
                "/app/busybox",
                "sleep",
                "100000",
            ],
            check=True,
            capture_output=True,
        )
        # And a container of the pod that crashed: from an image (so on an overlayfs
        # snapshot, as the CRI plugin makes them), its task gone after it exited 1.
        from crashcart.image import write_toolbox_image

        write_toolbox_image(str(work / "rootfs"), str(work / "image.tar"))
        subprocess.run(
            [*cri, "images", "import", "--index-name", "cc/micro:crash", str(work / "image.tar")],
            check=True,
            capture_output=True,
        )
        crashed = subprocess.run(
            [
                *cri,
                "run",
                *labels,
                "--label",
                "io.kubernetes.container.name=crashed",
                "--label",
                "io.cri-containerd.kind=container",
                "cc/micro:crash",
                f"{POD}-crashed",
                "/app/busybox",
                "sh",
                "-c",
                "exit 1",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert crashed.returncode == 1, crashed.stderr
        yield address, namespace
    finally:
        cri = [ctr_tool, "-a", address, "-n", "k8s.io"]
        subprocess.run(
            [*cri, "task", "kill", "-s", "KILL", f"{POD}-app"], capture_output=True, check=False
        )
        for _ in range(50):
            if subprocess.run(
                [*cri, "task", "delete", f"{POD}-app"], capture_output=True, check=False
            ).returncode:
                time.sleep(0.1)
            else:
                break
        for name in (f"{POD}-app", f"{POD}-sandbox", f"{POD}-crashed"):
            subprocess.run([*cri, "container", "delete", name], capture_output=True, check=False)
        subprocess.run(
            [*ctr, "task", "kill", "-s", "KILL", "micro"], capture_output=True, check=False
        )
        for _ in range(50):
            if subprocess.run(
                [*ctr, "task", "delete", "micro"], capture_output=True, check=False
            ).returncode:
                time.sleep(0.1)
            else:
                break
        subprocess.run([*ctr, "container", "delete", "micro"], capture_output=True, check=False)
        daemon.terminate()
        daemon.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
        # The runc shim's state directory of the namespace (outside containerd's --state).
        for name in (namespace, "k8s.io"):  # k8s.io: only if no one else's is there
            with contextlib.suppress(OSError):
                os.rmdir(f"{CONTAINERD_RUNC_ROOT}/{name}")


def test_containerd_namespace_and_id(
    containerd_task: tuple[str, str], toolbox: Path, state_dir: Path
) -> None:
    _, namespace = containerd_task
    env = env_for(state_dir)
    sees_the_micro(attach(env, toolbox, f"{namespace}/micro"))
    # An id that is in one namespace only needs no namespace.
    done = attach(env, toolbox, "micro")
    if "several namespaces" not in done.stderr:  # another test's containerd may have one
        sees_the_micro(done)
    missing = attach(env, toolbox, f"{namespace}/no-such")
    assert missing.returncode == 1
    assert "no process or container" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1


def test_kubernetes_pod_by_name(
    containerd_task: tuple[str, str], toolbox: Path, state_dir: Path
) -> None:
    """crictl's conventions: POD/CONTAINER or POD with --namespace, the CRI socket from
    --runtime-endpoint or $CONTAINER_RUNTIME_ENDPOINT."""
    address, _ = containerd_task
    env = env_for(state_dir)

    def run(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return run_script("attach", {**env, **extra}, toolbox, *args)

    sees_the_micro(run("--runtime-endpoint", f"unix://{address}", "-n", "shop", f"{POD}/app"))
    # Two containers besides the sandbox: the pod's name alone is not enough.
    both = run("--namespace=shop", POD, CONTAINER_RUNTIME_ENDPOINT=address)
    assert both.returncode == 1
    assert both.stderr.strip().endswith(f"attach to one of {POD}/app, {POD}/crashed"), both.stderr
    crashed = run("-n", "shop", "--runtime-endpoint", address, f"{POD}/crashed")
    assert crashed.returncode == 1
    assert f"pod shop/{POD} container crashed is not running" in crashed.stderr
    assert "`crashcart debug` looks at its files" in crashed.stderr
    # Post-mortem: the crashed container's snapshot (overlay layers), the running one's root.
    for container in ("crashed", "app"):
        where = ("--runtime-endpoint", address, "-n", "shop", f"{POD}/{container}")
        debug = run_script("debug", env, toolbox, *where, script="cat /etc/marker; touch /app/x")
        assert "inside the microcontainer" in debug.stdout, debug.stderr
        assert "Read-only file system" in debug.stderr
    for args, expected in (
        (("-n", "default", f"{POD}/app"), f"no process or container '{POD}/app'"),
        (("-n", "shop", f"{POD}/db"), "pods of namespace shop at"),
        (("-n", "shop", "--runtime-endpoint", "/nonexistent.sock", POD), "no CRI socket at"),
    ):
        done = (
            run("--runtime-endpoint", address, *args)
            if "--runtime-endpoint" not in args
            else run(*args)
        )
        assert done.returncode == 1, done.stderr
        assert expected in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr


@pytest.fixture(scope="module")
def podman_container(busybox: str) -> Iterator[tuple[str, dict[str, str]]]:
    """(name, environment) of a rootful podman container with its own storage and config."""
    require_root()
    podman = require_tool("podman")
    require_tool("runc")
    work = Path(tempfile.mkdtemp(prefix="cc-pod-"))
    (work / "containers.conf").write_text(
        '[containers]\nnetns = "none"\n'
        'default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n'
        '[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n'
    )
    (work / "storage.conf").write_text(
        f'[storage]\ndriver = "vfs"\ngraphroot = "{work}/root"\nrunroot = "{work}/run"\n'
    )
    env = {
        **os.environ,
        "CONTAINERS_CONF": str(work / "containers.conf"),
        "CONTAINERS_STORAGE_CONF": str(work / "storage.conf"),
    }
    name = f"cc-pod-{os.getpid()}"
    try:
        make_rootfs(work / "rootfs", busybox)
        (work / "rootfs").chmod(0o755)
        tar = subprocess.run(
            ["tar", "-C", str(work / "rootfs"), "-c", "."], capture_output=True, check=True
        )
        subprocess.run(
            [podman, "import", "-", "cc-micro:test"],
            input=tar.stdout,
            env=env,
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [
                podman,
                "run",
                "-d",
                "--name",
                name,
                "--user",
                "65534",
                "cc-micro:test",
                "/app/busybox",
                "sleep",
                "100000",
            ],
            env=env,
            check=True,
            capture_output=True,
        )
        yield name, env
    finally:
        subprocess.run(
            [podman, "rm", "-f", "-t", "0", name], env=env, capture_output=True, check=False
        )
        subprocess.run([podman, "system", "reset", "-f"], env=env, capture_output=True, check=False)
        shutil.rmtree(work, ignore_errors=True)


def test_podman_name(
    podman_container: tuple[str, dict[str, str]], toolbox: Path, state_dir: Path
) -> None:
    name, env = podman_container
    env = {**env, "CRASHCART_STATE": str(state_dir), "PYTHONPATH": env_for(state_dir)["PYTHONPATH"]}
    done = attach(env, toolbox, name)
    sees_the_micro(done)
    # Its files post-mortem (vfs storage: found through containers/storage's records).
    debug = run_script("debug", env, toolbox, name)
    assert debug.returncode == 0, debug.stderr
    assert "/proc/1/exe -> /app/busybox" not in debug.stdout  # its pid 1 is the session's
    assert "inside the microcontainer" in debug.stdout


@pytest.fixture
def hung_dockerd(tmp_path: Path) -> Iterator[str]:
    """A Docker socket that accepts connections and never answers."""
    path = str(tmp_path / "d.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(8)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"unix://{path}"
    finally:
        server.close()
        for conn in held:
            conn.close()


def test_a_hung_dockerd_suggests_the_pid(hung_dockerd: str, toolbox: Path, state_dir: Path) -> None:
    start = time.monotonic()
    done = subprocess.run(
        crashcart_cmd("attach", "--toolbox", str(toolbox), "some-name", "--", "true"),
        capture_output=True,
        text=True,
        env={**env_for(state_dir), "DOCKER_HOST": hung_dockerd},
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert f"cannot reach dockerd at {hung_dockerd}: timed out" in done.stderr
    assert "attach by the container's pid or its full id" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert time.monotonic() - start < 15
