"""Counting the sessions that share one toolbox mount in one target.

The count lives on the host, never in the target: /run/crashcart/<mount namespace>/ holds a
lock file, the toolbox the mount came from, one file per live session (its pid and start
time, so a session killed with SIGKILL is recognised as gone rather than counted forever),
`pinned` while `attach --mount-only` keeps the toolbox mounted without a session, and
`mount`, what the target's mount table said of the toolbox mount once it was made (so that
state outliving its namespace, whose number the kernel soon gives to a new one, is told
from a mount that is really crashcart's).
Everything is read and changed under an exclusive flock on the lock file.

(os.path rather than pathlib, and no contextlib: every attach imports this, and its start-up
time is part of the benchmark against `runc exec`.)
"""

from __future__ import annotations

import fcntl
import os

from crashcart.record import record
from crashcart.target import is_alive, read_start_time

STATE_ROOT = os.environ.get("CRASHCART_STATE", "/run/crashcart")


@record
class MountState:
    """What the state directory says about one target's toolbox mount."""

    directory: str
    live_sessions: tuple[int, ...]
    pinned: bool
    toolbox: str  # the host path the mounted toolbox was cloned from, "" if unknown
    mount: str = ""  # the mount's signature (see attach.mount_signature), "" if unknown

    @property
    def in_use(self) -> bool:
        return bool(self.live_sessions) or self.pinned


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class locked_state:  # a class rather than @contextmanager: no contextlib import
    """`with locked_state(key) as directory`: hold the exclusive lock of one target's state
    directory."""

    def __init__(self, key: str) -> None:
        self.directory = os.path.join(STATE_ROOT, key)
        self.fd = -1

    def __enter__(self) -> str:
        lock = os.path.join(self.directory, "lock")
        while True:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            try:
                fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except FileNotFoundError:
                continue  # the directory was removed by `forget` between makedirs and open
            fcntl.flock(fd, fcntl.LOCK_EX)
            # `forget` removes the lock file while holding it: a waiter that then gets the
            # lock holds a file nobody else will see, and must start again on a fresh one.
            try:
                if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                    self.fd = fd
                    return self.directory
            except FileNotFoundError:
                pass
            os.close(fd)

    def __exit__(self, *exc_info: object) -> None:
        os.close(self.fd)


def has_state(key: str) -> bool:
    return os.path.isdir(os.path.join(STATE_ROOT, key))


def read_state(directory: str) -> MountState:
    """The state, after forgetting sessions whose process is gone (killed, crashed)."""
    live = []
    for name in sorted(os.listdir(directory)):
        if not name.startswith("session-"):
            continue
        path = os.path.join(directory, name)
        try:
            pid = int(name.removeprefix("session-"))
            with open(path) as f:
                start = int(f.read())
        except (ValueError, OSError):
            _unlink(path)
            continue
        if is_alive(pid, start):
            live.append(pid)
        else:
            _unlink(path)
    try:
        with open(os.path.join(directory, "toolbox")) as f:
            toolbox = f.read()
    except FileNotFoundError:
        toolbox = ""
    pinned = os.path.exists(os.path.join(directory, "pinned"))
    try:
        with open(os.path.join(directory, "mount")) as f:
            mount = f.read()
    except FileNotFoundError:
        mount = ""
    return MountState(directory, tuple(live), pinned, toolbox, mount)


def add_session(directory: str, pid: int) -> None:
    _write(os.path.join(directory, f"session-{pid}"), str(read_start_time(pid)))


def remove_session(directory: str, pid: int) -> None:
    _unlink(os.path.join(directory, f"session-{pid}"))


def set_pinned(directory: str, pinned: bool) -> None:
    if pinned:
        _write(os.path.join(directory, "pinned"), "")
    else:
        _unlink(os.path.join(directory, "pinned"))


def record_toolbox(directory: str, toolbox: str) -> None:
    _write(os.path.join(directory, "toolbox"), toolbox)


def record_mount(directory: str, signature: str) -> None:
    _write(os.path.join(directory, "mount"), signature)


def forget_mount(directory: str) -> None:
    """Drop what the state says about a mount that is gone; live sessions stay counted."""
    for name in ("toolbox", "mount", "pinned"):
        _unlink(os.path.join(directory, name))


def forget(directory: str) -> None:
    """Remove the state of a target whose toolbox is unmounted; call it holding the lock."""
    for name in ("toolbox", "mount", "pinned", "lock"):
        _unlink(os.path.join(directory, name))
    try:
        os.rmdir(directory)
    except OSError:
        pass


# -- sessions' private mount namespaces -----------------------------------------------------
# STATE_ROOT/private-DEV-INO holds "PID START" of the reaper whose private mount namespace
# that is, written by the reaper as it makes the namespace and removed as it exits: one
# left behind is a reaper that was killed (with its session: the OOM killer in a full
# container, say), and what runs in its namespace is killed by the next attach.


def open_state_root() -> int:
    os.makedirs(STATE_ROOT, mode=0o700, exist_ok=True)
    return os.open(STATE_ROOT, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def private_name(key: tuple[int, int]) -> str:
    return f"private-{key[0]}-{key[1]}"


def record_private_at(dir_fd: int, key: tuple[int, int], pid: int, start: int) -> str:
    """In the reaper (its root is the target's by then: hence the directory descriptor)."""
    name = private_name(key)
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
    try:
        os.write(fd, f"{pid} {start}".encode())
    finally:
        os.close(fd)
    return name


def forget_private_at(dir_fd: int, name: str) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass


def forget_private(key: tuple[int, int]) -> None:
    _unlink(os.path.join(STATE_ROOT, private_name(key)))


def abandoned_private() -> list[tuple[int, int]]:
    """Every private namespace whose reaper is gone."""
    try:
        names = os.listdir(STATE_ROOT)
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        if not name.startswith("private-"):
            continue
        path = os.path.join(STATE_ROOT, name)
        try:
            dev, ino = (int(x) for x in name.removeprefix("private-").split("-"))
            with open(path) as f:
                pid, start = (int(x) for x in f.read().split())
        except (ValueError, OSError):
            continue
        if not is_alive(pid, start):
            found.append((dev, ino))
    return found
