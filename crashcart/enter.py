"""Entering the target: forked children that setns, mount, and exec; signals and status.

setns(CLONE_NEWNS) refuses a multi-threaded caller and changes the caller's root, so every
step that enters the target's mount namespace runs in a forked child; the session process
itself stays on the host, where it keeps the count and cleans up. Errors in a child travel
back as text over a close-on-exec pipe (empty pipe = the exec succeeded).

Every attach imports this module and `crashcart attach ID -- CMD` is measured against
`runc exec`, so it imports nothing that costs start-up time: no contextlib, no `signal`
module (crashcart.signals), no typing at run time; the terminal code (crashcart.terminal)
is imported only by interactive sessions.
"""

from __future__ import annotations

import errno
import os

from crashcart import confine, private, session, signals
from crashcart.mount import (
    CLONE_NEWCGROUP,
    CLONE_NEWIPC,
    CLONE_NEWNET,
    CLONE_NEWNS,
    CLONE_NEWPID,
    CLONE_NEWUSER,
    CLONE_NEWUTS,
    MNT_DETACH,
    move_mount,
    setfsgid,
    setfsuid,
    setns,
    umount2,
)
from crashcart.record import record
from crashcart.target import NamespaceFds, read_start_time
from smith.errors import CrashcartError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from types import FrameType

    from crashcart.terminal import PtyPlan

# Entered after the mount namespace (and the root), before the user namespace: as host root
# every setns succeeds; entering the user namespace last drops our host privileges last.
OTHER_NAMESPACES = (
    ("net", CLONE_NEWNET),
    ("ipc", CLONE_NEWIPC),
    ("uts", CLONE_NEWUTS),
    ("cgroup", CLONE_NEWCGROUP),
)
# The reaper's signal that the session is gone (PR_SET_PDEATHSIG): it kills the command.
SESSION_GONE = signals.SIGPWR
FORWARDED_SIGNALS = (
    signals.SIGHUP,
    signals.SIGINT,
    signals.SIGQUIT,
    signals.SIGTERM,
    signals.SIGUSR1,
    signals.SIGUSR2,
    signals.SIGCONT,
)


def describe(err: BaseException) -> str:
    if isinstance(err, OSError):
        where = f" {err.filename}" if err.filename else ""
        return f"{err.strerror or err}{where}"
    return str(err) or type(err).__name__


def enter_mount_ns(ns: NamespaceFds) -> None:
    """Join the target's mount namespace and its root directory (a pivot_root'ed rootfs)."""
    if "mnt" in ns.fds:
        setns(ns.fds["mnt"], CLONE_NEWNS)
    os.fchdir(ns.root_fd)
    os.chroot(".")
    os.chdir("/")


def run_in_mount_ns(ns: NamespaceFds, action: Callable[[], None]) -> None:
    """Run action in a forked child inside the target's mount namespace; raise its error."""
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 0
        try:
            os.close(read_end)
            enter_mount_ns(ns)
            action()
        except BaseException as err:
            os.write(write_end, describe(err).encode())
            code = 1
        os._exit(code)
    os.close(write_end)
    message = read_all(read_end)
    _, status = os.waitpid(pid, 0)
    if message or status != 0:
        raise CrashcartError(message or f"helper failed with status {status}")


def read_all(fd: int) -> str:
    chunks = []
    with os.fdopen(fd, "rb") as pipe:
        while chunk := pipe.read(4096):
            chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def mount_toolbox(tree_fd: int, mount_point: str, owner: Identity, reuse: bool = False) -> None:
    """In the target: create the mount point on its /dev tmpfs and attach the toolbox there.

    A tmpfs mounted inside a user namespace refuses to create files for ids that namespace
    does not map (EOVERFLOW), so the directory is made as `owner`, host ids that it maps.
    An existing mount point is used only with `reuse` (crashcart's state says a session
    killed before it could remove it made it) and only if it is an empty directory.
    """
    parent = os.path.dirname(mount_point)
    try:
        parent_dev = os.stat(parent).st_dev
    except FileNotFoundError:
        raise CrashcartError(f"the target has no {parent} to hold the mount point") from None
    if parent_dev == os.stat("/").st_dev:
        # Creating the mount point there would write to the target's root filesystem.
        raise CrashcartError(
            f"the target's {parent} is not a separate filesystem (tmpfs), and crashcart does "
            f"not write to a target's root filesystem"
        )
    setfsgid(owner.gid)
    setfsuid(owner.uid)
    try:
        os.mkdir(mount_point, 0o755)
    except FileExistsError:
        if not (reuse and os.path.isdir(mount_point) and not os.path.islink(mount_point)):
            raise CrashcartError(f"the target already has its own {mount_point}") from None
        if os.listdir(mount_point):
            raise CrashcartError(f"the target's {mount_point} is not empty") from None
    except OSError as err:
        raise CrashcartError(f"cannot create {mount_point} in the target: {err.strerror}") from None
    try:
        move_mount(tree_fd, mount_point)
    except OSError:
        try:
            os.rmdir(mount_point)
        except OSError:
            pass
        raise


def unmount_toolbox(mount_point: str) -> None:
    """In the target: detach every toolbox mount stacked on the mount point, remove it."""
    for _ in range(16):
        try:
            umount2(mount_point, MNT_DETACH)
        except OSError as err:
            if err.errno in (errno.EINVAL, errno.ENOENT):
                break
            raise
    try:
        os.rmdir(mount_point)
    except FileNotFoundError:
        pass


@record
class Identity:
    """Who the command runs as, in the target's user namespace."""

    uid: int
    gid: int


def _map_id(map_text: str, host_id: int) -> int | None:
    """The id inside a user namespace that a host id maps to, from a uid_map/gid_map."""
    for line in map_text.splitlines():
        inside, outside, count = (int(x) for x in line.split())
        if outside <= host_id < outside + count:
            return inside + host_id - outside
    return None


def _inside_ids(map_text: str) -> list[int]:
    return [int(line.split()[0]) for line in map_text.splitlines()]


def choose_identity(pid: int, in_user_ns: bool) -> Identity:
    """Root of the target's user namespace when root is mapped, otherwise the target's ids."""
    if not in_user_ns:
        return Identity(0, 0)
    ids = []
    for kind, field in (("uid", "Uid:"), ("gid", "Gid:")):
        with open(f"/proc/{pid}/{kind}_map") as f:
            map_text = f.read()
        if 0 in _inside_ids(map_text) or _map_id(map_text, 0) == 0:
            ids.append(0)
            continue
        with open(f"/proc/{pid}/status") as f:
            line = next(x for x in f if x.startswith(field))
        inside = _map_id(map_text, int(line.split()[1]))
        if inside is None:
            raise CrashcartError(f"pid {pid}'s own {kind} is not mapped in its user namespace")
        ids.append(inside)
    return Identity(ids[0], ids[1])


def host_owner(pid: int, in_user_ns: bool) -> Identity:
    """The host ids of the target user namespace's root (or of the target itself)."""
    if not in_user_ns:
        return Identity(0, 0)
    ids = []
    for kind, field in (("uid", "Uid:"), ("gid", "Gid:")):
        with open(f"/proc/{pid}/{kind}_map") as f:
            rows = [[int(x) for x in line.split()] for line in f]
        root = [outside for inside, outside, _ in rows if inside == 0]
        if root:
            ids.append(root[0])
            continue
        with open(f"/proc/{pid}/status") as f:
            ids.append(int(next(x for x in f if x.startswith(field)).split()[1]))
    return Identity(ids[0], ids[1])


def exec_from_path(argv: tuple[str, ...], env: Mapping[str, str]) -> None:
    """execvpe, but without os.execvpe: that imports `warnings` lazily, and by now the root is
    the target's, where there is no Python library to import from."""
    if "/" in argv[0]:
        os.execve(argv[0], argv, env)  # noqa: S606 - the user's own command
    error: OSError = FileNotFoundError(errno.ENOENT, "not found on PATH", argv[0])
    for directory in env.get("PATH", "/bin").split(":"):
        try:
            os.execve(os.path.join(directory or ".", argv[0]), argv, env)  # noqa: S606
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as err:
            error = err  # e.g. EACCES: keep looking, report it if nothing else runs
    raise error


def exec_in_target(
    ns: NamespaceFds,
    argv: tuple[str, ...],
    env: Mapping[str, str],
    identity: Identity,
    pty: PtyPlan | None,
    error_pipe: int,
    confinement: confine.Confinement,
) -> None:  # pragma: no cover - runs in the command's process, a child of the reaper
    try:
        confine.prctl(confine.PR_SET_PDEATHSIG, signals.SIGKILL)  # it dies with its reaper
        pty_slave = None
        if pty is not None:
            # Already imported by the session that made the PtyPlan: nothing is read from
            # the target's root, where there is no Python library.
            from crashcart import terminal

            pty_slave = terminal.child_pty(pty)
        if not confinement.privileged:
            confine.limit_bounding_set(confinement.keep)
            confine.prctl(confine.PR_SET_KEEPCAPS, 1)
        if "user" in ns.fds:
            setns(ns.fds["user"], CLONE_NEWUSER)
            try:
                os.setgroups([])
            except OSError:
                pass  # EPERM when the namespace has setgroups denied
            os.setresgid(identity.gid, identity.gid, identity.gid)
            os.setresuid(identity.uid, identity.uid, identity.uid)
        if confinement.seccomp is not None:
            confine.keep_capabilities(confinement.keep)
            confine.prctl(confine.PR_SET_NO_NEW_PRIVS, 1)
            confine.load_seccomp_program(confinement.seccomp)
        if pty_slave is not None:
            terminal.become_controlling_terminal(pty_slave)
        for sig in FORWARDED_SIGNALS:
            signals.signal(sig, signals.SIG_DFL)
        signals.pthread_sigmask(signals.SIG_UNBLOCK, FORWARDED_SIGNALS)  # blocked by the session
        exec_from_path(argv, env)
    except BaseException as err:
        code = 127 if isinstance(err, FileNotFoundError) else 126
        message = f"cannot run {argv[0]!r} in the target: {describe(err)}"
        if not isinstance(err, OSError) or err.filename is None:
            message = f"cannot enter the target: {describe(err)}"
            code = 125
        try:
            os.write(error_pipe, message.encode())
        except OSError:
            pass
        os._exit(code)


@record
class Launch:
    """Everything the reaper needs to start the command (see spawn_in_target)."""

    argv: tuple[str, ...]
    env: Mapping[str, str]
    identity: Identity
    confinement: confine.Confinement
    pty: PtyPlan | None
    from_terminal: bool  # stdin is the user's terminal (and no pty): ^C reaches everyone
    toolbox: int  # the detached toolbox mount (clone_tree_readonly) for the private view
    mount_point: str
    state_dir: int  # crashcart's state directory, where the reaper records its namespace


def children_of_self() -> list[int]:
    """The reaper's children (orphans of the session included: it is their subreaper), from
    the target's /proc, whose pids are the reaper's own namespace's."""
    try:
        with open(f"/proc/self/task/{os.getpid()}/children") as f:
            return [int(x) for x in f.read().split()]
    except (OSError, ValueError):
        return []


def kill_everything_left() -> None:
    """SIGKILL every process the session started and reap it, until none is left.

    Killing a child hands its own children to the reaper (their subreaper): each round
    reaches one generation further, until waitpid says there is nothing left."""
    while True:
        left = children_of_self()
        for pid in left:
            try:
                os.kill(pid, signals.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            # Without a name from /proc (a target without its procfs) only the dead are
            # reaped: nothing else could be killed.
            pid, _ = os.waitpid(-1, 0 if left else os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _guard(ns: NamespaceFds, launch: Launch, error_pipe: int, parent: int) -> None:
    """The session's first process in the target: the parent of the reaper (_reap), and a
    subreaper too, so that a reaper killed by SIGKILL hands the processes it had not yet
    reaped to this one, which kills and reaps them, rather than to the target's pid 1 (the
    kernel's choice when no ancestor in the namespace is a subreaper), where they would stay
    zombies if that pid 1 never reaps. (Killed itself, it leaves at most the reaper a zombie
    there: the reaper kills and reaps everything else when it sees its parent die.)
    It does nothing else: it forks before anything costly is set up and then sleeps in
    waitpid."""  # pragma: no cover - runs in the child
    code = 125
    try:
        confine.prctl(confine.PR_SET_PDEATHSIG, SESSION_GONE)
        if os.getppid() != parent:
            os._exit(code)  # the session died before the line above: nobody is waiting
        confine.prctl(confine.PR_SET_CHILD_SUBREAPER, 1)
        guardian = os.getpid()  # in the target's pid namespace, the reaper's too
        reaper = os.fork()
    except BaseException as err:
        os.write(error_pipe, f"cannot enter the target: {describe(err)}".encode())
        os._exit(code)
    if reaper == 0:
        _reap(ns, launch, error_pipe, guardian)
    status = 0
    try:
        os.close(error_pipe)
        _close_launch_fds(launch)
        # SESSION_GONE passed on as itself: the reaper ends the session.
        status = wait_forwarding(reaper, launch.from_terminal, SESSION_GONE)
        code = exit_status(status)
    finally:
        if os.WIFSIGNALED(status):
            # What the killed reaper left: its orphans came here. (A reaper that exited
            # killed and reaped everything first: nothing can have come.) From the target's
            # /proc, whose pids are this namespace's.
            try:
                enter_mount_ns(ns)
            except OSError:
                pass  # then only the dead are reaped (see kill_everything_left)
            kill_everything_left()
            # The session learns of a killed reaper as before (the guardian dies of the same
            # signal): the reaper could not remove its record of the private namespace.
            killer = os.WTERMSIG(status)
            try:
                signals.signal(killer, signals.SIG_DFL)
            except (OSError, ValueError):
                pass  # SIGKILL: its disposition cannot be changed, nor needs to be
            os.kill(os.getpid(), killer)
        os._exit(code)


def _close_launch_fds(launch: Launch) -> None:
    """The descriptors only the reaper and the command use."""
    os.close(launch.toolbox)
    os.close(launch.state_dir)
    _close_pty(launch)


def _close_pty(launch: Launch) -> None:
    """The pty's descriptors, in a process that is not the command's: held open, the slave
    would keep the session from seeing EIO."""
    if launch.pty is not None:
        launch.pty.session_end.close()
        launch.pty.child_end.close()
        for fd in (launch.pty.master, launch.pty.slave):
            os.close(fd)


def wait_forwarding(child: int, from_terminal: bool, on_session_gone: int) -> int:
    """Pass the forwarded signals on to `child` (SESSION_GONE as on_session_gone) until it
    ends; its wait status. Other children (a subreaper's orphans) are reaped meanwhile."""

    def forward(signum: int, _frame: FrameType | None) -> None:
        try:
            os.kill(child, on_session_gone if signum == SESSION_GONE else signum)
        except ProcessLookupError:
            pass

    for sig in (*FORWARDED_SIGNALS, SESSION_GONE):
        # A terminal sends ^C and ^\ to the command itself (its foreground process group).
        ignored = from_terminal and sig in (signals.SIGINT, signals.SIGQUIT)
        signals.signal(sig, signals.SIG_IGN if ignored else forward)
    signals.pthread_sigmask(signals.SIG_UNBLOCK, (*FORWARDED_SIGNALS, SESSION_GONE))
    while True:
        pid, status = os.waitpid(-1, 0)
        if pid == child:
            return status


def _reap(ns: NamespaceFds, launch: Launch, error_pipe: int, parent: int) -> None:
    """The reaper, the guardian's child: the subreaper of everything the command starts. It
    outlives the command only to kill and reap what the command left (background jobs,
    daemons, a debugger's children), and dies with the session, also a SIGKILLed one
    (PR_SET_PDEATHSIG through the guardian), killing it all first."""  # pragma: no cover
    code = 125
    recorded = ""
    try:
        try:
            confine.prctl(confine.PR_SET_PDEATHSIG, SESSION_GONE)
            if os.getppid() != parent:
                os._exit(code)  # the guardian died before the line above
            me = int(os.readlink("/proc/self"))  # the host's /proc still: the host's pid
            start = read_start_time(me)
            enter_mount_ns(ns)
            private.enter_private_copy()
            own = os.stat("/proc/self/ns/mnt")
            key = (own.st_dev, own.st_ino)
            recorded = session.record_private_at(launch.state_dir, key, me, start)
            # Told first, before the command can end: the session needs the namespace if
            # this reaper is killed, and by the time it asked /proc it could be gone.
            os.write(error_pipe, f"ns {key[0]} {key[1]}\n".encode())
            private.mount_private_dev(launch.toolbox, launch.mount_point)
            os.close(launch.toolbox)
            for name, flag in OTHER_NAMESPACES:
                if name in ns.fds:
                    setns(ns.fds[name], flag)
            confine.prctl(confine.PR_SET_CHILD_SUBREAPER, 1)
            command = os.fork()
        except BaseException as err:
            os.write(error_pipe, f"cannot enter the target: {describe(err)}".encode())
            os._exit(code)
        if command == 0:
            exec_in_target(
                ns,
                launch.argv,
                launch.env,
                launch.identity,
                launch.pty,
                error_pipe,
                launch.confinement,
            )
        os.close(error_pipe)
        _close_pty(launch)
        code = exit_status(wait_forwarding(command, launch.from_terminal, signals.SIGKILL))
        kill_everything_left()
    finally:
        if recorded:
            session.forget_private_at(launch.state_dir, recorded)
        os._exit(code)


def spawn_in_target(ns: NamespaceFds, launch: Launch) -> tuple[int, int]:
    """Fork the reaper in the target's pid namespace, which starts the command; (the
    reaper's pid, the error pipe). The reaper's exit status is the command's.

    setns(CLONE_NEWPID) only decides where the caller's next child is born, so the session
    process sets it just around the fork and then returns to its own pid namespace.
    The forwarded signals are blocked from here until the session's handlers know the
    child's pid (see forward_signals): a SIGTERM in between is delivered late, not lost.
    """
    signals.pthread_sigmask(signals.SIG_BLOCK, (*FORWARDED_SIGNALS, SESSION_GONE))
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    own_pid_ns = -1
    own_pid = os.getpid()
    # What the reaper's getppid() says while the session lives: 0 across a pid namespace.
    parent = 0 if "pid" in ns.fds else own_pid
    if "pid" in ns.fds:
        own_pid_ns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        setns(ns.fds["pid"], CLONE_NEWPID)
    try:
        pid = os.fork()
    except OSError as err:
        # ENOMEM: the target's pid namespace has no init any more.
        raise CrashcartError(f"the target exited during the attach ({err.strerror})") from None
    finally:
        if own_pid_ns >= 0 and os.getpid() == own_pid:
            setns(own_pid_ns, CLONE_NEWPID)
            os.close(own_pid_ns)
    if pid == 0:  # pragma: no cover
        os.close(read_end)
        _guard(ns, launch, write_end, parent)
    os.close(write_end)
    signals.pthread_sigmask(signals.SIG_UNBLOCK, (SESSION_GONE,))
    return pid, read_end


def exit_status(status: int) -> int:
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.waitstatus_to_exitcode(status)


def wait_forwarding_signals(pid: int, from_terminal: bool) -> int:
    """Wait for the reaper, passing on the signals the session receives; its wait status.

    The signals were blocked by spawn_in_target: unblocking them once the handlers are in
    place delivers any that arrived meanwhile.
    """

    def forward(signum: int, _frame: FrameType | None) -> None:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    previous: dict[int, signals.Handler] = {}
    for sig in FORWARDED_SIGNALS:
        # A terminal already sends ^C and ^\ to the whole foreground group, the command too.
        if from_terminal and sig in (signals.SIGINT, signals.SIGQUIT):
            previous[sig] = signals.signal(sig, signals.SIG_IGN)
        else:
            previous[sig] = signals.signal(sig, forward)
    signals.pthread_sigmask(signals.SIG_UNBLOCK, FORWARDED_SIGNALS)
    try:
        _, status = os.waitpid(pid, 0)
    finally:
        for signum, handler in previous.items():
            signals.signal(signum, handler)
    return status


def namespace_key(pid: int) -> tuple[int, int]:
    st = os.stat(f"/proc/{pid}/ns/mnt")
    return st.st_dev, st.st_ino


def split_reaper_report(text: str) -> tuple[tuple[int, int] | None, str]:
    """(the reaper's private namespace, the error message) from what the error pipe said."""
    if not text.startswith("ns "):
        return None, text
    line, _, message = text.partition("\n")
    _, dev, ino = line.split()
    return (int(dev), int(ino)), message


def namespace_members(key: tuple[int, int]) -> list[int]:
    """The live processes (zombies have no namespaces left) in the mount namespace `key`."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if namespace_key(int(entry)) == key:
                    found.append(int(entry))
            except OSError:
                continue
    return found


def kill_namespace_members(key: tuple[int, int], grace: float = 0.0) -> int:
    """SIGKILL every process in the mount namespace `key` (a session's private copy) until
    none is left; how many there were. A scan of the host's /proc: only for the rare
    session whose guardian was killed (its reaper, if alive, first gets `grace` seconds to
    end the session itself) or a later attach after one whose reaper was killed too.

    What it kills stays a zombie under the target's pid 1 if that never reaps, and no kill
    of the tree could avoid it: the kernel hands a dead process's children to the nearest
    living subreaper of the namespace (the guardian's job), else to its init, before anyone
    can act; even a cgroup.kill of a reaper and its children together (a per-session
    cgroup, tried) leaves the children zombies under that init."""
    if grace > 0:
        import time  # only here: a rare path

        deadline = time.monotonic() + grace
        while namespace_members(key) and time.monotonic() < deadline:
            time.sleep(0.02)
    killed: set[int] = set()
    for _ in range(100):
        found = namespace_members(key)
        if not found:
            break
        for pid in found:
            try:
                os.kill(pid, signals.SIGKILL)
                killed.add(pid)
            except ProcessLookupError:
                pass
    return len(killed)
