"""Turn what the user typed (a pid, a runc/crun container, a Docker container) into a process.

A Target is a pid plus the process's start time, so that a pid reused by another process
between lookup and attach is noticed instead of entered.
"""

from __future__ import annotations

import errno
import os

from crashcart.record import record
from crashcart.statefile import read_ints
from smith.errors import CrashcartError, UsageError

RUNTIME_ROOTS = (
    ("runc", "/run/runc"),
    ("crun", "/run/crun"),
    # dockerd's own runc state, by full container id: found without asking dockerd.
    ("docker's runc", "/run/docker/runtime-runc/moby"),
)
# containerd's runc shim keeps runc's state per namespace: ROOT/NAMESPACE/ID/state.json
# (Kubernetes' CRI containers are in the k8s.io namespace, by the ids crictl shows).
CONTAINERD_RUNC_ROOT = os.environ.get("CRASHCART_CONTAINERD_RUNC", "/run/containerd/runc")
DOCKER_TIMEOUT = 5  # seconds; a healthy dockerd answers an inspect in milliseconds
# Each runtime's state file and its members for the container's init pid and start time
# (clock ticks since boot, as in /proc/PID/stat).
RUNTIME_STATE = {
    "runc": ("state.json", "init_process_pid", "init_process_start"),
    "docker's runc": ("state.json", "init_process_pid", "init_process_start"),
    "containerd": ("state.json", "init_process_pid", "init_process_start"),
    "crun": ("status", "pid", "process-start-time"),
}
DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
# A container id is 64 hex digits; a Kubernetes POD/CONTAINER at most 253 + 1 + 63.
MAX_TARGET = 512
PID_MAX = 1 << 22  # the kernel's PID_MAX_LIMIT: no pid_max setting goes higher
NAMESPACES = ("mnt", "user", "pid", "net", "ipc", "uts", "cgroup")


@record
class Target:
    pid: int
    start_time: int
    description: str  # what the prompt and messages call it: "runc container web (pid 42)"
    name: str  # the short form for the prompt: container id or pid


def read_start_time(pid: int) -> int:
    """Field 22 of /proc/PID/stat (clock ticks since boot): with the pid, names one process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except FileNotFoundError:
        raise CrashcartError(f"no process with pid {pid}") from None
    except ProcessLookupError:
        raise CrashcartError(f"no process with pid {pid}") from None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):  # exited, not yet reaped: its namespaces are gone
        raise CrashcartError(f"no process with pid {pid} (it has exited)")
    return int(fields[19])


def is_alive(pid: int, start_time: int) -> bool:
    try:
        return read_start_time(pid) == start_time
    except (CrashcartError, ValueError, OSError):
        return False


def target_from_pid(pid: int, description: str = "", name: str = "") -> Target:
    if pid <= 0:
        raise CrashcartError(f"no process with pid {pid}")
    start = read_start_time(pid)
    return Target(pid, start, description or f"pid {pid}", name or str(pid))


def _runtime_state_pid(runtime: str, root: str, container: str) -> tuple[int, int] | None:
    """(init pid, its start time or 0 if not recorded) a runtime recorded for a container,
    or None if it has no such container."""
    if "/" in container or container in ("", ".", ".."):
        return None
    name, pid_key, start_key = RUNTIME_STATE[runtime]
    try:
        with open(os.path.join(root, container, name)) as f:
            state = read_ints(f.read(), (pid_key, start_key))
        # The start time is recorded too: a pid since reused by another process is noticed.
        return state[pid_key], state.get(start_key, 0)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError) as err:
        message = f"cannot read {runtime}'s state of container {container!r}: {err}"
        raise CrashcartError(message) from None


def docker_host(explicit: str | None) -> str:
    return explicit or os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST


def docker_get(host: str, path: str) -> tuple[int, bytes] | None:
    """(status, body) of a GET to the Docker Engine API, None when its socket is absent."""
    if not host.startswith("unix://"):
        raise CrashcartError(f"docker host {host!r} is not a unix:// socket")
    socket_path = host.removeprefix("unix://")
    if not os.path.exists(socket_path):
        return None
    # Imported here: http.client costs more start-up time than the whole attach of a pid.
    import http.client
    import socket

    class UnixConnection(http.client.HTTPConnection):
        def connect(self) -> None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(DOCKER_TIMEOUT)
            sock.connect(socket_path)
            self.sock = sock

    conn = UnixConnection("localhost", timeout=DOCKER_TIMEOUT)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    except OSError as err:
        raise CrashcartError(
            f"cannot reach dockerd at {host}: {err}",
            hint="attach by the container's pid or its full id (found in "
            "/run/docker/runtime-runc/moby without dockerd)",
        ) from None
    finally:
        conn.close()


def docker_inspect(host: str, container: str) -> dict[str, object] | None:
    """`docker inspect` of a container from the Engine API, None if there is no such."""
    import json
    import urllib.parse

    answer = docker_get(host, f"/containers/{urllib.parse.quote(container, safe='')}/json")
    if answer is None or answer[0] == 404:
        return None
    status, body = answer
    if status != 200:
        raise CrashcartError(f"dockerd at {host} answered {status} for {container!r}")
    inspected: dict[str, object] = json.loads(body)
    return inspected


def _docker_pid(host: str, container: str) -> int | None:
    """The pid of a running Docker container from the Engine API, None if there is no such."""
    inspected = docker_inspect(host, container)
    if inspected is None:
        return None
    state = inspected.get("State")
    state = state if isinstance(state, dict) else {}
    if not state.get("Running") or not state.get("Pid"):
        raise CrashcartError(
            f"docker container {container!r} is not running",
            hint=f"`crashcart debug {container}` looks at its filesystem post-mortem",
        )
    return int(state["Pid"])


def _runtime_target(runtime: str, root: str, spec: str, shown: str) -> Target | None:
    recorded = _runtime_state_pid(runtime, root, spec)
    if recorded is None:
        return None
    pid, start = recorded
    if pid == 0:
        raise CrashcartError(
            f"{runtime} container {shown!r} is not running",
            hint=f"`crashcart debug {shown}` looks at its filesystem post-mortem",
        )
    try:
        target = target_from_pid(pid, f"{runtime} container {shown} (pid {pid})", shown)
    except CrashcartError:
        target = None
    if target is None or start not in (0, target.start_time):
        raise CrashcartError(
            f"{runtime} container {shown!r} is not running (its pid {pid} is gone)",
            hint=f"`crashcart debug {shown}` looks at its filesystem post-mortem",
        )
    return target


def _containerd_target(spec: str) -> Target | None:
    """NAMESPACE/ID, or an ID in exactly one of containerd's namespaces."""
    namespace, slash, container = spec.rpartition("/")
    if slash:
        if "/" in namespace or namespace in ("", ".", ".."):
            return None
        return _runtime_target("containerd", f"{CONTAINERD_RUNC_ROOT}/{namespace}", container, spec)
    try:
        namespaces = sorted(os.listdir(CONTAINERD_RUNC_ROOT))
    except OSError:
        return None
    found = [
        n
        for n in namespaces
        if _runtime_state_pid("containerd", f"{CONTAINERD_RUNC_ROOT}/{n}", spec)
    ]
    if len(found) > 1:
        forms = ", ".join(f"{n}/{spec}" for n in found)
        raise CrashcartError(
            f"containerd has {spec!r} in several namespaces: attach to one of {forms}"
        )
    return _containerd_target(f"{found[0]}/{spec}") if found else None


def check_target(spec: str) -> None:
    """What the user typed, before it names a file or goes into a request: a pid in ASCII
    digits (int() takes "١٢٣" as 123, a pid the user never wrote), or a name that is one
    path component (or two: containerd's NAMESPACE/ID, a pod's POD/CONTAINER), printable and
    of a sane length."""
    if len(spec) > MAX_TARGET:
        raise UsageError(
            f"the target {spec[:40]!r}... is {len(spec)} characters long "
            f"(a container id has 64, the most is {MAX_TARGET})"
        )
    if not spec.isprintable():  # NUL, newline, escape sequences: no name has them
        raise UsageError(f"the target {spec!r} contains a control character")
    if spec[:1] in ("-", "+") and spec[1:].isdigit():  # after `--`: no option, no pid either
        raise UsageError(f"the pid {spec} is out of range (1 to {PID_MAX})")
    if spec.isdigit():
        if not spec.isascii():
            raise UsageError(f"the pid {spec!r} is not written in ASCII digits 0-9")
        if not 0 < int(spec) <= PID_MAX:
            raise UsageError(f"the pid {spec} is out of range (1 to {PID_MAX})")
        return
    parts = spec.split("/")
    if len(parts) > 2 or any(part in ("", ".", "..") for part in parts):
        raise UsageError(
            f"the target {spec!r} is no pid, container name or id, NAMESPACE/ID or POD/CONTAINER"
        )


def resolve_local(spec: str, looked: list[str] | None = None) -> Target | None:
    """A pid, a runc or crun container id, a containerd NAMESPACE/ID: what is found without
    asking a daemon (None if it is none of them; the places looked in go to `looked`)."""
    check_target(spec)
    if spec.isdigit():
        return target_from_pid(int(spec))
    for runtime, root in RUNTIME_ROOTS:
        target = _runtime_target(runtime, root, spec, spec)
        if target is not None:
            return target
        if looked is not None:
            looked.append(f"{runtime} {root}")
    target = _containerd_target(spec)
    if looked is not None:
        looked.append(f"containerd {CONTAINERD_RUNC_ROOT}")
    return target


def podman_output(spec: str, *args: str) -> str | None:
    """What `podman ARGS...` prints about the container `spec` (None: no podman, or podman
    failed: no such container). Podman has no daemon to ask: its CLI reads its database."""
    import shutil
    import subprocess

    podman = shutil.which("podman")
    if podman is None or spec.startswith("-"):
        return None
    try:
        done = subprocess.run(
            [podman, *args],
            capture_output=True,
            text=True,
            timeout=DOCKER_TIMEOUT * 2,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise CrashcartError(
            f"podman did not answer about {spec!r} in {DOCKER_TIMEOUT * 2} s",
            hint="attach by the container's pid or its full id (runc's state in /run/runc)",
        ) from None
    return done.stdout if done.returncode == 0 else None


def _podman_pid(spec: str) -> int | None:
    """The pid of a podman container by name or id (None: no podman, or no such container)."""
    out = podman_output(
        spec, "container", "inspect", "--format", "{{.State.Running}} {{.State.Pid}}", spec
    )
    if out is None:
        return None
    running, _, pid = out.strip().partition(" ")
    if running != "true" or not pid.isdigit() or pid == "0":
        raise CrashcartError(
            f"podman container {spec!r} is not running",
            hint=f"`crashcart debug {spec}` looks at its filesystem post-mortem",
        )
    return int(pid)


def resolve_target(
    spec: str,
    docker: str | None = None,
    namespace: str | None = None,
    runtime_endpoint: str | None = None,
) -> Target:
    """A pid, a runc/crun/containerd container, then a Docker or podman container's name or
    id (asking dockerd, then podman), then a Kubernetes POD or POD/CONTAINER (through the
    node's CRI socket; with --namespace, only that)."""
    looked: list[str] = []
    if namespace is None:
        target = resolve_local(spec, looked)
        if target is not None:
            return target
        host = docker_host(docker)
        docker_pid = _docker_pid(host, spec)
        if docker_pid is not None:
            shown = f"docker container {spec} (pid {docker_pid})"
            return target_from_pid(docker_pid, shown, spec[:12])
        looked.append(f"docker {host}")
        podman_pid = _podman_pid(spec)
        if podman_pid is not None:
            shown = f"podman container {spec} (pid {podman_pid})"
            return target_from_pid(podman_pid, shown, spec[:12])
        looked.append("podman")
    from crashcart import cri

    found = cri.find_pod_container(spec, namespace or "default", runtime_endpoint)
    if found is not None:
        pid = cri.pod_container_pid(found)
        return target_from_pid(pid, f"{found.shown} (pid {pid})", spec.rpartition("/")[2])
    endpoint = cri.runtime_endpoint(runtime_endpoint)
    looked.append(f"pods of namespace {namespace or 'default'} at {endpoint or 'no CRI socket'}")
    raise CrashcartError(
        f"no process or container {spec!r} (looked in {', '.join(looked)})",
        hint="give a pid, a runc/crun/docker/podman name or id, NAMESPACE/ID for containerd, "
        "or POD[/CONTAINER] with --namespace NS for Kubernetes",
    )


@record
class NamespaceFds:
    """Open /proc/PID/ns/* files: once open they pin the namespaces even if the pid exits."""

    fds: dict[str, int]
    root_fd: int
    same_as_host: tuple[str, ...]

    def close(self) -> None:
        for fd in (*self.fds.values(), self.root_fd):
            os.close(fd)


def open_namespaces(target: Target) -> NamespaceFds:
    """Open every namespace of the target that differs from ours, and its root directory."""
    fds: dict[str, int] = {}
    same: list[str] = []
    try:
        for ns in NAMESPACES:
            path = f"/proc/{target.pid}/ns/{ns}"
            try:
                theirs = os.stat(path)
                ours = os.stat(f"/proc/self/ns/{ns}")
            except FileNotFoundError:
                if ns == "cgroup":
                    continue  # kernels without cgroup namespaces
                raise
            if (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino):
                same.append(ns)
                continue
            fds[ns] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        root_fd = os.open(f"/proc/{target.pid}/root", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except PermissionError:
        for fd in fds.values():
            os.close(fd)
        raise CrashcartError(
            f"no permission to enter the namespaces of {target.description}",
            hint="crashcart attach needs root (CAP_SYS_ADMIN and CAP_SYS_PTRACE)",
        ) from None
    except OSError as err:
        for fd in fds.values():
            os.close(fd)
        if err.errno in (errno.ENOENT, errno.ESRCH):
            raise CrashcartError(f"{target.description} exited during the attach") from None
        raise
    # The files were opened by path: make sure the pid still names the process we resolved.
    if not is_alive(target.pid, target.start_time):
        NamespaceFds(fds, root_fd, ()).close()
        raise CrashcartError(f"{target.description} exited during the attach")
    return NamespaceFds(fds, root_fd, tuple(same))


def mount_ns_key(pid: int) -> str:
    """A stable name for the target's mount namespace: the sessions sharing one mount."""
    st = os.stat(f"/proc/{pid}/ns/mnt")
    return f"mnt-{st.st_dev}-{st.st_ino}"
