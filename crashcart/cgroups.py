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


def _has_controllers(directory: str) -> bool:
    """Whether a v2 cgroup has any controller (its parent enabled one for it)."""
    try:
        with open(f"{directory}/cgroup.controllers") as f:
            return bool(f.read().split())
    except OSError:
        return True  # unknown: joined, to be safe


def target_cgroups(pid: int) -> tuple[tuple[str, ...], tuple[str, ...], str]:
    """The files to write to join the target's cgroups: v1 `tasks` files, v2 `cgroup.procs`
    files; and a note of what is left out: a pids cgroup at its limit, where the session
    could not start a single program (it stays in crashcart's own, and says so).

    A v2 cgroup without any controller (the unified hierarchy of a hybrid host, whose
    controllers are v1's) limits nothing, and joining it would cost a grace period (see
    start_joining): it is left out."""
    mounts = _cgroup_mounts()
    tasks: list[str] = []
    procs: list[str] = []
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
            elif fstype == "cgroup":
                tasks.append(f"{directory}/tasks")
            elif _has_controllers(directory):
                procs.append(f"{directory}/cgroup.procs")
            break
    return tuple(tasks), tuple(procs), note


def join_cgroups(files: tuple[str, ...], pid: str) -> None:
    """Write pid ("0": the calling thread) to each file."""
    for path in files:
        with open(path, "w") as f:
            f.write(pid)


# Joins started by start_joining: {target pid: the joining child}.
_joining: dict[int, int] = {}


def start_joining(target_pid: int) -> None:
    """Start moving this process (the session) into the target's v2 cgroup, in a child.

    A write to cgroup.procs takes the kernel's global cgroup threadgroup lock for writing,
    which waits for an RCU grace period: 10-40 ms on this machine, as much as a whole
    `runc exec`. The fast attach path starts it before it imports the attach code, so that
    the wait passes meanwhile; join_target_cgroups collects it. (v1 hierarchies are joined
    through `tasks`, which skips that lock: no head start needed.) The session joins,
    rather than its reaper: everything it forks afterwards is born there."""
    _, procs, _ = target_cgroups(target_pid)
    if not procs:
        return
    session = os.getpid()
    child = os.fork()
    if child == 0:  # pragma: no cover - the joining child
        code = 1  # join_target_cgroups tries again and reports the error
        try:
            join_cgroups(procs, str(session))
            code = 0
        except OSError:
            pass
        os._exit(code)
    _joining[target_pid] = child


def join_target_cgroups(target_pid: int) -> str:
    """Move the session into the target's cgroups (with start_joining's head start, if it
    had one); a note of a cgroup left out, or ""."""
    tasks, procs, note = target_cgroups(target_pid)
    try:
        # "0" to `tasks` moves the calling thread (the session has only one) without the
        # global lock's grace period (the kernel's cgroup_procs_write_start).
        join_cgroups(tasks, "0")
        child = _joining.pop(target_pid, None)
        if child is not None:
            _, status = os.waitpid(child, 0)
            if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
                procs = ()
        join_cgroups(procs, str(os.getpid()))
    except OSError as err:
        message = f"cannot join the target's cgroup {err.filename}: {err.strerror}"
        raise CrashcartError(message) from None
    return note
