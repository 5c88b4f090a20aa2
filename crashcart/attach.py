"""`crashcart attach`: the whole sequence, top to bottom.

resolve the target → open its namespaces → (under the host-side lock) reuse, repair or make
the toolbox mount and count this session → run the command or shell in the target →
(under the lock) uncount, and unmount when the last session leaves.
"""

from __future__ import annotations

import os
import stat
import sys

from crashcart import cgroups, confine, enter, session, signals
from crashcart.mount import clone_tree_readonly
from crashcart.prefix import DEFAULT_TOOLBOX, MOUNT_POINT, check_toolbox, is_image
from crashcart.record import record
from crashcart.target import NamespaceFds, Target, open_namespaces, resolve_target
from smith.errors import CrashcartError, UsageError

TYPE_CHECKING = False  # typing.TYPE_CHECKING; importing typing costs attach start-up time
if TYPE_CHECKING:
    from collections.abc import Callable


@record
class AttachRequest:
    target: str
    command: tuple[str, ...] = ()
    toolbox: str | None = None  # a host directory; None: the default toolbox
    mount_only: bool = False
    unmount: bool = False
    force: bool = False
    docker_host: str | None = None
    tty: bool | None = None  # None: a pty when there is no command and stdin is a terminal
    privileged: bool = False  # every capability, no seccomp filter, no no_new_privs
    target_path: bool = False  # the target's own PATH after the toolbox's
    record: str | None = None  # an asciicast v2 transcript of the (terminal) session
    namespace: str | None = None  # a Kubernetes namespace: the target is POD[/CONTAINER]
    runtime_endpoint: str | None = None  # the CRI socket (crictl's --runtime-endpoint)
    allow: tuple[str, ...] = ()  # what the confinement lets through besides (confine.ALLOWABLE)

    @staticmethod
    def _is_registry_reference(toolbox: str) -> bool:
        # A directory or archive that exists is never a reference; only otherwise is the
        # reference parser imported (it costs more than the whole attach).
        if os.path.exists(toolbox):
            return False
        from smith.oci.reference import is_registry_reference

        return is_registry_reference(toolbox)

    def toolbox_directory(self) -> str:
        """The toolbox directory; an image (--toolbox IMAGE) is unpacked into a cache first."""
        if self.toolbox and not self.unmount and self._is_registry_reference(self.toolbox):
            from crashcart.image import toolbox_from_image

            return toolbox_from_image(self.toolbox)  # pulled, then unpacked like an archive
        path = os.path.abspath(self.toolbox or DEFAULT_TOOLBOX)
        if self.toolbox and not self.unmount and is_image(path):
            from crashcart.image import toolbox_from_image  # imports smith's image code: slow

            return toolbox_from_image(path)
        return path

    def check(self) -> None:
        confine.allowed(self.allow)  # an unknown name is refused before anything is done
        if self.allow and self.privileged:
            raise UsageError("--allow lifts one denial, --privileged all of them: not both")
        if self.mount_only and self.unmount:
            raise UsageError("--mount-only and --unmount exclude each other")
        if self.record and (self.mount_only or self.unmount):
            raise UsageError("--record records a session: not with --mount-only or --unmount")
        if self.record:
            check_record_path(self.record)
        if self.record and not sys.stdin.isatty():
            raise UsageError("--record records a terminal session: stdin is not a terminal")
        if (self.mount_only or self.unmount) and self.command:
            raise UsageError(f"--mount-only and --unmount take no command, got {self.command[0]!r}")


def check_record_path(path: str) -> None:
    """--record FILE replaces FILE when the session ends (a rename): only a regular file
    may be replaced, never a FIFO, a device or a socket, nor a symlink's own name (the
    transcript would take the link's place, not go where it points)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as err:
        raise UsageError(f"--record {path!r}: {err.strerror}") from None
    if not stat.S_ISREG(mode):
        kind = {
            stat.S_IFLNK: "a symbolic link",
            stat.S_IFDIR: "a directory",
            stat.S_IFIFO: "a FIFO",
            stat.S_IFSOCK: "a socket",
        }.get(stat.S_IFMT(mode), "a device")
        raise UsageError(f"--record {path!r} is {kind}: name a regular file to write")


def run_request(request: AttachRequest) -> int:
    """Carry out `crashcart attach` with its options; the exit status."""
    request.check()
    if request.mount_only:
        mount_only(request)
        return 0
    if request.unmount:
        unmount(request)
        return 0
    return attach(request)


def say(message: str) -> None:
    print(f"crashcart: {message}", file=sys.stderr, flush=True)


def mount_signature(target: Target) -> str | None:
    """The top mount on the toolbox mount point in the target's mount table, None if none:
    its mount id, device and root (for crashcart's, the toolbox's path on the host)."""
    found = None
    try:
        with open(f"/proc/{target.pid}/mountinfo") as f:
            for line in f:
                fields = line.split()
                if fields[4] == MOUNT_POINT:
                    found = " ".join((fields[0], fields[2], fields[3]))
    except (FileNotFoundError, ProcessLookupError):
        raise CrashcartError(f"{target.description} exited during the attach") from None
    return found


def is_mounted(target: Target) -> bool:
    """Whether the target's mount table has something on the toolbox mount point."""
    return mount_signature(target) is not None


def current_state(target: Target, directory: str) -> session.MountState:
    """The state, without what it says about a mount that is no longer there: the mount
    namespace it described died and the kernel gave its number to the target's, or the
    mount was removed behind crashcart's back. (A live session holds its namespace open,
    so the sessions counted are never another namespace's.)"""
    state = session.read_state(directory)
    if state.mount and state.mount != mount_signature(target):
        session.forget_mount(directory)
        state = session.read_state(directory)
    return state


def mount_point_kind(target: Target, ns: NamespaceFds) -> str | None:
    """What is at the mount point in the target ("a mount", "a directory"...), None if nothing."""
    if is_mounted(target):
        return "a mount"
    try:
        # Walked from the target's root: the lookup crosses the target's own mounts (its /dev).
        mode = os.lstat(MOUNT_POINT.lstrip("/"), dir_fd=ns.root_fd).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    if stat.S_ISDIR(mode):
        return "a directory"
    return "a symbolic link" if stat.S_ISLNK(mode) else "a file"


def refuse_foreign(target: Target, kind: str) -> CrashcartError:
    return CrashcartError(
        f"{target.description} already has its own {MOUNT_POINT} ({kind}), "
        f"and crashcart does not hide or remove what is not its own"
    )


def state_key(ns: NamespaceFds) -> str:
    st = os.fstat(ns.fds["mnt"]) if "mnt" in ns.fds else os.stat("/proc/self/ns/mnt")
    return f"mnt-{st.st_dev}-{st.st_ino}"


def check_root(request: AttachRequest) -> None:
    if os.geteuid() != 0:
        raise CrashcartError(
            f"no permission to attach to {request.target!r}",
            hint="crashcart needs root: it enters namespaces and mounts the toolbox",
        )


def open_target(request: AttachRequest) -> tuple[Target, NamespaceFds]:
    check_root(request)
    target = resolve_target(
        request.target, request.docker_host, request.namespace, request.runtime_endpoint
    )
    if target.pid == os.getpid():
        raise CrashcartError(f"pid {target.pid} is crashcart itself")
    ns = open_namespaces(target)
    if not request.force and ("mnt" in ns.same_as_host or "pid" in ns.same_as_host):
        shared = ", ".join(n for n in ns.same_as_host if n in ("mnt", "pid"))
        ns.close()
        raise CrashcartError(
            f"{target.description} runs in the host's own namespaces ({shared})",
            hint="it is not in a container; --force attaches anyway and mounts on the host",
        )
    return target, ns


def acquire_mount(
    target: Target, ns: NamespaceFds, toolbox: str, hold: Callable[[str], None]
) -> None:
    """Make sure the toolbox is mounted in the target, then record the holder (under lock)."""
    with session.locked_state(state_key(ns)) as directory:
        state = current_state(target, directory)
        try:
            _ensure_mounted(target, ns, toolbox, state, directory)
        except BaseException:
            # Leave no state behind a refused attach, but keep the record of a mount point
            # this attach made before it was interrupted: the next attach removes it.
            if not state.in_use and not (
                session.read_state(directory).toolbox and _left_something(target, ns)
            ):
                session.forget(directory)
            raise
        hold(directory)


def _left_something(target: Target, ns: NamespaceFds) -> bool:
    try:
        return mount_point_kind(target, ns) is not None
    except CrashcartError:  # the target exited: its mount namespace is gone with it
        return False


def _ensure_mounted(
    target: Target, ns: NamespaceFds, toolbox: str, state: session.MountState, directory: str
) -> None:
    # Only what the state records as crashcart's is ever reused or removed.
    if not state.toolbox:
        kind = mount_point_kind(target, ns)
        if kind is not None:
            raise refuse_foreign(target, kind)
    mounted = is_mounted(target)
    if mounted and state.in_use and state.toolbox != toolbox:
        raise CrashcartError(
            f"{target.description} already has the toolbox {state.toolbox} mounted "
            f"for {len(state.live_sessions)} session(s)",
            hint=f"attach with --toolbox {state.toolbox}, or wait for them to finish",
        )
    if mounted and not state.in_use:
        say(f"removing a toolbox mount left in {target.description} by an earlier session")
        enter.run_in_mount_ns(ns, lambda: enter.unmount_toolbox(MOUNT_POINT))
        mounted = False
    if not mounted:
        tree = clone_tree_readonly(toolbox)
        owner = enter.host_owner(target.pid, "user" in ns.fds)
        # Recorded first: a session killed while mounting leaves a mount point known as ours.
        reuse = bool(state.toolbox)  # an empty mount point left by a killed session
        session.record_toolbox(directory, toolbox)
        try:
            enter.run_in_mount_ns(ns, lambda: enter.mount_toolbox(tree, MOUNT_POINT, owner, reuse))
        finally:
            os.close(tree)
        session.record_mount(directory, mount_signature(target) or "")


def release_mount(
    target: Target, ns: NamespaceFds, release: Callable[[str], None], force: bool = False
) -> bool:
    """Drop a holder; unmount when no one holds the toolbox any more. True if unmounted."""
    with session.locked_state(state_key(ns)) as directory:
        release(directory)
        state = session.read_state(directory)
        if state.in_use and not force:
            return False
        enter.run_in_mount_ns(ns, lambda: enter.unmount_toolbox(MOUNT_POINT))
        session.forget(directory)
        return True


def target_path(target: Target) -> str:
    """The PATH of the target's own process (its pid 1, usually), or the usual default."""
    path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    try:
        with open(f"/proc/{target.pid}/environ", "rb") as f:
            for item in f.read().split(b"\0"):
                if item.startswith(b"PATH="):
                    path = item[5:].decode(errors="replace")
    except OSError:
        pass
    return path


def session_env(target: Target, with_target_path: bool = False) -> dict[str, str]:
    """The command's environment. PATH is the toolbox's only: a name the toolbox lacks must
    not run a program of the target's (which may be planted there) as the session's user;
    the target's own programs are run by their full path, or with --target-path."""
    extra = target_path(target) if with_target_path else ""
    return toolbox_env(target.name, target.description, extra)


def toolbox_env(name: str, description: str, extra_path: str = "") -> dict[str, str]:
    """The environment of a command run with the toolbox (attach's and debug's)."""
    path = f"{MOUNT_POINT}/bin"
    if extra_path:
        path = f"{path}:{extra_path}"
    return {
        "PATH": path,
        "HOME": "/",
        "TERM": os.environ.get("TERM", "xterm"),
        "PS1": f"[crashcart {name}] \\w \\$ ",
        "TERMINFO": f"{MOUNT_POINT}/usr/share/terminfo",
        "CURL_CA_BUNDLE": f"{MOUNT_POINT}/etc/ssl/certs/ca-certificates.crt",
        "CRASHCART_TARGET": description,
        # busybox's sh runs its own applets before PATH (e.g. its `ip`): the interactive
        # shell reads aliases to the toolbox's real tools from here.
        "ENV": f"{MOUNT_POINT}/etc/profile",
    }


def session_confinement(request: AttachRequest, target: Target) -> confine.Confinement:
    """The session's limits: the target's cgroups, and unless --privileged, the capabilities,
    no_new_privs and seccomp filter of crashcart/confine.py."""
    note = cgroups.join_target_cgroups(target.pid)
    if note:
        say(note)
    if request.privileged:
        say(
            "--privileged: the session has every capability of host root, no seccomp "
            "filter and no no_new_privs; a program of the target it runs can reach the host"
        )
        return confine.Confinement(None)
    return allowing_confinement(request.allow)


def allowing_confinement(allow: tuple[str, ...]) -> confine.Confinement:
    """The confinement, with what --allow asks for let through (and said so, loudly)."""
    confinement = confine.confinement_for(allow)
    for name in allow:
        say(
            f"--allow {name}: the session may use {name}() and keeps CAP_{name.upper()}; "
            f"the rest of the confinement holds"
        )
    return confinement


def run_command(
    request: AttachRequest, target: Target, ns: NamespaceFds, tree: int, toolbox: str
) -> int:
    command = request.command or (f"{MOUNT_POINT}/bin/sh",)
    use_pty = request.tty if request.tty is not None else not request.command
    use_pty = (use_pty or bool(request.record)) and sys.stdin.isatty()
    identity = enter.choose_identity(target.pid, "user" in ns.fds)
    env = session_env(target, request.target_path)
    confinement = session_confinement(request, target)
    if request.target_path:
        say(
            f"--target-path: PATH is the toolbox's, then {target.description}'s own "
            f"({target_path(target)}): a name the toolbox lacks runs the target's program"
        )
    if not request.command:
        say(f"in {target.description}; the toolbox is at {MOUNT_POINT}; exit to leave")
    pty = None
    if use_pty:
        from crashcart import terminal  # socket, tty...: only interactive sessions pay for them

        pty = terminal.open_pty()
    from_terminal = pty is None and sys.stdin.isatty()
    launch = enter.Launch(
        command,
        env,
        identity,
        confinement,
        pty,
        from_terminal,
        tree,
        MOUNT_POINT,
        session.open_state_root(),
    )
    pid, errors = enter.spawn_in_target(ns, launch)
    master = terminal.receive_target_pty(pty) if pty is not None else None
    key, message = enter.split_reaper_report(enter.read_all(errors))
    if message or key is None:
        signals.pthread_sigmask(signals.SIG_UNBLOCK, enter.FORWARDED_SIGNALS)
        _, status = os.waitpid(pid, 0)
        if master is not None:
            os.close(master)
        say(message or "the session's reaper ended before the command started")
        os.close(launch.state_dir)
        return enter.exit_status(status)
    try:
        if master is not None:
            transcript = None
            if request.record:
                from crashcart.transcript import Transcript, terminal_size

                size = terminal_size(sys.stdin.fileno())
                transcript = Transcript(request.record, target.description, toolbox, size)
            try:
                status = terminal.relay_pty(pid, master, transcript)
            finally:
                if transcript is not None:
                    transcript.close()
                    say(f"the session's transcript is in {request.record}")
        else:
            status = enter.wait_forwarding_signals(pid, sys.stdin.isatty())
        if os.WIFSIGNALED(status):
            # The guardian was killed, or died of the signal that killed the reaper (having
            # killed what that left). A live reaper ends the session itself, given a moment.
            killed = enter.kill_namespace_members(key, grace=1.0)
            if killed:
                say(f"the session's reaper was killed: killed {killed} process(es) it left")
            session.forget_private(key)  # the reaper's own record: it could not remove it
    finally:
        os.close(launch.state_dir)
    return enter.exit_status(status)


def clean_up_abandoned() -> None:
    """Kill what sessions killed with their reapers left in their private namespaces."""
    for key in session.abandoned_private():
        killed = enter.kill_namespace_members(key)
        if killed:
            say(f"killed {killed} process(es) left by an earlier session that was killed")
        session.forget_private(key)


def attach(request: AttachRequest) -> int:
    """Run a command (or a shell) in the target with the toolbox; its exit status.

    The toolbox is mounted in the session's private copy of the target's mount namespace
    (crashcart/private.py), never in the target's: there is nothing to count, share or
    remove afterwards, and nothing is left by a session that was killed."""
    target, ns = open_target(request)  # first: a mistyped target is the likelier mistake
    try:
        clean_up_abandoned()
        toolbox = check_toolbox(request.toolbox_directory())
        kind = mount_point_kind(target, ns)
        # Only --mount-only keeps state: for a mount point there, or (a stat) to drop the
        # state of its mount when that is gone.
        recorded = ""
        if kind is not None or session.has_state(state_key(ns)):
            recorded = recorded_toolbox(target, ns)
        if kind is not None and not recorded:
            raise refuse_foreign(target, kind)
        tree = clone_tree_readonly(toolbox)
        try:
            return run_command(request, target, ns, tree, toolbox)
        finally:
            os.close(tree)
    finally:
        ns.close()


def recorded_toolbox(target: Target, ns: NamespaceFds) -> str:
    """The toolbox that --mount-only mounted in the target, "" if the mount point is not
    crashcart's (and then no state is kept for it)."""
    with session.locked_state(state_key(ns)) as directory:
        ours = current_state(target, directory).toolbox
        if not ours:
            session.forget(directory)
    return ours


def mount_only(request: AttachRequest) -> None:
    target, ns = open_target(request)
    try:
        toolbox = check_toolbox(request.toolbox_directory())
        acquire_mount(target, ns, toolbox, lambda d: session.set_pinned(d, True))
    finally:
        ns.close()
    say(f"toolbox mounted at {MOUNT_POINT} in {target.description}")


def unmount(request: AttachRequest) -> None:
    target, ns = open_target(request)
    try:
        ours = recorded_toolbox(target, ns)
        if not ours:
            kind = mount_point_kind(target, ns)
            if kind is not None:
                raise refuse_foreign(target, kind)
            say(f"no toolbox is mounted in {target.description}")
            return
        done = release_mount(
            target, ns, lambda d: session.set_pinned(d, False), force=request.force
        )
    finally:
        ns.close()
    if done:
        say(f"toolbox removed from {target.description}")
    else:
        say(f"toolbox left in {target.description}: sessions still use it (--force removes it)")
