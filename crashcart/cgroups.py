"""The target's cgroups, which the session joins (so its reaper and command are born there).

Without `ctypes` or anything else to import: the fast attach path forks the joining child
(start_joining) before it imports the rest of the attach code.
"""

from __future__ import annotations

import os

from smith.errors import CrashcartError


def _cgroup_mounts() -> list[tuple[str, frozenset[str], str, str]]:
    """(fstype, super options, mount root, mount point) of the host's cgroup hierarchies."""
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fstype, _, options = right.split()[:3]
            if fstype in ("cgroup", "cgroup2"):
                fields = left.split()
                found.append((fstype, frozenset(options.split(",")), fields[3], fields[4]))
    return found


def _pids_exhausted(directory: str) -> bool:
    try:
        with open(f"{directory}/pids.max") as f:
            limit = f.read().strip()
        with open(f"{directory}/pids.current") as f:
            current = int(f.read())
    except (OSError, ValueError):
        return False
    return limit != "max" and current >= int(limit)


def target_cgroups(pid: int) -> tuple[tuple[str, ...], str]:
    """The cgroup.procs files of the target's cgroups (one per hierarchy), and a note of what
    is left out: a pids cgroup at its limit, where the session could not start a single
    program (the session is then held by crashcart's own pids cgroup, and says so)."""
    mounts = _cgroup_mounts()
    files: list[str] = []
    note = ""
    with open(f"/proc/{pid}/cgroup") as f:
        lines = f.read().splitlines()
    for line in lines:
        _, controllers, path = line.split(":", 2)
        wanted = frozenset(c for c in controllers.split(",") if c)
        for fstype, options, root, point in mounts:
            if (fstype == "cgroup2") != (not wanted) or not wanted <= options:
                continue
            inside = path[len(root) :] if root != "/" and path.startswith(root) else path
            directory = point + inside.rstrip("/")
            if _pids_exhausted(directory):
                note = f"the target's pids cgroup {path} is full: the session stays out of it"
            else:
                files.append(f"{directory}/cgroup.procs")
            break
    return tuple(files), note


def join_cgroups(files: tuple[str, ...], pid: int) -> None:
    """Move the process pid into each cgroup."""
    for path in files:
        with open(path, "w") as f:
            f.write(str(pid))


# Joins started by start_joining: {target pid: the joining child}.
_joining: dict[int, int] = {}
FULL_PIDS = 3  # the joining child's status when it left a full pids cgroup out


def start_joining(target_pid: int) -> None:
    """Start moving this process (the session) into the target's cgroups, in a child.

    The first write to a cgroup v1 cgroup.procs waits for an RCU grace period (the global
    cgroup threadgroup lock, taken for writing): 10-20 ms on this kind of host, more than
    half of a `runc exec`. The fast attach path starts it before it imports the attach
    code, so that the wait passes meanwhile; join_target_cgroups collects it. The session
    joins, rather than its reaper: everything it forks afterwards is born there."""
    session = os.getpid()
    child = os.fork()
    if child == 0:  # pragma: no cover - the joining child
        code = 1  # join_target_cgroups tries again and reports the error
        try:
            files, note = target_cgroups(target_pid)
            join_cgroups(files, session)
            code = FULL_PIDS if note else 0
        except (OSError, ValueError):
            pass
        os._exit(code)
    _joining[target_pid] = child


def join_target_cgroups(target_pid: int) -> str:
    """Move the session into the target's cgroups (finishing start_joining's work, or doing
    it now); a note of a cgroup left out, or ""."""
    if target_pid in _joining:
        _, status = os.waitpid(_joining.pop(target_pid), 0)
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) in (0, FULL_PIDS):
            return target_cgroups(target_pid)[1] if os.WEXITSTATUS(status) else ""
    files, note = target_cgroups(target_pid)
    try:
        join_cgroups(files, os.getpid())
    except OSError as err:
        message = f"cannot join the target's cgroup {err.filename}: {err.strerror}"
        raise CrashcartError(message) from None
    return note
