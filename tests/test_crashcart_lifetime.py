"""Nothing outlives a crashcart session (the reaper in crashcart/enter.py).

Whatever the command starts (background jobs, a double fork, a new session) is killed and
reaped when the command ends, and when crashcart itself is SIGKILLed; the target's pid
namespace holds only its own processes again afterwards, no zombie either.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from tests import test_crashcart_attach as attach_tests
from tests.crashcart_containers import Container

# The attach tests' fixtures and helpers (the toolbox is built once for both modules).
busybox = attach_tests.busybox
micro = attach_tests.micro
state_dir = attach_tests.state_dir
toolbox = attach_tests.toolbox
userns_container = attach_tests.userns_container
crashcart = attach_tests.crashcart
env_for = attach_tests.env_for
running_in = attach_tests.running_in
snapshot = attach_tests.snapshot
wait_for = attach_tests.wait_for

# Started in the background in every way a process can leave its parent behind.
LEAVERS = (
    "sleep 1231 & "
    "(sleep 1232 &) ; "
    "setsid sleep 1233 & "
    "sh -c 'trap \"\" HUP TERM; exec sleep 1234' & "
)
LEFT = [("sleep", str(n)) for n in range(1231, 1235)]


def processes_in(container: Container) -> list[tuple[int, str]]:
    """(host pid, state) of every process in the container's pid namespace."""
    theirs = os.stat(f"/proc/{container.pid}/ns/pid").st_ino
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}/ns/pid").st_ino != theirs:
                continue
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        found.append((int(entry), stat[stat.rindex(")") + 2]))
    return sorted(found)


def wait_until_gone(container: Container, limit: float = 10.0) -> list[tuple[int, str]]:
    deadline = time.monotonic() + limit
    while (left := processes_in(container)) != [(container.pid, "S")]:
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    return left


def test_background_jobs_end_with_the_command(
    micro: Container, toolbox: Path, state_dir: Path
) -> None:
    before = snapshot(micro)
    done = crashcart(
        state_dir,
        *("attach", "--toolbox", str(toolbox), micro.id, "--", "sh", "-c"),
        LEAVERS + "sleep 0.5; echo started",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "started\n"
    # Killed and reaped before crashcart returned: not even a zombie is left.
    assert processes_in(micro) == [(micro.pid, "S")]
    assert snapshot(micro) == before


def test_a_sigkilled_session_leaves_no_process(
    micro: Container, toolbox: Path, state_dir: Path
) -> None:
    script = LEAVERS + "exec sleep 1235"
    with attach_tests.background_session(state_dir, toolbox, micro.id, script) as session:
        wait_for(lambda: all(running_in(micro, *argv) for argv in LEFT), session)
        wait_for(lambda: running_in(micro, "sleep", "1235"), session)
        session.send_signal(signal.SIGKILL)
        session.wait()
    assert wait_until_gone(micro) == [(micro.pid, "S")]


def test_a_debuggers_children_are_reaped(micro: Container, toolbox: Path, state_dir: Path) -> None:
    """gdb -p 1 and strace -f leave nothing behind (not even a zombie under the target's
    pid 1, which never reaps)."""
    done = crashcart(
        state_dir,
        *("attach", "--toolbox", str(toolbox), micro.id, "--", "sh", "-c"),
        "gdb -batch -ex 'info proc' -p 1 >/dev/null 2>&1; strace -f -o /dev/null sh -c 'sleep 1 &'",
    )
    assert done.returncode == 0, done.stderr
    assert processes_in(micro) == [(micro.pid, "S")]


def test_user_namespace_session_leaves_no_process(
    userns_container: Container, toolbox: Path, state_dir: Path
) -> None:
    done = crashcart(
        state_dir,
        *("attach", "--toolbox", str(toolbox), userns_container.id, "--", "sh", "-c"),
        LEAVERS + "true",
    )
    assert done.returncode == 0, done.stderr
    assert processes_in(userns_container) == [(userns_container.pid, "S")]


def only_child(pid: int) -> int:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


def others_in(container: Container) -> list[tuple[int, str]]:
    """processes_in but the container's pid 1 (whose state is its own business)."""
    return [(pid, state) for pid, state in processes_in(container) if pid != container.pid]


def guardian_and_reaper(session: subprocess.Popen[bytes]) -> tuple[int, int]:
    """The host pids of a session's guardian (its only child) and reaper (the guardian's)."""
    guardian = only_child(session.pid)
    return guardian, only_child(guardian)


def test_a_later_attach_kills_what_a_killed_reaper_left(
    micro: Container, toolbox: Path, state_dir: Path
) -> None:
    """crashcart, its guardian and its reaper all SIGKILLed (the OOM killer of a full
    container could pick them): the command's background job survives them, until the
    next attach."""
    script = "sleep 1241 & exec sleep 1242"
    with attach_tests.background_session(state_dir, toolbox, micro.id, script) as session:
        wait_for(lambda: running_in(micro, "sleep", "1241"), session)
        wait_for(lambda: running_in(micro, "sleep", "1242"), session)
        guardian, reaper = guardian_and_reaper(session)
        # Stopped first, neither can act on the session's death: they die at once.
        os.kill(guardian, signal.SIGSTOP)
        os.kill(reaper, signal.SIGSTOP)
        session.send_signal(signal.SIGKILL)
        session.wait()
        os.kill(reaper, signal.SIGKILL)
        os.kill(guardian, signal.SIGKILL)
    assert running_in(micro, "sleep", "1241"), "nothing was left: the test shows nothing"
    again = crashcart(state_dir, "attach", "--toolbox", str(toolbox), micro.id, "--", "true")
    assert again.returncode == 0, again.stderr
    assert "killed 1 process(es) left by an earlier session that was killed" in again.stderr
    # What the reaper could not reap went to the target's pid 1, which never reaps (a
    # busybox sleep): zombies of the target's own making, and nothing that runs.
    left = wait_until_gone(micro, limit=2)
    assert {state for pid, state in left if pid != micro.pid} <= {"Z"}, left
    assert list(state_dir.iterdir()) == []


def test_a_killed_reaper_leaves_not_even_a_zombie(
    micro: Container, toolbox: Path, state_dir: Path
) -> None:
    """The reaper SIGKILLed: what it had not reaped goes to the guardian above it, not to
    the target's pid 1 (which never reaps), and is killed and reaped there."""
    script = "sleep 1243 & (sleep 1245 &); exec sleep 1244"
    before = others_in(micro)  # the zombies earlier tests left under the target's pid 1
    with attach_tests.background_session(state_dir, toolbox, micro.id, script) as session:
        wait_for(lambda: running_in(micro, "sleep", "1243"), session)
        wait_for(lambda: running_in(micro, "sleep", "1245"), session)
        os.kill(guardian_and_reaper(session)[1], signal.SIGKILL)
        session.communicate(timeout=30)
    assert session.returncode == 128 + signal.SIGKILL
    assert others_in(micro) == before  # no new zombie either
    assert list(state_dir.iterdir()) == []


def test_a_killed_guardian_is_cleaned_up_by_its_session(
    micro: Container, toolbox: Path, state_dir: Path
) -> None:
    """The guardian SIGKILLed: the reaper sees it die and kills everything; at most the
    reaper itself is left a zombie under a pid 1 that never reaps."""
    script = "sleep 1246 & exec sleep 1247"
    before = set(others_in(micro))  # the zombies earlier tests left
    with attach_tests.background_session(state_dir, toolbox, micro.id, script) as session:
        wait_for(lambda: running_in(micro, "sleep", "1246"), session)
        os.kill(guardian_and_reaper(session)[0], signal.SIGKILL)
        _, err = session.communicate(timeout=30)
    assert session.returncode == 128 + signal.SIGKILL
    wait_until_gone(micro, limit=2)
    new = set(others_in(micro)) - before
    assert {state for _, state in new} <= {"Z"}, (new, err)
    assert len(new) <= 1, new
    assert list(state_dir.iterdir()) == []
