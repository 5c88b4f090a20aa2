"""`crashcart debug`: a post-mortem session on the filesystem of a crashed container.

A container that crashed (or keeps crashing) has no process whose namespaces could be
entered. So the session builds the container's view in namespaces of its own
(crashcart/postmortem.py says where the pieces are): its first process is pid 1 of a new
pid namespace, in a new mount, UTS, IPC and network namespace (only a loopback device);
there it mounts the container's root filesystem read-only (nosuid, nodev), pivots into
it, mounts a /proc of its own, a tmpfs over /dev holding the toolbox at /dev/crashcart and
the core file at /dev/core, and the container's bind mounts whose sources still exist,
read-only too. The command is confined as attach's is (crashcart/confine.py).

Nothing outlives the session and nothing is written: the mounts exist only in the
session's mount namespace, which goes with its last process; pid 1 exits when the command
does, and the kernel kills whatever is left in its pid namespace; pid 1 dies with the
session (PR_SET_PDEATHSIG), also a SIGKILLed one.
"""

from __future__ import annotations

import os
import stat
import sys
from dataclasses import dataclass

from crashcart import confine, enter, signals
from crashcart.mount import (
    AT_EMPTY_PATH,
    AT_RECURSIVE,
    CLONE_NEWIPC,
    CLONE_NEWNET,
    CLONE_NEWNS,
    CLONE_NEWPID,
    CLONE_NEWUTS,
    MNT_DETACH,
    MOUNT_ATTR_NODEV,
    MOUNT_ATTR_NOSUID,
    MOUNT_ATTR_RDONLY,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    OPEN_TREE_CLOEXEC,
    OPEN_TREE_CLONE,
    MountAttr,
    clone_tree_readonly,
    mount,
    mount_setattr,
    move_mount,
    open_tree,
    pivot_root,
    sethostname,
    setns,
    umount2,
    unshare,
)
from crashcart.postmortem import View, resolve_view
from crashcart.prefix import MOUNT_POINT, check_toolbox
from crashcart.target import NamespaceFds
from smith.errors import CrashcartError, UsageError

CORE = "/dev/core"  # where the core file appears in the view
OWN_NAMESPACES = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET
# The image's library directories, where gdb looks for a library the core names by a path
# the image does not have (a loader that follows a different layout).
LIBRARY_PATH = "/lib64:/usr/lib64:/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu:/lib:/usr/lib"
GDB_SETTINGS = (
    # The core names the libraries the program had mapped by their paths in the container:
    # with the view's root as sysroot gdb reads the image's, never the toolbox's.
    "set sysroot /",
    f"set solib-search-path {LIBRARY_PATH}",
    "set debug-file-directory /usr/lib/debug",
    # The image may be the compromised one: none of its files (gdb scripts, .gdbinit,
    # libthread_db) may be loaded into gdb.
    "set auto-load off",
)
# The device nodes a shell and the tools expect in /dev (Linux's fixed numbers).
DEVICES = (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9))
DEV_LINKS = (
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
)
READ_ONLY = MountAttr(
    attr_set=MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, propagation=MS_PRIVATE
)
CLONE = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE


@dataclass(frozen=True)
class DebugRequest:
    target: str
    command: tuple[str, ...] = ()
    core: str | None = None  # a core file on the host, shown at CORE
    program: str | None = None  # the crashed program in the view (default: the container's)
    ex: tuple[str, ...] = ()  # gdb commands to run in batch mode
    toolbox: str | None = None
    docker_host: str | None = None
    privileged: bool = False
    allow: tuple[str, ...] = ()
    namespace: str | None = None  # a Kubernetes namespace: the target is POD[/CONTAINER]
    runtime_endpoint: str | None = None  # the CRI socket

    def check(self) -> None:
        confine.allowed(self.allow)
        if self.ex and not self.core:
            raise UsageError(f"--ex {self.ex[0]!r} runs in gdb on a core: give --core FILE")
        if self.ex and self.command:
            raise UsageError(f"--ex runs gdb: not with a command ({self.command[0]!r})")


@dataclass(frozen=True)
class Plan:
    """What the view's pid 1 sets up and runs."""

    view: View
    argv: tuple[str, ...]
    env: dict[str, str]
    confinement: confine.Confinement
    toolbox: int  # the detached toolbox mount
    core: int  # the detached bind of the core file, or -1


def say(message: str) -> None:
    print(f"crashcart: {message}", file=sys.stderr, flush=True)


def gdb_argv(program: str, ex: tuple[str, ...]) -> tuple[str, ...]:
    """gdb on the core, set up to read the image's libraries (-nx: no gdbinit of the image)."""
    argv = ["gdb", "-q", "-nx"]
    for setting in GDB_SETTINGS:
        argv += ["-iex", setting]
    if ex:
        argv.append("-batch")
        for command in ex:
            argv += ["-ex", command]
    argv += [program, CORE] if program else ["-c", CORE]
    return tuple(argv)


def open_core(path: str) -> int:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as err:
        raise CrashcartError(f"cannot open the core file {path}: {err.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise CrashcartError(f"the core file {path} is not a regular file")
        # A detached bind of the file, made here: a mount of the host's namespace cannot
        # be cloned from the view's namespace, a detached one can be attached there.
        return open_tree("", CLONE | AT_EMPTY_PATH, fd)
    finally:
        os.close(fd)


def run_debug(request: DebugRequest) -> int:
    """Carry out `crashcart debug`; the command's exit status."""
    request.check()
    if os.geteuid() != 0:
        raise CrashcartError(
            f"no permission to debug {request.target!r}",
            hint="crashcart needs root: it mounts the container's filesystem",
        )
    from crashcart.attach import AttachRequest, allowing_confinement, toolbox_env

    view = resolve_view(
        request.target, request.docker_host, request.namespace, request.runtime_endpoint
    )
    toolbox_dir = AttachRequest(request.target, toolbox=request.toolbox).toolbox_directory()
    toolbox = check_toolbox(toolbox_dir)
    core = open_core(request.core) if request.core else -1
    try:
        program = request.program if request.program is not None else view.program
        if request.command:
            argv = request.command
        elif request.core:
            argv = gdb_argv(program, request.ex)
        else:
            argv = (f"{MOUNT_POINT}/bin/sh",)
        env = toolbox_env(f"debug {view.name}", view.description)
        if request.core:
            env["CRASHCART_CORE"] = CORE
        if request.privileged:
            say(
                "--privileged: the session has every capability of host root, no seccomp "
                "filter and no no_new_privs"
            )
            confinement = confine.Confinement(None)
        else:
            confinement = allowing_confinement(request.allow)
        for note in view.skipped:
            say(note)
        if not request.command and not request.ex:
            core_note = f", the core at {CORE}" if request.core else ""
            say(
                f"post-mortem of {view.description}: its files read-only, the toolbox at "
                f"{MOUNT_POINT}{core_note}; exit to leave"
            )
        tree = clone_tree_readonly(toolbox)
        try:
            return _run(Plan(view, argv, env, confinement, tree, core))
        finally:
            os.close(tree)
    finally:
        if core >= 0:
            os.close(core)


def _run(plan: Plan) -> int:
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    own_pid_ns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    own_pid = os.getpid()
    from_terminal = sys.stdin.isatty()
    try:
        # unshare(CLONE_NEWPID) puts only the next child in a new pid namespace: the
        # session returns to its own right after the fork (as attach's spawn_in_target).
        unshare(CLONE_NEWPID)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the view's pid 1
            os.close(read_end)
            _view_init(plan, write_end, from_terminal)
    finally:
        if os.getpid() == own_pid:
            setns(own_pid_ns, CLONE_NEWPID)
            os.close(own_pid_ns)
    os.close(write_end)
    message = ""
    for line in enter.read_all(read_end).splitlines():
        if line.startswith("note: "):
            say(line.removeprefix("note: "))
        elif line:
            message = line
    if message:
        _, status = os.waitpid(pid, 0)
        say(message)
        return enter.exit_status(status)
    return enter.exit_status(enter.wait_forwarding_signals(pid, from_terminal))


def _note(pipe: int, text: str) -> None:
    os.write(pipe, f"note: {text}\n".encode())


def _mount_root(view: View) -> None:
    """The container's root, read-only, on view.mount_point (in the private namespace)."""
    if len(view.lower) > 1:
        # Docker's overlay2 layers, the container's own on top: an overlay without an upper
        # directory is read-only by construction.
        options = "lowerdir=" + ":".join(view.lower)
        mount("overlay", view.mount_point, "overlay", MS_RDONLY | MS_NOSUID | MS_NODEV, options)
        return
    root = open_tree(view.lower[0] if view.lower else view.mount_point, CLONE)
    try:
        mount_setattr(root, READ_ONLY, AT_EMPTY_PATH | AT_RECURSIVE)
        move_mount(root, view.mount_point)
    finally:
        os.close(root)


def _mount_dev(toolbox: int, core: int) -> None:
    """A tmpfs over the view's /dev with the usual devices, the toolbox and the core."""
    if not os.path.isdir("/dev"):
        raise CrashcartError("the container's root has no /dev to hold the toolbox")
    mount("crashcart", "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=755,size=1m")
    for name, major, minor in DEVICES:
        os.mknod(f"/dev/{name}", stat.S_IFCHR | 0o666, os.makedev(major, minor))
        os.chmod(f"/dev/{name}", 0o666)  # noqa: S103 - as every /dev has them
    for name, target in DEV_LINKS:
        os.symlink(target, f"/dev/{name}")
    os.mkdir(MOUNT_POINT, 0o755)
    move_mount(toolbox, MOUNT_POINT)
    if core >= 0:
        os.close(os.open(CORE, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o400))
        move_mount(core, CORE)


def _view_init(
    plan: Plan, pipe: int, from_terminal: bool
) -> None:  # pragma: no cover - runs as pid 1 of the view's pid namespace
    view = plan.view
    code = 125
    try:
        confine.prctl(confine.PR_SET_PDEATHSIG, signals.SIGKILL)
        os.write(pipe, b"\n")  # EPIPE if the session died before the line above
        unshare(OWN_NAMESPACES)
        mount("none", "/", "", MS_REC | MS_PRIVATE)  # nothing propagates back to the host
        _mount_root(view)
        binds = []
        for bind in view.mounts:  # opened while the host's paths are still visible
            tree = open_tree(bind.source, CLONE)
            mount_setattr(tree, READ_ONLY, AT_EMPTY_PATH | AT_RECURSIVE)
            binds.append((tree, bind.destination))
        os.chdir(view.mount_point)
        pivot_root(".", ".")  # the old root is stacked under the new one: detach it
        umount2(".", MNT_DETACH)
        os.chdir("/")
        if os.path.isdir("/proc"):
            mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        _mount_dev(plan.toolbox, plan.core)
        for tree, destination in binds:
            # Looked up in the view: a symbolic link there resolves inside it.
            if os.path.isdir(destination) or os.path.isfile(destination):
                move_mount(tree, destination)
            else:
                _note(pipe, f"the container's mount {destination} is left out: not in its root")
            os.close(tree)
        sethostname(view.name[:64] or "crashcart")
        command = os.fork()
    except BaseException as err:
        os.write(
            pipe, f"cannot start the view of {view.description}: {enter.describe(err)}".encode()
        )
        os._exit(code)
    if command == 0:
        identity = enter.Identity(0, 0)
        no_namespaces = NamespaceFds({}, -1, ())
        enter.exec_in_target(
            no_namespaces, plan.argv, plan.env, identity, None, pipe, plan.confinement
        )
    os.close(pipe)
    try:
        code = enter.exit_status(enter.wait_forwarding(command, from_terminal, signals.SIGKILL))
    finally:
        # As pid 1 of the namespace: its exit makes the kernel kill everything left there.
        os._exit(code)
