"""crashcart attach on real containers: runc, crun, runc with a user namespace, Docker.

Every container, mount and daemon here is started by a fixture and removed by it, even when
a test fails. "No trace" is checked the strict way: the target's mountinfo and a listing of
its root filesystem and of its /dev are byte-identical before the attach and after it.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from crashcart.confine import KEEP
from crashcart.prefix import MOUNT_POINT
from crashcart.target import open_namespaces, target_from_pid
from crashcart.toolbox import DEFAULT_RECIPE, build_toolbox
from smith.errors import CrashcartError
from tests.containers import DockerDaemon
from tests.crashcart_containers import (
    Container,
    list_tree,
    make_bundle,
    make_rootfs,
    running_container,
)
from tests.rpm_universe import Universe
from tests.tools import PROJECT, require_root, require_tool


@pytest.fixture(scope="session")
def toolbox(tmp_path_factory: pytest.TempPathFactory, rpm_universe: Universe) -> Path:
    """The default toolbox, built by smith from the universe's RPMs and relocated."""
    require_root()
    require_tool("patchelf")
    # One build per test session, shared by the crashcart test modules that import this.
    work = tmp_path_factory.getbasetemp() / "crashcart-toolbox"
    if (work / "toolbox").is_dir():
        return work / "toolbox"
    work.mkdir(exist_ok=True)
    recipe = yaml.safe_load(DEFAULT_RECIPE.read_text())
    recipe["repos"] = [{"name": "universe", "baseurl": rpm_universe.repo_url("main")}]
    (work / "smith.yaml").write_text(yaml.safe_dump(recipe))
    dest = work / "toolbox"
    build_toolbox(work / "smith.yaml", dest, cache_dir=str(work / "cache"))
    return dest


@pytest.fixture(scope="session")
def busybox() -> str:
    return require_tool("busybox")


@pytest.fixture(scope="session")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("crashcart-state")


@pytest.fixture(scope="module", params=["runc", "crun"])
def micro(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, busybox: str
) -> Iterator[Container]:
    """The stand-in for a smith-built microcontainer, run by runc and by crun."""
    runtime = request.param
    require_root()
    require_tool(runtime)
    bundle = tmp_path_factory.mktemp(f"micro-{runtime}")
    make_bundle(bundle, busybox)
    with running_container(runtime, f"cc-test-{runtime}-{os.getpid()}", bundle) as container:
        yield container


@pytest.fixture(scope="module")
def userns_container(busybox: str) -> Iterator[Container]:
    require_root()
    require_tool("runc")
    # The namespace's root (host uid 200000) must reach the rootfs: pytest's tmp is 0700.
    bundle = Path(tempfile.mkdtemp(prefix="crashcart-userns-"))
    try:
        bundle.chmod(0o755)
        make_bundle(bundle, busybox, userns=True)
        with running_container("runc", f"cc-test-userns-{os.getpid()}", bundle) as container:
            yield container
    finally:
        shutil.rmtree(bundle)


def crashcart_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "crashcart", *args]


def env_for(state_dir: Path) -> dict[str, str]:
    return {**os.environ, "CRASHCART_STATE": str(state_dir), "PYTHONPATH": str(PROJECT)}


def crashcart(
    state_dir: Path, *args: str, input_text: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        crashcart_cmd(*args),
        capture_output=True,
        text=True,
        env=env_for(state_dir),
        input=input_text,
        timeout=60,
        check=False,
    )


def attach_script(
    state_dir: Path, toolbox: Path, target: str, script: str, *options: str
) -> subprocess.CompletedProcess[str]:
    """`crashcart attach [OPTIONS] --toolbox TOOLBOX TARGET -- sh -c SCRIPT`, finished."""
    args = ("attach", *options, "--toolbox", str(toolbox), target, "--", "sh", "-c", script)
    return crashcart(state_dir, *args)


@contextmanager
def background_session(
    state_dir: Path, toolbox: Path, target: str, script: str
) -> Iterator[subprocess.Popen[bytes]]:
    """A session running SCRIPT (stdout discarded, stderr kept), killed at the end if the
    test left it running."""
    session = subprocess.Popen(
        crashcart_cmd("attach", "--toolbox", str(toolbox), target, "--", "sh", "-c", script),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env_for(state_dir),
    )
    try:
        yield session
    finally:
        if session.poll() is None:
            session.kill()
            session.wait()


def mountinfo(pid: int) -> str:
    return Path(f"/proc/{pid}/mountinfo").read_text()


def snapshot(container: Container) -> tuple[str, bytes, bytes]:
    """What must not change: mount table, root filesystem listing, /dev listing."""
    return (
        mountinfo(container.pid),
        list_tree(container.bundle / "rootfs"),
        # Terminal use (the shell's own /dev/tty) moves device times: those are not ours.
        list_tree(Path(f"/proc/{container.pid}/root/dev"), device_times=False),
    )


def has_toolbox(container: Container) -> bool:
    return any(line.split()[4] == MOUNT_POINT for line in mountinfo(container.pid).splitlines())


def test_command_sees_the_target(micro: Container, toolbox: Path, state_dir: Path) -> None:
    before = snapshot(micro)
    script = (
        "ls -l /proc/1/exe; cat /etc/marker; hostname; ip -o link show | cut -d: -f2; "
        "ps -o pid,user,args; strace -V | head -1; "
        "gdb -batch -ex 'info proc' -p 1 2>&1 | grep '^process'; "
        "lsof -p 1 | head -1; curl --version | head -1; ss -ltn | head -1"
    )
    done = attach_script(state_dir, toolbox, micro.id, script)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "/proc/1/exe -> /app/busybox" in out
    assert "inside the microcontainer" in out
    assert "\nmicro\n" in out
    assert [x.strip() for x in out.split("\n") if x.strip() in ("lo", "eth0", "ifb0")] == ["lo"]
    assert "app      /app/busybox sleep" in out or "/app/busybox sleep 100000" in out
    assert "strace -- version" in out
    assert "process 1" in out
    assert "COMMAND PID" in out.replace("   ", " ").replace("  ", " ")
    assert "\ncurl " in out
    assert "State" in out and "Local Address" in out  # ss
    assert snapshot(micro) == before


# What the installed `crashcart attach ID -- CMD` may import beyond the interpreter's own
# start-up: it is benchmarked against `runc exec` (bench/bench_crashcart.py), and one stray
# import of re, enum, typing, json, socket or contextlib costs 5-15 ms, as much as the
# whole attach. A module added here should be as cheap as these.
ATTACH_IMPORTS = {
    "__future__",
    "smith",
    "smith.errors",
    "smith.cli",  # a docstring only: the package of smith.cli.reporting
    "smith.cli.reporting",
    "errno",
    "fcntl",
    "ctypes",  # the mount and namespace system calls (crashcart/mount.py)
    "ctypes._endian",
    "_ctypes",
    "struct",
    "_struct",
    "types",
}


def imported_modules(argv: list[str], env: dict[str, str]) -> tuple[set[str], int, str]:
    proc = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        env={**env, "PYTHONPROFILEIMPORTTIME": "1"},
        timeout=60,
        check=False,
    )
    lines = proc.stderr.splitlines()
    names = {line.split("|")[-1].strip() for line in lines if line.startswith("import time:")}
    other = "\n".join(line for line in lines if not line.startswith("import time:"))
    return names, proc.returncode, other


def test_attach_imports_only_what_it_needs(
    micro: Container, toolbox: Path, state_dir: Path
) -> None:
    """The installed script (not `python -m`, whose runpy imports more) on a real attach."""
    script = Path(sys.executable).with_name("crashcart")
    assert script.exists(), "the crashcart script is installed by scripts/setup.sh"
    env = env_for(state_dir)
    floor, _, _ = imported_modules([sys.executable, "-c", "pass"], env)
    argv = [str(script), "attach", "--toolbox", str(toolbox), micro.id, "--", "true"]
    names, status, errors = imported_modules(argv, env)
    assert status == 0, errors
    extra = {n for n in names - floor if not n.startswith("crashcart")} - ATTACH_IMPORTS
    assert not extra, f"the attach path now imports {sorted(extra)}"
    assert "crashcart.terminal" not in names  # only interactive sessions need it


@pytest.mark.parametrize(
    ("command", "status"),
    [
        (("true",), 0),
        (("sh", "-c", "exit 7"), 7),
        (("sh", "-c", "kill -KILL $$"), 128 + 9),
        (("sh", "-c", "kill -TERM $$"), 128 + 15),
        (("no-such-tool",), 127),
    ],
)
def test_exit_status(
    micro: Container, toolbox: Path, state_dir: Path, command: tuple[str, ...], status: int
) -> None:
    done = crashcart(state_dir, "attach", "--toolbox", str(toolbox), micro.id, "--", *command)
    assert done.returncode == status, done.stderr
    if status == 127:
        assert "cannot run 'no-such-tool' in the target" in done.stderr
    assert not has_toolbox(micro)


def test_attach_by_pid_leaves_no_trace(micro: Container, toolbox: Path, state_dir: Path) -> None:
    before = snapshot(micro)
    done = crashcart(
        state_dir, "attach", "--toolbox", str(toolbox), str(micro.pid), "--", "ls", MOUNT_POINT
    )
    assert done.returncode == 0, done.stderr
    assert "bin" in done.stdout.split()
    assert snapshot(micro) == before
    assert list(state_dir.iterdir()) == []


def read_until(fd: int, marker: bytes, limit: float = 30.0) -> bytes:
    """Read a pty until marker shows up (the deadline only stops a hung test)."""
    seen = b""
    deadline = time.monotonic() + limit
    while marker not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"never saw {marker!r}; got {seen!r}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    return seen


def test_interactive_shell_through_a_pty(micro: Container, toolbox: Path, state_dir: Path) -> None:
    before = snapshot(micro)
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 111, 0, 0))
    proc = subprocess.Popen(
        crashcart_cmd("attach", "--toolbox", str(toolbox), micro.id),
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env={**env_for(state_dir), "TERM": "dumb"},
        start_new_session=True,
    )
    os.close(slave)
    try:
        banner = read_until(master, f"[crashcart {micro.id}]".encode())
        assert b"exit to leave" in banner
        os.write(master, b"stty size; echo $((6 * 7))x; readlink /proc/1/exe\r")
        out = read_until(master, b"/app/busybox\r\n")
        assert b"33 111" in out
        assert b"42x" in out
        os.write(master, b"ip -o link show | wc -l\r")  # the real ip, through the alias
        assert b"1\r\n" in read_until(master, b"1\r\n")
        # The terminal is one of the target's own ptys: it exists in its /dev/pts.
        os.write(master, b"t=$(tty); [ -c $t ] && echo tty-ok:$t\r")
        assert b"tty-ok:/dev/pts/" in read_until(master, b"tty-ok:/dev/pts/")
        os.write(master, b"exit 3\r")
        assert proc.wait(timeout=30) == 3
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    assert snapshot(micro) == before


def test_user_namespace(userns_container: Container, toolbox: Path, state_dir: Path) -> None:
    before = snapshot(userns_container)
    done = crashcart(
        state_dir,
        "attach",
        "--toolbox",
        str(toolbox),
        userns_container.id,
        "--",
        "sh",
        "-c",
        "id -u; cat /proc/self/uid_map; ls -l /proc/1/exe; ls -ld /dev/crashcart;"
        " grep -E '^(CapEff|Seccomp):' /proc/self/status;"
        " strace -p 1 -e trace=none 2>&1 & s=$!; sleep 1; kill $s",
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "0"
    assert lines[1].split() == ["0", "200000", "65536"]
    assert "/proc/1/exe -> /app/busybox" in done.stdout
    # Confined as anywhere else (crashcart/confine.py), and strace still reaches pid 1.
    assert f"CapEff:\t{sum(1 << cap for cap in KEEP):016x}\n" in done.stdout
    assert "Seccomp:\t2\n" in done.stdout
    assert "Process 1 attached" in done.stdout
    assert snapshot(userns_container) == before


def test_concurrent_sessions_have_their_own_view(
    micro: Container, toolbox: Path, state_dir: Path, tmp_path: Path
) -> None:
    """Each session mounts the toolbox in its own private copy of the target's mount
    namespace: the target sees no mount while they run, and sessions do not depend on each
    other (not even on using the same toolbox)."""
    from crashcart.image import write_toolbox_image

    before = snapshot(micro)
    first = subprocess.Popen(
        crashcart_cmd("attach", "--toolbox", str(toolbox), micro.id, "--", "sh", "-c", "read x"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env_for(state_dir),
    )
    try:
        wait_for(lambda: running_in(micro, "sh", "-c", "read x"), first)
        assert snapshot(micro) == before, "the target sees nothing of a running session"
        second = crashcart(
            state_dir,
            "attach",
            "--toolbox",
            str(toolbox),
            micro.id,
            "--",
            "ls",
            "/dev/crashcart/bin/gdb",
        )
        assert second.returncode == 0, second.stderr
        image = tmp_path / "other.oci"
        write_toolbox_image(str(toolbox), str(image))
        other = subprocess.run(
            crashcart_cmd("attach", "--toolbox", str(image), micro.id, "--", "true"),
            capture_output=True,
            text=True,
            env={**env_for(state_dir), "CRASHCART_IMAGES": str(tmp_path / "cache")},
            timeout=120,
            check=False,
        )
        assert other.returncode == 0, other.stderr
        assert first.poll() is None
        first.communicate(b"\n", timeout=30)
        assert first.returncode == 0
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert snapshot(micro) == before
    assert list(state_dir.iterdir()) == []


def wait_for(condition: object, proc: subprocess.Popen[bytes], limit: float = 30.0) -> None:
    assert callable(condition)
    deadline = time.monotonic() + limit
    while not condition():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.05)


def test_sigkilled_session_leaves_nothing(micro: Container, toolbox: Path, state_dir: Path) -> None:
    """A SIGKILLed crashcart cannot clean up, and need not: its reaper kills the command,
    and the toolbox mount goes with the session's private mount namespace."""
    before = snapshot(micro)
    victim = subprocess.Popen(
        crashcart_cmd("attach", "--toolbox", str(toolbox), micro.id, "--", "sh", "-c", "read x"),
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env_for(state_dir),
    )
    try:
        wait_for(lambda: running_in(micro, "sh", "-c", "read x"), victim)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        deadline = time.monotonic() + 10
        while running_in(micro, "sh", "-c", "read x"):
            assert time.monotonic() < deadline, "the command outlived its session"
            time.sleep(0.05)
        again = crashcart(state_dir, "attach", "--toolbox", str(toolbox), micro.id, "--", "true")
        assert again.returncode == 0, again.stderr
        assert again.stderr == ""
    finally:
        if victim.stdin:
            victim.stdin.close()
    assert snapshot(micro) == before
    assert list(state_dir.iterdir()) == []


def test_mount_only_and_unmount(micro: Container, toolbox: Path, state_dir: Path) -> None:
    before = snapshot(micro)
    tb = ("--toolbox", str(toolbox))
    done = crashcart(state_dir, "attach", "--mount-only", *tb, micro.id)
    assert done.returncode == 0, done.stderr
    assert has_toolbox(micro)
    # The pinned toolbox is usable by the runtime's own exec, and survives a session.
    runtime_exec = subprocess.run(
        [micro.runtime, "exec", micro.id, f"{MOUNT_POINT}/bin/busybox", "true"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert runtime_exec.returncode == 0, runtime_exec.stderr
    assert crashcart(state_dir, "attach", *tb, micro.id, "--", "true").returncode == 0
    assert has_toolbox(micro)
    done = crashcart(state_dir, "attach", "--unmount", micro.id)
    assert done.returncode == 0, done.stderr
    assert snapshot(micro) == before
    again = crashcart(state_dir, "attach", "--unmount", micro.id)
    assert "no toolbox is mounted" in again.stderr


def test_target_exiting_during_attach_is_refused() -> None:
    require_root()
    proc = subprocess.Popen(["unshare", "-m", "sleep", "1000"])
    try:
        target = target_from_pid(proc.pid)
    finally:
        proc.kill()
        proc.wait()
    with pytest.raises(CrashcartError, match="exited during the attach"):
        open_namespaces(target)


def dead_pid() -> int:
    proc = subprocess.run(["sh", "-c", "echo $$"], capture_output=True, text=True, check=True)
    return int(proc.stdout)


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (("attach", "{dead}", "--", "true"), 1, "no process with pid {dead}"),
        (("attach", "no-such-container-xyz", "--", "true"), 1, "no process or container"),
        (("attach", "{host}", "--", "true"), 1, "runs in the host's own namespaces"),
        (("attach", "--mount-only", "{micro}", "--", "ls"), 2, "take no command"),
        (("attach", "--mount-only", "--unmount", "{micro}"), 2, "exclude each other"),
        (("attach", "--toolbox", "/nonexistent/tb", "{micro}"), 1, "no toolbox at /nonexistent/tb"),
        # A file that is no image: Python 3.11's tarfile explains that over five lines.
        (("attach", "--toolbox", "/etc/passwd", "{micro}"), 1, "/etc/passwd: not a readable image"),
        # The target is looked at first: a typo in it is not hidden behind a toolbox error.
        (("attach", "--toolbox", "/nonexistent/tb", "{dead}"), 1, "no process with pid {dead}"),
    ],
)
def test_refusals(
    micro: Container,
    state_dir: Path,
    toolbox: Path,
    args: tuple[str, ...],
    status: int,
    message: str,
) -> None:
    before = snapshot(micro)
    host = subprocess.Popen(["sleep", "1000"])
    try:
        values = {"dead": str(dead_pid()), "host": str(host.pid), "micro": micro.id}
        argv = [a.format(**values) for a in args]
        if "--toolbox" not in argv:
            argv.insert(1, f"--toolbox={toolbox}")
        done = crashcart(state_dir, *argv)
    finally:
        host.kill()
        host.wait()
    assert done.returncode == status, done.stderr
    assert message.format(**values) in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert snapshot(micro) == before


def test_refuses_without_root(micro: Container, state_dir: Path, toolbox: Path) -> None:
    setpriv = require_tool("setpriv")
    done = subprocess.run(
        [
            setpriv,
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            *crashcart_cmd("attach", "--toolbox", str(toolbox), micro.id, "--", "true"),
        ],
        capture_output=True,
        text=True,
        env=env_for(state_dir),
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert "no permission to attach" in done.stderr


@pytest.fixture(scope="session")
def docker_container(dockerd: DockerDaemon, busybox: str) -> Iterator[str]:
    root = Path(tempfile.mkdtemp(prefix="ccimg-"))
    name = f"cc-test-{os.getpid()}"
    docker = ["docker", "-H", dockerd.host]
    try:
        make_rootfs(root, busybox)
        root.chmod(0o755)  # mkdtemp's 0700 would become the image's / and lock out uid 65534
        tar = subprocess.run(["tar", "-C", str(root), "-c", "."], capture_output=True, check=True)
        subprocess.run(
            [*docker, "import", "-", "cc-micro:test"],
            input=tar.stdout,
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [
                *docker,
                "run",
                "-d",
                "--name",
                name,
                "--read-only",
                "--user",
                "65534",
                "--network",
                "none",
                "cc-micro:test",
                "/app/busybox",
                "sleep",
                "100000",
            ],
            check=True,
            capture_output=True,
        )
        yield name
    finally:
        subprocess.run([*docker, "rm", "-f", name], capture_output=True, check=False)
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.docker
def test_docker_container(
    docker_container: str, dockerd: DockerDaemon, toolbox: Path, state_dir: Path
) -> None:
    inspect = subprocess.run(
        ["docker", "-H", dockerd.host, "inspect", "-f", "{{.State.Pid}}", docker_container],
        capture_output=True,
        text=True,
        check=True,
    )
    pid = int(inspect.stdout)
    before = (mountinfo(pid), list_tree(Path(f"/proc/{pid}/root/dev"), device_times=False))
    done = subprocess.run(
        crashcart_cmd(
            "attach",
            "--toolbox",
            str(toolbox),
            docker_container,
            "--",
            "sh",
            "-c",
            "ls -l /proc/1/exe; cat /etc/marker; ip -o link show | wc -l",
        ),
        capture_output=True,
        text=True,
        env={**env_for(state_dir), "DOCKER_HOST": dockerd.host},
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "/proc/1/exe -> /app/busybox" in done.stdout
    assert "inside the microcontainer" in done.stdout
    assert done.stdout.splitlines()[-1].strip() == "1"  # --network none: only lo
    after = (mountinfo(pid), list_tree(Path(f"/proc/{pid}/root/dev"), device_times=False))
    assert after == before


TOOLS = ("sh", "ls", "strace", "gdb", "lsof", "curl", "ip", "ss")


def test_toolbox_is_relocated(toolbox: Path) -> None:
    """Every dynamic executable loads the toolbox's ld.so and libraries, and nothing else."""
    from smith.resolve.elf import is_elf, parse_elf

    executables = 0
    for path in sorted(p for p in toolbox.rglob("*") if p.is_file() and not p.is_symlink()):
        with path.open("rb") as f:
            if not is_elf(f.read(4)):
                continue
            f.seek(0)
            info = parse_elf(f, str(path))
        if not info.interpreter or info.soname:
            assert not [d for d in (*info.rpath, *info.runpath) if not d.startswith(MOUNT_POINT)]
            continue
        executables += 1
        assert info.interpreter.startswith(MOUNT_POINT + "/"), path
        assert (toolbox / info.interpreter[len(MOUNT_POINT) + 1 :]).is_file()
        assert info.runpath == () and info.rpath, path
        dirs = [toolbox / d[len(MOUNT_POINT) + 1 :] for d in info.rpath]
        assert all(d.startswith(MOUNT_POINT + "/") for d in info.rpath), info.rpath
        for needed in info.needed:
            assert any((d / needed).exists() for d in dirs), (path, needed)
    assert executables >= 6  # strace gdb lsof curl ip ss (busybox is static)
    for tool in TOOLS:
        assert os.access(toolbox / "bin" / tool, os.X_OK), tool
    manifest = json.loads((toolbox / "crashcart-toolbox.json").read_text())
    assert manifest["prefix"] == MOUNT_POINT
    assert {"busybox", "gdb", "ip", "ss", "strace"} <= set(manifest["programs"])


def test_toolbox_build_command(toolbox: Path, tmp_path: Path, state_dir: Path) -> None:
    """`crashcart toolbox build --recipe R -o DIR --image OUT`, with smith underneath."""
    recipe = toolbox.parent / "smith.yaml"
    cache = toolbox.parent / "cache"
    out, image = tmp_path / "tb", tmp_path / "tb.oci"
    done = crashcart(
        state_dir,
        *("toolbox", "build", "--recipe", str(recipe), "-o", str(out)),
        *("--image", str(image), "--cache-dir", str(cache)),
    )
    assert done.returncode == 0, done.stderr
    assert f"toolbox built at {out}" in done.stdout
    assert (out / "bin" / "gdb").read_bytes() == (toolbox / "bin" / "gdb").read_bytes()
    assert (image / "oci-layout").is_file()


def test_toolbox_build_without_the_repository(tmp_path: Path, state_dir: Path) -> None:
    recipe = yaml.safe_load(DEFAULT_RECIPE.read_text())
    recipe["repos"] = [{"name": "universe", "baseurl": str(tmp_path / "no-such-repo")}]
    (tmp_path / "smith.yaml").write_text(yaml.safe_dump(recipe))
    done = crashcart(
        state_dir,
        *("toolbox", "build", "--recipe", str(tmp_path / "smith.yaml"), "-o", str(tmp_path / "tb")),
    )
    assert done.returncode == 1
    assert "smith cannot build the toolbox recipe" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not (tmp_path / "tb").exists()


def test_toolbox_from_an_image(
    micro: Container, toolbox: Path, state_dir: Path, tmp_path: Path
) -> None:
    """--toolbox IMAGE: an OCI layout written by smith's writer, unpacked once, cached."""
    from crashcart.image import write_toolbox_image

    image = tmp_path / "toolbox.oci"
    write_toolbox_image(str(toolbox), str(image))
    before = snapshot(micro)
    env = {**env_for(state_dir), "CRASHCART_IMAGES": str(tmp_path / "cache")}
    for _ in range(2):  # the second attach reuses the unpacked image
        done = subprocess.run(
            crashcart_cmd(
                "attach",
                "--toolbox",
                str(image),
                micro.id,
                "--",
                "strace",
                "-e",
                "trace=none",
                "true",
            ),
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
    (unpacked,) = (tmp_path / "cache").iterdir()
    assert unpacked.name.startswith("sha256-")
    assert list_tree(unpacked) != b""
    assert (unpacked / "bin" / "strace").read_bytes() == (toolbox / "bin" / "strace").read_bytes()
    assert snapshot(micro) == before


def test_a_target_without_a_dev_tmpfs(
    tmp_path: Path, busybox: str, toolbox: Path, state_dir: Path
) -> None:
    """Where /dev is a directory of the (read-only) root filesystem, the session's private
    /dev holds the toolbox: nothing is written to the target's root."""
    require_tool("runc")
    make_bundle(tmp_path, busybox, dev=False)
    with running_container("runc", f"cc-test-nodev-{os.getpid()}", tmp_path) as container:
        before = snapshot(container)
        done = crashcart(
            state_dir,
            "attach",
            "--toolbox",
            str(toolbox),
            container.id,
            "--",
            "ls",
            "/dev/crashcart/bin/sh",
        )
        assert done.returncode == 0, done.stderr
        assert snapshot(container) == before
    assert list(state_dir.iterdir()) == []


def running_in(container: Container, *argv: str) -> bool:
    """Whether a process with exactly this argv runs in the container's pid namespace.

    (Not `runc ps`: that lists the container's cgroup, which crashcart does not join.)"""
    want = b"\0".join(a.encode() for a in argv) + b"\0"
    their_ns = os.stat(f"/proc/{container.pid}/ns/pid").st_ino
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if Path(f"/proc/{entry}/cmdline").read_bytes() != want:
                continue
            if os.stat(f"/proc/{entry}/ns/pid").st_ino == their_ns:
                return True
        except OSError:
            continue
    return False


def test_signals_are_forwarded(micro: Container, toolbox: Path, state_dir: Path) -> None:
    before = snapshot(micro)
    session = subprocess.Popen(
        crashcart_cmd("attach", "--toolbox", str(toolbox), micro.id, "--", "sleep", "1000"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env_for(state_dir),
    )
    try:
        wait_for(lambda: running_in(micro, "sleep", "1000"), session)
        session.send_signal(signal.SIGTERM)
        _, err = session.communicate(timeout=30)
        assert session.returncode == 128 + signal.SIGTERM, err
    finally:
        if session.poll() is None:
            session.kill()
            session.wait()
    assert not running_in(micro, "sleep", "1000")
    assert snapshot(micro) == before


def test_target_exiting_during_a_session(
    tmp_path: Path, busybox: str, toolbox: Path, state_dir: Path
) -> None:
    """The container dies under a session: the session ends, and nothing is left on the host."""
    make_bundle(tmp_path, busybox)
    with running_container("runc", f"cc-test-dies-{os.getpid()}", tmp_path) as container:
        session = subprocess.Popen(
            crashcart_cmd("attach", "--toolbox", str(toolbox), container.id, "--", "sleep", "1000"),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env_for(state_dir),
        )
        try:
            wait_for(lambda: running_in(container, "sleep", "1000"), session)
            subprocess.run(["runc", "kill", container.id, "KILL"], check=True)
            _, err = session.communicate(timeout=30)
            assert session.returncode == 128 + signal.SIGKILL, err
            again = crashcart(state_dir, "attach", "--toolbox", str(toolbox), container.id)
            assert again.returncode == 1
            assert f"runc container '{container.id}' is not running" in again.stderr
        finally:
            if session.poll() is None:
                session.kill()
                session.wait()
    assert list(state_dir.iterdir()) == []


def in_target_mount_ns(container: Container, script: str) -> None:
    """Run a busybox shell script as host root in the container's mount namespace."""
    nsenter = require_tool("nsenter")
    subprocess.run(
        [nsenter, "-t", str(container.pid), "-m", "/app/busybox", "sh", "-c", script],
        check=True,
        capture_output=True,
    )


@pytest.mark.parametrize(
    ("make", "kind"),
    [
        ("mkdir /dev/crashcart && echo mine > /dev/crashcart/own", "a directory"),
        ("mkdir /dev/crashcart", "a directory"),
        ("echo mine > /dev/crashcart", "a file"),
        ("ln -s / /dev/crashcart", "a symbolic link"),
        (
            "mkdir /dev/crashcart && /app/busybox mount -t tmpfs -o size=64k vol /dev/crashcart"
            " && echo mine > /dev/crashcart/own",
            "a mount",
        ),
    ],
)
def test_the_targets_own_dev_crashcart_is_left_alone(
    micro: Container, toolbox: Path, state_dir: Path, make: str, kind: str
) -> None:
    """Whatever the target itself keeps at /dev/crashcart is neither hidden nor removed."""
    in_target_mount_ns(micro, make)
    try:
        before = snapshot(micro)
        for args in (("--", "true"), ("--mount-only",), ("--unmount",)):
            done = crashcart(state_dir, "attach", "--toolbox", str(toolbox), micro.id, *args)
            assert done.returncode == 1, (args, done.stderr)
            assert f"already has its own {MOUNT_POINT} ({kind})" in done.stderr, done.stderr
            assert len(done.stderr.strip().splitlines()) == 1, done.stderr
            assert snapshot(micro) == before
            assert list(state_dir.iterdir()) == []
    finally:
        in_target_mount_ns(
            micro, "/app/busybox umount /dev/crashcart 2>/dev/null; rm -rf /dev/crashcart"
        )


@pytest.mark.parametrize("how", ["terminal closed", "SIGHUP", "SIGTERM"])
def test_interactive_session_ends_when_closed(
    micro: Container, toolbox: Path, state_dir: Path, how: str
) -> None:
    """Closing the terminal, or SIGHUP/SIGTERM to the session, hangs up the shell (which
    ignores SIGTERM) and ends the session cleanly: no traceback, nothing left behind."""
    before = snapshot(micro)
    master, slave = os.openpty()
    proc = subprocess.Popen(
        crashcart_cmd("attach", "--toolbox", str(toolbox), micro.id),
        stdin=slave,
        stdout=slave,
        stderr=subprocess.PIPE,
        env={**env_for(state_dir), "TERM": "dumb"},
        start_new_session=True,
    )
    os.close(slave)
    try:
        read_until(master, f"[crashcart {micro.id}]".encode())
        os.write(master, b"echo $((6 * 7))x\r")
        read_until(master, b"42x")
        if how == "terminal closed":
            os.close(master)
            master = -1
        else:
            proc.send_signal(signal.SIGHUP if how == "SIGHUP" else signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert b"Traceback" not in err, err.decode()
        assert proc.returncode == 128 + signal.SIGHUP, err.decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if master >= 0:
            os.close(master)
    assert not running_in(micro, "/dev/crashcart/bin/sh")
    assert snapshot(micro) == before
    assert list(state_dir.iterdir()) == []


def test_state_of_a_vanished_mount_is_not_trusted(
    micro: Container, toolbox: Path, state_dir: Path
) -> None:
    """--mount-only, then the mount disappears without crashcart (the target's root removed
    it, or the container died and its mount namespace's number went to a new one): the pin
    recorded for it must not keep a later session's toolbox mounted."""
    before = snapshot(micro)
    tb = ("--toolbox", str(toolbox))
    assert crashcart(state_dir, "attach", "--mount-only", *tb, micro.id).returncode == 0
    in_target_mount_ns(micro, "/app/busybox umount /dev/crashcart && rmdir /dev/crashcart")
    done = crashcart(state_dir, "attach", *tb, micro.id, "--", "true")
    assert done.returncode == 0, done.stderr
    assert not has_toolbox(micro)
    assert snapshot(micro) == before
    assert list(state_dir.iterdir()) == []


def test_a_restarted_container_inherits_nothing(
    tmp_path: Path, busybox: str, toolbox: Path, state_dir: Path
) -> None:
    """A container left with --mount-only is deleted and another one started, which the
    kernel usually gives the same mount namespace number: it starts with no toolbox and no
    pin, and its own /dev/crashcart is its own."""
    tb = ("--toolbox", str(toolbox))
    make_bundle(tmp_path / "a", busybox)
    with running_container("runc", f"cc-test-first-{os.getpid()}", tmp_path / "a") as first:
        assert crashcart(state_dir, "attach", "--mount-only", *tb, first.id).returncode == 0
    make_bundle(tmp_path / "b", busybox)
    with running_container("runc", f"cc-test-second-{os.getpid()}", tmp_path / "b") as second:
        in_target_mount_ns(second, "mkdir /dev/crashcart && echo mine > /dev/crashcart/own")
        before = snapshot(second)
        done = crashcart(state_dir, "attach", *tb, second.id, "--", "true")
        assert done.returncode == 1
        assert "already has its own /dev/crashcart (a directory)" in done.stderr
        assert snapshot(second) == before
        in_target_mount_ns(second, "rm -r /dev/crashcart")
        before = snapshot(second)
        assert crashcart(state_dir, "attach", *tb, second.id, "--", "true").returncode == 0
        assert not has_toolbox(second)
        assert snapshot(second) == before
    # The first container's state is left for its mount namespace's next owner to discard.
    for leftover in state_dir.iterdir():
        shutil.rmtree(leftover)
