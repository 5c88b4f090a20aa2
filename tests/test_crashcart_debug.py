"""`crashcart debug`: post-mortem sessions on crashed containers (crashcart/debug.py).

The crashed container is real: a runc container whose program (a tiny C program, compiled
here, with the host's libc and loader copied into its root) dereferences NULL and dumps
core. The core is written by the kernel into the container's own writable /write, because
its cwd is there and its RLIMIT_CORE (set in config.json for that one process) allows it;
the host's core_pattern ("core": a file in the crashing process's cwd) is not touched.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import test_crashcart_attach as attach_tests
from tests.containers import DockerDaemon
from tests.crashcart_containers import list_tree, make_rootfs
from tests.tools import require_root, require_tool, unavailable

toolbox = attach_tests.toolbox
busybox = attach_tests.busybox
state_dir = attach_tests.state_dir
crashcart = attach_tests.crashcart
crashcart_cmd = attach_tests.crashcart_cmd
env_for = attach_tests.env_for

CRASH_C = r"""
#include <stdio.h>
void crash_here(int *where) { *where = 42; }
int main(void) { puts("about to crash"); fflush(stdout); crash_here(0); return 0; }
"""
LIBC = "/lib/x86_64-linux-gnu/libc.so.6"
LOADER = "/lib64/ld-linux-x86-64.so.2"


@dataclass(frozen=True)
class Crashed:
    id: str
    bundle: Path
    core: Path


def core_bundle(bundle: Path, gcc: str) -> None:
    """A bundle whose program segfaults in crash_here() and dumps core into /write."""
    root = bundle / "rootfs"
    for name in ("app", "dev", "proc", "sys", "write", "data", "lib/x86_64-linux-gnu", "lib64"):
        (root / name).mkdir(parents=True)
    (bundle / "crash.c").write_text(CRASH_C)
    subprocess.run(
        [gcc, "-g", "-O0", "-o", str(root / "app" / "crash"), str(bundle / "crash.c")],
        check=True,
        capture_output=True,
    )
    for lib in (LIBC, LOADER):
        shutil.copy(lib, root / lib.lstrip("/"))
    (bundle / "write").mkdir()
    (bundle / "write").chmod(0o777)  # the program runs as 65534 and dumps core there
    (bundle / "data").mkdir()
    (bundle / "data" / "hello").write_text("the container's data\n")
    subprocess.run(["runc", "spec", "--bundle", str(bundle)], check=True)
    config = json.loads((bundle / "config.json").read_text())
    process = config["process"]
    process.update(terminal=False, args=["/app/crash"], cwd="/write")
    process["user"] = {"uid": 65534, "gid": 65534}
    process["rlimits"].append({"type": "RLIMIT_CORE", "hard": 1 << 30, "soft": 1 << 30})
    config["root"]["readonly"] = True
    config["mounts"] += [
        {
            "destination": "/write",
            "type": "bind",
            "source": str(bundle / "write"),
            "options": ["rbind", "rw"],
        },
        {"destination": "/data", "type": "bind", "source": "data", "options": ["rbind", "ro"]},
        {
            "destination": "/gone",
            "type": "bind",
            "source": str(bundle / "gone"),
            "options": ["rbind"],
        },
    ]
    (bundle / "config.json").write_text(json.dumps(config, indent=1))


@pytest.fixture(scope="module")
def crashed() -> Iterator[Crashed]:
    require_root()
    runc = require_tool("runc")
    gcc = require_tool("gcc")
    if not os.path.exists(LIBC):
        unavailable(f"no {LIBC} to copy into the container")
    bundle = Path(tempfile.mkdtemp(prefix="crashcart-debug-"))
    cid = f"cc-crashed-{os.getpid()}"
    try:
        bundle.chmod(0o755)
        core_bundle(bundle, gcc)
        (bundle / "gone").mkdir()  # runc mounts it; removed afterwards: left out by debug
        with (bundle / "run.log").open("w") as log:
            subprocess.run(
                [runc, "run", "--detach", "--bundle", str(bundle), cid],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                check=True,
            )
        core = bundle / "write" / "core"
        for _ in range(100):
            state = json.loads(
                subprocess.run(
                    [runc, "state", cid], capture_output=True, text=True, check=True
                ).stdout
            )
            if state["status"] == "stopped" and core.exists():
                break
            time.sleep(0.05)
        assert state["status"] == "stopped", state
        assert core.stat().st_size > 0, (bundle / "run.log").read_text()
        (bundle / "gone").rmdir()
        yield Crashed(cid, bundle, core)
    finally:
        subprocess.run([runc, "delete", "--force", cid], capture_output=True, check=False)
        shutil.rmtree(bundle, ignore_errors=True)


def debug(state_dir: Path, toolbox: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return crashcart(state_dir, "debug", "--toolbox", str(toolbox), *args)


def no_view_mounts(bundle: Path) -> bool:
    return str(bundle) not in Path("/proc/self/mountinfo").read_text()


def test_core_backtrace(crashed: Crashed, toolbox: Path, state_dir: Path) -> None:
    """gdb on the core names the faulting function and loads the image's libc."""
    root = crashed.bundle / "rootfs"
    before = list_tree(root)
    done = debug(
        state_dir,
        toolbox,
        "--core",
        str(crashed.core),
        "--ex",
        "bt",
        "--ex",
        "info sharedlibrary",
        crashed.id,
    )
    assert done.returncode == 0, done.stderr
    assert "crash_here (where=0x0) at" in done.stdout, done.stdout
    assert " main () at" in done.stdout
    libraries = [line for line in done.stdout.splitlines() if line.startswith("0x")]
    assert any(line.endswith(LIBC) for line in libraries), done.stdout
    assert any(line.endswith(LOADER) for line in libraries), done.stdout
    assert not any("/dev/crashcart" in line for line in libraries)
    assert list_tree(root) == before  # content and mtimes
    assert no_view_mounts(crashed.bundle)


def test_an_image_with_a_core(
    crashed: Crashed, toolbox: Path, state_dir: Path, tmp_path: Path
) -> None:
    """The crashed program's image given directly (an OCI layout): unpacked into crashcart's
    image cache, then debugged as the container was."""
    from crashcart.image import write_toolbox_image

    layout = tmp_path / "crashed-image"
    write_toolbox_image(str(crashed.bundle / "rootfs"), str(layout))
    done = subprocess.run(
        crashcart_cmd(
            "debug",
            "--toolbox",
            str(toolbox),
            "--core",
            str(crashed.core),
            "--program",
            "/app/crash",
            "--ex",
            "bt",
            str(layout),
        ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**env_for(state_dir), "CRASHCART_IMAGES": str(tmp_path / "images")},
    )
    assert done.returncode == 0, done.stderr
    assert "crash_here (where=0x0) at" in done.stdout, done.stdout + done.stderr


def test_view_is_read_only_and_confined(crashed: Crashed, toolbox: Path, state_dir: Path) -> None:
    script = (
        "cat /data/hello; touch /app/x; touch /write/x; echo pid=$$; hostname;"
        " grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status; ls /gone; ls /dev/core"
    )
    done = debug(
        state_dir,
        toolbox,
        "--core",
        str(crashed.core),
        crashed.id,
        "--",
        "sh",
        "-c",
        script,
    )
    out = done.stdout + done.stderr
    assert "the container's data" in out
    assert out.count("Read-only file system") == 2, out
    assert "pid=2\n" in out  # the view's own pid namespace: its pid 1 is the session's
    assert f"\n{crashed.id}\n" in out
    assert "NoNewPrivs:\t1" in out and "Seccomp:\t2" in out
    assert "CapEff:\t0000000000082024" in out  # DAC_READ_SEARCH, KILL, NET_RAW, SYS_PTRACE
    assert "the container's mount /gone is left out" in done.stderr
    assert "/dev/core\n" in out
    assert not (crashed.bundle / "write" / "x").exists()
    assert no_view_mounts(crashed.bundle)


def sleepers(mark: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and Path(f"/proc/{entry}/cmdline").read_bytes() == mark.encode():
                found.append(int(entry))
        except OSError:
            continue
    return found


@pytest.mark.parametrize("how", ["exit", "sigkill"])
def test_nothing_outlives(crashed: Crashed, toolbox: Path, state_dir: Path, how: str) -> None:
    seconds = str(4000 + os.getpid() % 1000 + (500 if how == "sigkill" else 0))
    mark = f"sleep\0{seconds}\0"
    # "exit": the command ends (at EOF on stdin) and leaves its background job behind.
    script = f"sleep {seconds} & echo started; " + ("read x; exit 0" if how == "exit" else "wait")
    session = subprocess.Popen(
        crashcart_cmd("debug", "--toolbox", str(toolbox), crashed.id, "--", "sh", "-c", script),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env_for(state_dir),
    )
    try:
        assert session.stdout is not None
        assert session.stdin is not None
        assert session.stdout.readline() == b"started\n"
        for _ in range(100):  # the background job may not have exec'd sleep yet
            if sleepers(mark):
                break
            time.sleep(0.02)
        assert sleepers(mark)
        if how == "sigkill":
            session.send_signal(signal.SIGKILL)
        session.stdin.close()
        session.wait(timeout=30)
        assert session.returncode == (-signal.SIGKILL if how == "sigkill" else 0)
        for _ in range(100):
            if not sleepers(mark):
                break
            time.sleep(0.05)
        assert sleepers(mark) == []
        assert no_view_mounts(crashed.bundle)
    finally:
        if session.poll() is None:
            session.kill()
            session.wait()


@pytest.mark.docker
def test_crash_looping_docker_container(
    dockerd: DockerDaemon, busybox: str, toolbox: Path, state_dir: Path
) -> None:
    root = Path(tempfile.mkdtemp(prefix="ccdbg-img-"))
    volume = Path(tempfile.mkdtemp(prefix="ccdbg-vol-"))
    name = f"cc-looping-{os.getpid()}"
    try:
        make_rootfs(root, busybox)
        (root / "data").mkdir()
        root.chmod(0o755)
        (volume / "state").write_text("the volume's file\n")
        tar = subprocess.run(["tar", "-C", str(root), "-c", "."], capture_output=True, check=True)
        subprocess.run(
            ["docker", "-H", dockerd.host, "import", "-", "cc-debug:test"],
            input=tar.stdout,
            check=True,
            capture_output=True,
        )
        started = dockerd.docker(
            "run",
            "-d",
            "--name",
            name,
            "--restart",
            "always",
            "--network",
            "none",
            "-v",
            f"{volume}:/data",
            "cc-debug:test",
            "/app/busybox",
            "sh",
            "-c",
            "exit 1",
        )
        assert started.returncode == 0, started.stderr
        for _ in range(200):  # until it has crashed and been restarted at least once
            count = dockerd.docker("inspect", "-f", "{{.RestartCount}}", name).stdout.strip()
            if count.isdigit() and int(count) >= 1:
                break
            time.sleep(0.05)
        assert count.isdigit() and int(count) >= 1, count
        done = subprocess.run(
            crashcart_cmd(
                "debug",
                "--toolbox",
                str(toolbox),
                name,
                "--",
                "sh",
                "-c",
                "cat /etc/marker /data/state; ls /app; touch /data/x",
            ),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**env_for(state_dir), "DOCKER_HOST": dockerd.host},
        )
        assert "inside the microcontainer" in done.stdout, done.stderr
        assert "the volume's file" in done.stdout
        assert "busybox" in done.stdout
        assert "Read-only file system" in done.stderr
        assert not (volume / "x").exists()
    finally:
        dockerd.docker("rm", "-f", name)
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(volume, ignore_errors=True)


OVERLAY_SESSION = """
import sys
from crashcart import confine
from crashcart.attach import toolbox_env
from crashcart.debug import Plan, _run
from crashcart.mount import clone_tree_readonly
from crashcart.postmortem import View

upper, lower, merged, toolbox = sys.argv[1:]
view = View("overlay test", "layers", merged, (upper, lower))
env = toolbox_env("layers", view.description)
argv = ("sh", "-c", "cat /etc/marker; ls /app; touch /etc/marker; grep ' / ' /proc/mounts")
plan = Plan(view, argv, env, confine.confinement_for(()), clone_tree_readonly(toolbox), -1)
sys.exit(_run(plan))
"""


def test_overlay_layers_are_mounted_read_only(
    busybox: str, toolbox: Path, state_dir: Path, tmp_path: Path
) -> None:
    """Docker's overlay2 layers (the container's own on top) as one read-only overlay: the
    path a crashed overlay2 container takes (the session's dockerd uses vfs)."""
    require_root()
    lower, upper, merged = tmp_path / "lower", tmp_path / "upper", tmp_path / "merged"
    make_rootfs(lower, busybox)
    (upper / "etc").mkdir(parents=True)
    (upper / "etc" / "marker").write_text("the container's own layer\n")
    merged.mkdir()
    before = list_tree(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", OVERLAY_SESSION, str(upper), str(lower), str(merged), str(toolbox)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env_for(state_dir),
    )
    assert "the container's own layer" in done.stdout, done.stderr
    assert "busybox" in done.stdout
    assert "Read-only file system" in done.stderr
    assert "overlay / overlay ro," in done.stdout, done.stdout
    assert list_tree(tmp_path) == before
    assert str(tmp_path) not in Path("/proc/self/mountinfo").read_text()


@pytest.mark.parametrize(
    ("args", "code", "expected"),
    [
        (("no-such-container-xyz",), 1, "no container 'no-such-container-xyz' to debug"),
        (("--core", "/nonexistent/core", "DIR"), 1, "cannot open the core file /nonexistent/core"),
        (("--ex", "bt", "x"), 2, "--ex 'bt' runs in gdb on a core: give --core FILE"),
        (("/",), 1, "/ is the host's root, not a container's"),
    ],
)
def test_refusals(
    state_dir: Path, toolbox: Path, tmp_path: Path, args: tuple[str, ...], code: int, expected: str
) -> None:
    require_root()
    args = tuple(str(tmp_path) if arg == "DIR" else arg for arg in args)
    done = debug(state_dir, toolbox, *args)
    assert done.returncode == code, done.stderr
    assert expected in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
