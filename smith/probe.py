"""`smith probe`: run an image's full tree under runc and record the files it needs.

The tree is written into a tmpfs of its own (its own superblock: see fanotify.py), and run
by runc on a read-only root, with /run, /write and /tmp as tmpfs, and the host's network
(so that a check can reach a port on 127.0.0.1). The container is created first and started
only once fanotify watches its root and knows its mount namespace: nothing it opens is
missed, and nothing any other process opens is recorded.

A probe without checks runs the command to its end: it must exit 0. With checks, the command
is started, the HTTP check (a GET on 127.0.0.1:PORT until it answers with the expected
status) and then each command check (`runc exec`, must exit 0) are run against it, and the
container is stopped. A timeout, a non-zero exit or a failed check raises ProbeError, and no
profile is written.
"""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import json
import logging
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from smith.errors import SmithError
from smith.fanotify import Access, Watch, mount_ns
from smith.minimize import MinimizeOptions
from smith.profile import Profile, ProfileEntry
from smith.resolve.programs import DEFAULT_PATH_VALUE
from smith.tree import FileTree

log = logging.getLogger(__name__)

PR_SET_CHILD_SUBREAPER = 36
MNT_DETACH = 2
# runc's own helper process (it reads the root's /etc/passwd for `runc exec`, execs the
# command): what it opens is the runtime's business, but what it executes is the program.
RUNC_PROCESS_PREFIX = "runc:"
RUNTIME_DIRS = ("/run", "/write", "/tmp")

_libc = ctypes.CDLL(None, use_errno=True)


class ProbeError(SmithError):
    """The probed program timed out, exited non-zero, or a check failed."""


@dataclass(frozen=True)
class HttpCheck:
    port: int
    path: str = "/"
    status: int = 200


@dataclass(frozen=True)
class RunSpec:
    """What to run: the process as the image (or recipe) would start it."""

    args: tuple[str, ...]
    env: tuple[str, ...] = ()
    cwd: str = "/"
    uid: int = 0
    gid: int = 0


@dataclass(frozen=True)
class ProbeOptions:
    checks: tuple[tuple[str, ...], ...] = ()  # commands run inside, each must exit 0
    http: HttpCheck | None = None
    timeout: float = 60.0  # seconds for the whole run, checks included
    binds: tuple[tuple[str, str], ...] = ()  # (host dir, container dir), read-only
    runc: str = "runc"


@dataclass
class _Recorder:
    accesses: list[ProfileEntry] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, access: Access) -> None:
        if access.process.startswith(RUNC_PROCESS_PREFIX) and access.event != "exec":
            return
        with self.lock:
            self.accesses.append(ProfileEntry(access.path, access.event.value, access.process))


def probe_tree(tree: FileTree, spec: RunSpec, options: ProbeOptions) -> Profile:
    """Run `spec` in `tree` and return the profile of what it opened and executed."""
    from crashcart.image import materialize

    if os.geteuid() != 0:
        raise ProbeError("smith probe needs root (fanotify, mounts, runc)")
    runc = shutil.which(options.runc) or shutil.which(options.runc, path="/usr/sbin:/sbin")
    if runc is None:
        raise ProbeError(f"the container runtime {options.runc!r} is not installed")
    recorder = _Recorder()
    with tempfile.TemporaryDirectory(prefix="smith-probe-") as work, _tmpfs(work) as rootfs:
        materialize(tree, rootfs)
        os.chmod(rootfs, 0o755)  # noqa: S103 - the root directory of a container
        bundle = Path(work, "bundle")
        bundle.mkdir()
        write_bundle_config(runc, bundle, rootfs, spec, options)
        with _container(runc, Path(work), bundle) as container:
            watch = Watch(rootfs, mount_ns(container.pid), recorder)
            try:
                run_and_check(container, spec, options)
            finally:
                container.stop()
                watch.stop()
    return Profile.of(spec.args, recorder.accesses)


@contextlib.contextmanager
def _tmpfs(work: str) -> Iterator[str]:
    root = os.path.join(work, "rootfs")
    os.mkdir(root)
    if _libc.mount(b"tmpfs", root.encode(), b"tmpfs", 0, b"mode=0755") != 0:
        errno = ctypes.get_errno()
        raise ProbeError(f"cannot mount a tmpfs on {root}: {os.strerror(errno)}")
    try:
        yield root
    finally:
        _libc.umount2(root.encode(), MNT_DETACH)


def write_bundle_config(
    runc: str, bundle: Path, rootfs: str, spec: RunSpec, options: ProbeOptions
) -> None:
    """runc's default spec, adjusted: read-only root, our process, host network, tmpfs."""
    subprocess.run([runc, "spec", "--bundle", str(bundle)], check=True, capture_output=True)
    config_path = bundle / "config.json"
    config = json.loads(config_path.read_text())
    config["root"] = {"path": rootfs, "readonly": True}
    process = config["process"]
    process.update(
        terminal=False,
        args=list(spec.args),
        env=list(spec.env),
        cwd=spec.cwd or "/",
        user={"uid": spec.uid, "gid": spec.gid},
    )
    linux = config["linux"]
    linux["namespaces"] = [n for n in linux["namespaces"] if n["type"] != "network"]
    owner = [f"uid={spec.uid}", f"gid={spec.gid}"]
    for target in RUNTIME_DIRS:
        config["mounts"].append(
            {
                "destination": target,
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "nodev", "mode=0755", *owner],
            }
        )
    for source, target in options.binds:
        config["mounts"].append(
            {"destination": target, "type": "bind", "source": source, "options": ["rbind", "ro"]}
        )
    config_path.write_text(json.dumps(config))


@dataclass
class Container:
    runc: str
    state: Path
    name: str
    pid: int
    log: Path
    status: int | None = None  # the exit status, once reaped

    def runc_args(self, *args: str) -> list[str]:
        return [self.runc, "--root", str(self.state), *args]

    def poll(self) -> int | None:
        if self.status is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                # Not our child after all (no subreaper): its status is lost with it.
                if not os.path.exists(f"/proc/{self.pid}"):
                    raise ProbeError("lost the container's process: no exit status") from None
                return None
            if pid == self.pid:
                self.status = os.waitstatus_to_exitcode(status)
        return self.status

    def stop(self) -> None:
        # Called on the way out of errors too: a lost status must not hide the first error.
        with contextlib.suppress(ProbeError):
            if self.poll() is None:
                subprocess.run(self.runc_args("kill", self.name, "KILL"), capture_output=True)
                deadline = time.monotonic() + 10
                while self.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.02)

    def last_words(self) -> str:
        """The last line the program wrote to stderr or stdout, for a one-line error."""
        try:
            lines = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return f": {lines[-1].strip()}" if lines else ""


@contextlib.contextmanager
def _container(runc: str, work: Path, bundle: Path) -> Iterator[Container]:
    """A created (not yet started) container whose init process is our child: as the
    subreaper we inherit it when `runc create` exits, and so can wait for its exit status."""
    state = work / "runc-state"
    name = f"smith-probe-{uuid.uuid4().hex[:12]}"
    pid_file = work / "pid"
    output = work / "output"
    create = [runc, "--root", str(state), "create", "--bundle", str(bundle)]
    _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    try:
        with open(output, "wb") as out:
            created = subprocess.run(
                [*create, "--pid-file", str(pid_file), name],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                check=False,
                timeout=60,
            )
        if created.returncode != 0:
            detail = output.read_text(errors="replace").strip().splitlines()
            raise ProbeError(f"runc create failed: {detail[-1] if detail else created.returncode}")
        container = Container(runc, state, name, int(pid_file.read_text()), output)
        try:
            yield container
        finally:
            container.stop()
            subprocess.run(container.runc_args("delete", "--force", name), capture_output=True)
    finally:
        _libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


def run_and_check(container: Container, spec: RunSpec, options: ProbeOptions) -> None:
    deadline = time.monotonic() + options.timeout
    command = " ".join(spec.args)
    started = subprocess.run(container.runc_args("start", container.name), capture_output=True)
    if started.returncode != 0:
        raise ProbeError(f"runc start failed: {started.stderr.decode(errors='replace').strip()}")
    if options.http is None and not options.checks:
        while container.poll() is None:
            if time.monotonic() > deadline:
                raise ProbeError(f"`{command}` did not end within {options.timeout:g} s")
            time.sleep(0.02)
        if container.status != 0:
            raise ProbeError(f"`{command}` exited {container.status}{container.last_words()}")
        return
    if options.http is not None:
        wait_for_http(container, options.http, deadline, command)
    for check in options.checks:
        run_check(container, check, deadline)
    status = container.poll()
    if status is not None and status != 0:
        raise ProbeError(f"`{command}` exited {status}{container.last_words()}")


def wait_for_http(container: Container, check: HttpCheck, deadline: float, command: str) -> None:
    last = "no answer"
    while time.monotonic() < deadline:
        status = container.poll()
        if status is not None:
            raise ProbeError(
                f"`{command}` exited {status} before 127.0.0.1:{check.port} answered"
                + container.last_words()
            )
        conn = http.client.HTTPConnection("127.0.0.1", check.port, timeout=2)
        try:
            conn.request("GET", check.path)
            answer = conn.getresponse()
            answer.read()
            if answer.status == check.status:
                return
            raise ProbeError(
                f"GET http://127.0.0.1:{check.port}{check.path} answered {answer.status}, "
                f"not {check.status}"
            )
        except OSError as err:
            last = str(err)
        finally:
            conn.close()
        time.sleep(0.05)
    raise ProbeError(f"GET http://127.0.0.1:{check.port}{check.path} timed out ({last})")


def run_check(container: Container, check: tuple[str, ...], deadline: float) -> None:
    left = deadline - time.monotonic()
    shown = " ".join(check)
    if left <= 0:
        raise ProbeError(f"timed out before the check `{shown}`")
    try:
        done = subprocess.run(
            container.runc_args("exec", container.name, *check),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=left,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ProbeError(f"the check `{shown}` did not end in time") from None
    if done.returncode != 0:
        text = (done.stderr or done.stdout).decode(errors="replace").strip().splitlines()
        detail = f": {text[-1].strip()}" if text else ""
        raise ProbeError(f"the check `{shown}` exited {done.returncode}{detail}")


def probe_image(
    source: str,
    command: tuple[str, ...],
    image_options: MinimizeOptions,
    options: ProbeOptions,
) -> Profile:
    """Probe the unminimized image `source` with its own command, or `command`."""
    from smith.minimize import image_spec, image_user, option_changes
    from smith.oci.layout import open_image
    from smith.oci.unpack import apply_layers
    from smith.shrink import image_config, program_of

    with (
        open_image(
            source, platform=image_options.platform, registry=image_options.registry
        ) as image,
        tempfile.TemporaryDirectory(prefix="smith-probe-store-") as store,
    ):
        tree, _ = apply_layers(image, store)
        base = image.image_config()
        user = image_user(tree, base, image_options)
        config = image_config(base, option_changes(image_options), user)
        argv = command
        if not command:
            shrink_spec = image_spec(config, user, image_options)
            program_of(tree, shrink_spec)  # the image's own command must name a program of it
            argv = shrink_spec.argv
        env = config.env
        if not any(item.startswith("PATH=") for item in env):
            env = (*env, "PATH=" + DEFAULT_PATH_VALUE)  # what docker and podman add
        spec = RunSpec(
            args=tuple(argv),
            env=env,
            cwd=config.working_dir or "/",
            uid=user.uid,
            gid=user.gid,
        )
        return probe_tree(tree, spec, options)


def probe_recipe(
    recipe_path: str, command: tuple[str, ...], options: ProbeOptions, cache_dir: str | None
) -> Profile:
    """Probe a build recipe's full tree (every file of its packages, and its rootfs/
    overlay) with the recipe's command, or `command`."""
    from smith.build import BuildOptions, environment, fetcher_for, unpack_recipe
    from smith.recipe import load_recipe

    recipe = load_recipe(recipe_path)
    build_options = BuildOptions(cache_dir=cache_dir)
    unpacked = unpack_recipe(recipe, recipe_path, build_options, fetcher_for(build_options))
    args = command or (*(recipe.entrypoint or ()), *(recipe.cmd or ()))
    if not args:
        raise ProbeError(f"{recipe_path} has no entrypoint or cmd: give the command to probe")
    spec = RunSpec(
        args=tuple(args),
        env=tuple(environment(recipe)),
        cwd=recipe.dir or "/",
        uid=unpacked.user.uid,
        gid=unpacked.user.gid,
    )
    return probe_tree(unpacked.tree, spec, options)
