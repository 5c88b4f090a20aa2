"""Counting the sessions that share one toolbox mount in one target.

The count lives on the host, never in the target: /run/crashcart/<mount namespace>/ holds a
lock file, the toolbox the mount came from, one file per live session (its pid and start
time, so a session killed with SIGKILL is recognised as gone rather than counted forever),
and `pinned` while `attach --mount-only` keeps the toolbox mounted without a session.
Everything is read and changed under an exclusive flock on the lock file.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from crashcart.target import is_alive, read_start_time

STATE_ROOT = Path(os.environ.get("CRASHCART_STATE", "/run/crashcart"))


@dataclass(frozen=True)
class MountState:
    """What the state directory says about one target's toolbox mount."""

    directory: Path
    live_sessions: tuple[int, ...]
    pinned: bool
    toolbox: str  # the host path the mounted toolbox was cloned from, "" if unknown

    @property
    def in_use(self) -> bool:
        return bool(self.live_sessions) or self.pinned


@contextlib.contextmanager
def locked_state(key: str) -> Iterator[Path]:
    """Hold the exclusive lock of one target's state directory."""
    directory = STATE_ROOT / key
    lock = directory / "lock"
    while True:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except FileNotFoundError:
            continue  # the directory was removed by `forget` between mkdir and open
        fcntl.flock(fd, fcntl.LOCK_EX)
        # `forget` removes the lock file while holding it: a waiter that then gets the lock
        # holds a file nobody else will see, and must start again on a fresh one.
        try:
            if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        yield directory
    finally:
        os.close(fd)


def read_state(directory: Path) -> MountState:
    """The state, after forgetting sessions whose process is gone (killed, crashed)."""
    live = []
    for entry in sorted(directory.glob("session-*")):
        try:
            pid = int(entry.name.removeprefix("session-"))
            start = int(entry.read_text())
        except (ValueError, OSError):
            entry.unlink(missing_ok=True)
            continue
        if is_alive(pid, start):
            live.append(pid)
        else:
            entry.unlink(missing_ok=True)
    toolbox_file = directory / "toolbox"
    toolbox = toolbox_file.read_text() if toolbox_file.exists() else ""
    return MountState(directory, tuple(live), (directory / "pinned").exists(), toolbox)


def add_session(directory: Path, pid: int) -> None:
    (directory / f"session-{pid}").write_text(str(read_start_time(pid)))


def remove_session(directory: Path, pid: int) -> None:
    (directory / f"session-{pid}").unlink(missing_ok=True)


def set_pinned(directory: Path, pinned: bool) -> None:
    if pinned:
        (directory / "pinned").touch()
    else:
        (directory / "pinned").unlink(missing_ok=True)


def record_toolbox(directory: Path, toolbox: str) -> None:
    (directory / "toolbox").write_text(toolbox)


def forget(directory: Path) -> None:
    """Remove the state of a target whose toolbox is unmounted; call it holding the lock."""
    for name in ("toolbox", "pinned", "lock"):
        (directory / name).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        directory.rmdir()
