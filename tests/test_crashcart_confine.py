"""The confinement of a crashcart session, on real containers (crashcart/confine.py).

A program planted in the target must get no more from a session than from `runc exec`:
the "shocker" escape (open_by_handle_at of a host file, which CAP_DAC_READ_SEARCH allows
and lsof needs) and a new user namespace are refused, a name the toolbox lacks does not
run the target's program, and the debugging tools still work on the target's pid 1.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from crashcart.confine import CAP_BPF, KEEP
from tests import test_crashcart_attach as attach_tests
from tests.crashcart_containers import Container
from tests.tools import require_tool

# Stands for a binary an attacker left in the container under the name of a tool the
# toolbox lacks: it tries the two ways out a capability-holding session would give it.
ESCAPE_C = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/bpf.h>

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "bpf") == 0) {
        union bpf_attr attr;
        memset(&attr, 0, sizeof attr);
        attr.map_type = BPF_MAP_TYPE_ARRAY;
        attr.key_size = 4;
        attr.value_size = 4;
        attr.max_entries = 1;
        long fd = syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof attr);
        if (fd < 0) { printf("bpf: %s\n", strerror(errno)); return 1; }
        printf("bpf: map created\n");
        return 0;
    }
    if (argc == 2 && strcmp(argv[1], "userns") == 0) {
        if (unshare(CLONE_NEWUSER) != 0) { printf("unshare: %s\n", strerror(errno)); return 1; }
        printf("unshare: ok\n");
        return 0;
    }
    if (argc != 3) return 2;
    size_t n = strlen(argv[2]) / 2;
    struct file_handle *fh = malloc(sizeof *fh + n);
    fh->handle_bytes = n;
    fh->handle_type = atoi(argv[1]);
    for (size_t i = 0; i < n; i++) sscanf(argv[2] + 2 * i, "%2hhx", &fh->f_handle[i]);
    int fd = open_by_handle_at(open("/", O_RDONLY | O_DIRECTORY), fh, O_RDONLY);
    if (fd < 0) { printf("open_by_handle_at: %s\n", strerror(errno)); return 1; }
    char buf[256];
    ssize_t got = read(fd, buf, sizeof buf - 1);
    buf[got > 0 ? got : 0] = 0;
    printf("read: %s\n", buf);
    return 0;
}
"""
# The attach tests' fixtures and helpers (the toolbox is built once for both modules).
busybox = attach_tests.busybox
micro = attach_tests.micro
state_dir = attach_tests.state_dir
toolbox = attach_tests.toolbox
crashcart = attach_tests.crashcart
snapshot = attach_tests.snapshot

PLANTED = "htop"  # not in the toolbox


class FileHandle(ctypes.Structure):
    _fields_ = (
        ("handle_bytes", ctypes.c_uint),
        ("handle_type", ctypes.c_int),
        ("f_handle", ctypes.c_ubyte * 128),
    )


def host_handle(path: Path) -> tuple[str, str]:
    """name_to_handle_at of a host file: (handle type, handle bytes in hex)."""
    libc = ctypes.CDLL(None, use_errno=True)
    handle = FileHandle(128, 0)
    mount_id = ctypes.c_int()
    at_fdcwd = -100
    result = libc.name_to_handle_at(
        at_fdcwd, str(path).encode(), ctypes.byref(handle), ctypes.byref(mount_id), 0
    )
    assert result == 0, os.strerror(ctypes.get_errno())
    raw = bytes(handle.f_handle[: handle.handle_bytes])
    return str(handle.handle_type), raw.hex()


@pytest.fixture(scope="module")
def escape(tmp_path_factory: pytest.TempPathFactory) -> Path:
    gcc = require_tool("gcc")
    work = tmp_path_factory.mktemp("escape")
    (work / "escape.c").write_text(ESCAPE_C)
    subprocess.run(
        [gcc, "-static", "-O2", "-o", str(work / "escape"), str(work / "escape.c")],
        check=True,
        capture_output=True,
    )
    return work / "escape"


@pytest.fixture
def planted(micro: Container, escape: Path) -> Iterator[tuple[str, str]]:
    """The escape planted as /bin/htop in the target, and the handle of a host file that is
    on the target root's filesystem but outside its root."""
    bindir = micro.bundle / "rootfs" / "bin"
    secret = micro.bundle / "host-secret"
    secret.write_text("a host file\n")
    bindir.mkdir(exist_ok=True)
    (bindir / PLANTED).write_bytes(escape.read_bytes())
    (bindir / PLANTED).chmod(0o755)
    try:
        yield host_handle(secret)
    finally:
        (bindir / PLANTED).unlink()
        bindir.rmdir()
        secret.unlink()


def status_fields(text: str) -> dict[str, str]:
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def test_session_is_confined(micro: Container, toolbox: Path, state_dir: Path) -> None:
    done = crashcart(
        state_dir,
        "attach",
        "--toolbox",
        str(toolbox),
        micro.id,
        "--",
        "sh",
        "-c",
        "cat /proc/self/status; echo PATH=$PATH; echo ---; cat /proc/self/cgroup; echo ---;"
        " cat /proc/1/cgroup",
    )
    assert done.returncode == 0, done.stderr
    status, own, theirs = done.stdout.split("---\n")
    fields = status_fields(status)
    mask = f"{sum(1 << cap for cap in KEEP):016x}"
    assert fields["CapEff"] == mask
    assert fields["CapPrm"] == mask
    assert fields["CapBnd"] == mask
    assert fields["NoNewPrivs"] == "1"
    assert fields["Seccomp"] == "2"
    assert "PATH=/dev/crashcart/bin\n" in status

    # Every hierarchy with controllers; a v2 tree without any (a hybrid host's unified
    # hierarchy) limits nothing and is left out (crashcart/cgroups.py).
    def limiting(text: str) -> list[str]:
        lines = text.splitlines()
        v1 = [line for line in lines if line.split(":")[1]]
        return v1 or lines

    assert limiting(own) == limiting(theirs), "the session is in the target's cgroups"


def test_privileged_lifts_it_loudly(micro: Container, toolbox: Path, state_dir: Path) -> None:
    done = crashcart(
        state_dir,
        "attach",
        "--privileged",
        "--toolbox",
        str(toolbox),
        micro.id,
        "--",
        "cat",
        "/proc/self/status",
    )
    assert done.returncode == 0, done.stderr
    assert "--privileged: the session has every capability" in done.stderr
    fields = status_fields(done.stdout)
    assert fields["Seccomp"] == "0"
    assert fields["NoNewPrivs"] == "0"
    assert int(fields["CapEff"], 16) > sum(1 << cap for cap in KEEP)


def test_planted_binary_cannot_escape(
    micro: Container,
    toolbox: Path,
    state_dir: Path,
    planted: tuple[str, str],
) -> None:
    tb = ("--toolbox", str(toolbox))
    before = snapshot(micro)
    # The name alone does not reach it: PATH is the toolbox's only.
    by_name = crashcart(state_dir, "attach", *tb, micro.id, "--", PLANTED, *planted)
    assert by_name.returncode == 127, by_name.stderr
    assert f"cannot run {PLANTED!r} in the target" in by_name.stderr
    # Run on purpose (full path, or --target-path), it meets the seccomp filter.
    by_path = crashcart(state_dir, "attach", *tb, micro.id, "--", f"/bin/{PLANTED}", *planted)
    assert by_path.stdout == "open_by_handle_at: Operation not permitted\n", by_path.stderr
    on_path = crashcart(
        state_dir, "attach", "--target-path", *tb, micro.id, "--", PLANTED, *planted
    )
    assert on_path.stdout == "open_by_handle_at: Operation not permitted\n", on_path.stderr
    assert "--target-path: PATH is the toolbox's, then" in on_path.stderr
    userns = crashcart(state_dir, "attach", *tb, micro.id, "--", f"/bin/{PLANTED}", "userns")
    assert userns.stdout == "unshare: Operation not permitted\n", userns.stderr
    # The escape is real: unconfined, the same program reads the host's file.
    free = crashcart(
        state_dir, "attach", "--privileged", *tb, micro.id, "--", f"/bin/{PLANTED}", *planted
    )
    assert free.stdout == "read: a host file\n\n", free.stderr
    # And runc exec / crun exec refuse it as well (no CAP_DAC_READ_SEARCH there).
    runtime = subprocess.run(
        [micro.runtime, "exec", micro.id, f"/bin/{PLANTED}", *planted],
        capture_output=True,
        text=True,
        check=False,
    )
    assert runtime.stdout == "open_by_handle_at: Operation not permitted\n", runtime.stderr
    assert snapshot(micro) == before


def test_bpf_only_when_asked(
    micro: Container, toolbox: Path, state_dir: Path, planted: tuple[str, str]
) -> None:
    """bpf() is denied unless --allow bpf, which lets it through (with CAP_BPF) loudly and
    lifts nothing else: open_by_handle_at and a new user namespace stay refused."""
    tb = ("--toolbox", str(toolbox))
    program = f"/bin/{PLANTED}"
    denied = crashcart(state_dir, "attach", *tb, micro.id, "--", program, "bpf")
    assert denied.stdout == "bpf: Operation not permitted\n", denied.stderr
    escape = " ".join(planted)
    script = f"{program} bpf; {program} {escape}; {program} userns; grep CapEff /proc/self/status"
    allowed = crashcart(
        state_dir, "attach", "--allow", "bpf", *tb, micro.id, "--", "sh", "-c", script
    )
    assert "--allow bpf: the session may use bpf() and keeps CAP_BPF" in allowed.stderr
    lines = allowed.stdout.splitlines()
    assert lines[:3] == [
        "bpf: map created",
        "open_by_handle_at: Operation not permitted",
        "unshare: Operation not permitted",
    ], allowed.stdout + allowed.stderr
    mask = sum(1 << cap for cap in (*KEEP, CAP_BPF))
    assert lines[3] == f"CapEff:\t{mask:016x}"
    unknown = crashcart(state_dir, "attach", "--allow", "mount", *tb, micro.id, "--", "true")
    assert unknown.returncode == 2
    assert (
        unknown.stderr.strip() == "crashcart: error: --allow 'mount': crashcart can allow only bpf"
    )


def test_debuggers_still_work_on_pid_1(micro: Container, toolbox: Path, state_dir: Path) -> None:
    """strace and gdb attach to the target's pid 1 (another user), lsof reads its fds."""
    script = (
        "strace -p 1 -e trace=none 2>&1 & s=$!; sleep 1; kill $s; wait $s;"
        " gdb -batch -ex 'info proc' -p 1 2>&1 | grep '^process';"
        " ls /proc/1/fd | wc -l; lsof -p 1 -a -d 0 | tail -1"
    )
    done = attach_tests.attach_script(state_dir, toolbox, micro.id, script)
    assert done.returncode == 0, done.stderr
    assert "Process 1 attached" in done.stdout
    assert "process 1" in done.stdout
    lines = done.stdout.splitlines()
    assert int(lines[-2]) >= 3, done.stdout
    assert lines[-1].split()[1] == "1", done.stdout


def test_a_full_pids_cgroup_still_gets_a_working_session(
    tmp_path: Path, busybox: str, toolbox: Path, state_dir: Path
) -> None:
    """A container at its pids limit (where `runc exec` cannot start anything): the session
    stays out of that one cgroup, says so, and its shell can start programs."""
    import json

    from tests.crashcart_containers import make_bundle, running_container

    require_tool("runc")
    make_bundle(tmp_path, busybox)
    config = json.loads((tmp_path / "config.json").read_text())
    config["linux"].setdefault("resources", {})["pids"] = {"limit": 1}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with running_container("runc", f"cc-test-pids-{os.getpid()}", tmp_path) as container:
        stuck = subprocess.run(
            # A shell that must fork: inside the full cgroup it cannot.
            ["runc", "exec", container.id, "/app/busybox", "sh", "-c", "/app/busybox true; exit 0"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert stuck.returncode != 0, "the container is not at its limit: the test shows nothing"
        done = crashcart(
            state_dir,
            *("attach", "--toolbox", str(toolbox), container.id, "--", "sh", "-c"),
            "ls /app; cat /proc/self/cgroup; echo ---; cat /proc/1/cgroup",
        )
        assert done.returncode == 0, done.stderr
        assert "busybox" in done.stdout
        assert "pids cgroup" in done.stderr and "is full" in done.stderr, done.stderr
        own, _, pid1 = done.stdout.partition("---\n")
        ours = {line.split(":")[1]: line for line in own.splitlines() if line.count(":") == 2}
        theirs = {line.split(":")[1]: line for line in pid1.splitlines()}
        assert ours["pids"] != theirs["pids"]
        assert ours["memory"] == theirs["memory"]
