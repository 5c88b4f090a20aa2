"""What `crashcart debug` looks at: the filesystem of a container that crashed, and its mounts.

A crashed container has no process whose namespaces could be entered, so its view is
rebuilt from what the runtime left: runc's and crun's bundle (config.json: the root and
the bind mounts), Docker's inspect (the storage driver's directories and the mounts), a
bundle or root directory given by path, or an image (OCI layout or archive) unpacked into
crashcart's image cache. Nothing here changes any of them: crashcart/debug.py mounts the
view read-only in a namespace of its own.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass

from crashcart import cri
from crashcart.prefix import is_image
from crashcart.target import (
    RUNTIME_ROOTS,
    docker_get,
    docker_host,
    docker_inspect,
    podman_output,
)
from smith.errors import CrashcartError

# Mounted by the debug session itself: the container's own would be stale or the host's.
OWN_MOUNTS = ("/proc", "/dev", "/sys")


@dataclass(frozen=True)
class BindMount:
    source: str  # a host path
    destination: str  # inside the view


@dataclass(frozen=True)
class View:
    """A container's filesystem as the debug session shows it."""

    description: str  # "runc container web (stopped)"
    name: str  # the short form for the prompt
    mount_point: str  # the host directory the view's root is mounted on (privately)
    lower: tuple[str, ...] = ()  # overlay layers, top first; () means mount_point itself
    mounts: tuple[BindMount, ...] = ()
    program: str = ""  # the container's program, for gdb; "" if unknown
    skipped: tuple[str, ...] = ()  # mounts whose source is gone, said in one line each


def _own(destination: str) -> bool:
    return any(destination == m or destination.startswith(f"{m}/") for m in OWN_MOUNTS)


def _binds(pairs: list[tuple[str, str]]) -> tuple[tuple[BindMount, ...], tuple[str, ...]]:
    """The bind mounts whose source still exists, and a note for each one that does not."""
    kept = []
    skipped = []
    for source, destination in pairs:
        if _own(destination) or not destination.startswith("/"):
            continue
        if os.path.exists(source):
            kept.append(BindMount(source, os.path.normpath(destination)))
        else:
            skipped.append(f"the container's mount {destination} is left out: {source} is gone")
    return tuple(kept), tuple(skipped)


def _read_json(path: str, what: str) -> dict[str, object]:
    try:
        with open(path) as f:
            value = json.load(f)
    except (OSError, ValueError) as err:
        raise CrashcartError(f"cannot read {what} {path}: {err}") from None
    if not isinstance(value, dict):
        raise CrashcartError(f"{what} {path} is not a JSON object")
    return value


def _program(args: object, env: object, root: str | None) -> str:
    """The container's program: args[0], found on the container's PATH under root if it is
    a bare name (looked up on the host, so only where the root is a plain directory)."""
    if not isinstance(args, list) or not args or not isinstance(args[0], str):
        return ""
    program: str = args[0]
    if "/" in program or root is None:
        return program
    path = "/usr/local/bin:/usr/bin:/bin"
    for item in env if isinstance(env, list) else []:
        if isinstance(item, str) and item.startswith("PATH="):
            path = item[5:]
    for directory in path.split(":"):
        candidate = os.path.join(directory or "/", program)
        if os.path.lexists(os.path.join(root, candidate.lstrip("/"))):
            return candidate
    return program


def _spec_binds(spec: dict[str, object], base: str) -> list[tuple[str, str]]:
    """(source, destination) of an OCI runtime spec's bind mounts (sources relative to base)."""
    pairs = []
    listed = spec.get("mounts")
    for mount in listed if isinstance(listed, list) else []:
        if not isinstance(mount, dict):
            continue
        options = mount.get("options") or []
        if mount.get("type") == "bind" or "bind" in options or "rbind" in options:
            source = str(mount.get("source", ""))
            source = source if source.startswith("/") else os.path.join(base, source)
            pairs.append((source, str(mount.get("destination", ""))))
    return pairs


def _spec_program(spec: dict[str, object], root: str | None) -> str:
    process = spec.get("process")
    process = process if isinstance(process, dict) else {}
    return _program(process.get("args"), process.get("env"), root)


def view_of_bundle(bundle: str, description: str, name: str) -> View:
    """A runtime bundle: config.json's root, bind mounts and program."""
    config = _read_json(os.path.join(bundle, "config.json"), "the bundle's config")
    root_spec = config.get("root")
    root_path = root_spec.get("path", "rootfs") if isinstance(root_spec, dict) else "rootfs"
    root = os.path.join(bundle, str(root_path))
    if not os.path.isdir(root):
        raise CrashcartError(f"the bundle's root filesystem {root} is not a directory")
    mounts, skipped = _binds(_spec_binds(config, bundle))
    program = _spec_program(config, root)
    return View(description, name, os.path.realpath(root), (), mounts, program, skipped)


def view_of_pod(found: cri.PodContainer, name: str) -> View:
    """A Kubernetes container of containerd's CRI plugin: its OCI spec (in containerd's
    records) and its snapshot's layers, or the root directory the spec names."""
    spec = found.info.get("Spec")
    spec = spec if isinstance(spec, dict) else {}
    root_spec = spec.get("root")
    root = str(root_spec.get("path", "")) if isinstance(root_spec, dict) else ""
    if found.info.get("SnapshotKey"):
        layers = cri.snapshot_layers(found)
        # An overlay is mounted on its top layer's path (the kernel holds the layers by then).
        lower = layers if len(layers) > 1 else ()
        top = layers[0]
    elif os.path.isabs(root) and os.path.isdir(root):
        lower, top = (), root
    else:
        raise CrashcartError(f"{found.shown} has no snapshot or root directory to look at")
    mounts, skipped = _binds(_spec_binds(spec, "/"))
    program = _spec_program(spec, None if lower else top)
    return View(found.shown, name, top, lower, mounts, program, skipped)


def _runtime_bundle(runtime: str, root: str, container: str) -> str | None:
    """The bundle a runc/crun container was created from, None if it has no such container."""
    if "/" in container or container in ("", ".", ".."):
        return None
    state_file = "status" if runtime == "crun" else "state.json"
    path = os.path.join(root, container, state_file)
    if not os.path.exists(path):
        return None
    state = _read_json(path, f"{runtime}'s state")
    if isinstance(state.get("bundle"), str):  # crun
        return str(state["bundle"])
    config = state.get("config")
    labels = config.get("labels") if isinstance(config, dict) else None
    for label in labels if isinstance(labels, list) else []:
        if isinstance(label, str) and label.startswith("bundle="):  # runc
            return label.removeprefix("bundle=")
    raise CrashcartError(f"{runtime}'s state {path} does not name the container's bundle")


def _engine_view(
    engine: str, spec: str, inspected: dict[str, object], vfs_dir: Callable[[str], str]
) -> View:
    """A Docker or podman container from its inspect (the same document for both);
    vfs_dir names the directory of a container of the vfs storage driver by its id."""
    driver = inspected.get("GraphDriver")
    driver = driver if isinstance(driver, dict) else {}
    data = driver.get("Data") if isinstance(driver.get("Data"), dict) else {}
    assert isinstance(data, dict)
    state = inspected.get("State")
    status = str(state.get("Status", "unknown")) if isinstance(state, dict) else "unknown"
    cid = str(inspected.get("Id", spec))
    lower: tuple[str, ...] = ()
    if "UpperDir" in data and "LowerDir" in data:  # overlay: the layers, read-only
        lower = (str(data["UpperDir"]), *str(data["LowerDir"]).split(":"))
        mount_point = str(data["MergedDir"])
    elif driver.get("Name") == "vfs":  # a plain directory per container
        try:
            mount_point = vfs_dir(cid)
        except (OSError, ValueError, KeyError) as err:
            raise CrashcartError(
                f"cannot find {engine} container {spec!r}'s files: {err}"
            ) from None
    else:
        raise CrashcartError(
            f"{engine} container {spec!r} uses the storage driver {driver.get('Name')!r}, "
            f"which crashcart debug does not read",
            hint="give the container's root directory: crashcart debug DIR",
        )
    pairs = []
    listed = inspected.get("Mounts")
    for mount in listed if isinstance(listed, list) else []:
        if isinstance(mount, dict):
            pairs.append((str(mount.get("Source", "")), str(mount.get("Destination", ""))))
    mounts, skipped = _binds(pairs)
    config = inspected.get("Config")
    env = config.get("Env") if isinstance(config, dict) else None
    program = _program([inspected.get("Path")], env, None if lower else mount_point)
    description = f"{engine} container {spec} ({status})"
    return View(description, spec[:12], mount_point, lower, mounts, program, skipped)


def _docker_vfs_dir(host: str, cid: str) -> str:
    top = str(docker_info(host).get("DockerRootDir", "/var/lib/docker"))
    with open(f"{top}/image/vfs/layerdb/mounts/{cid}/mount-id") as f:
        return f"{top}/vfs/dir/{f.read().strip()}"


def _podman_vfs_dir(spec: str, cid: str) -> str:
    """containers/storage's directory of the container's layer (its containers.json)."""
    graphroot = (podman_output(spec, "info", "--format", "{{.Store.GraphRoot}}") or "").strip()
    with open(f"{graphroot}/vfs-containers/containers.json") as f:
        layer = next(c["layer"] for c in json.load(f) if c.get("id") == cid)
    return f"{graphroot}/vfs/dir/{layer}"


def _podman_inspect(spec: str) -> dict[str, object] | None:
    out = podman_output(spec, "container", "inspect", spec)
    found = json.loads(out) if out else None
    return found[0] if isinstance(found, list) and found and isinstance(found[0], dict) else None


def docker_info(host: str) -> dict[str, object]:
    answer = docker_get(host, "/info")
    if answer is None or answer[0] != 200:
        raise CrashcartError(f"dockerd at {host} did not answer /info")
    info = json.loads(answer[1])
    return info if isinstance(info, dict) else {}


def view_of_directory(path: str) -> View:
    """A bundle (it has a config.json) or a root filesystem, given by its path."""
    real = os.path.realpath(path)
    if real == "/":
        raise CrashcartError(f"{path} is the host's root, not a container's")
    if os.path.isfile(os.path.join(real, "config.json")):
        return view_of_bundle(real, f"bundle {path}", os.path.basename(real))
    return View(f"root filesystem {path}", os.path.basename(real), real)


def resolve_view(
    spec: str,
    docker: str | None = None,
    namespace: str | None = None,
    runtime_endpoint: str | None = None,
) -> View:
    """The view of an image, a bundle or root directory (by path), a runc/crun container, a
    Docker or podman container, a Kubernetes POD[/CONTAINER] (with --namespace, only that)."""
    looked = []
    if namespace is None:
        if "/" in spec and is_image(spec):
            return view_of_image(spec)
        if "/" in spec and os.path.isdir(spec):
            return view_of_directory(spec)
        for runtime, root in RUNTIME_ROOTS:
            bundle = _runtime_bundle(runtime, root, spec)
            if bundle is not None:
                return view_of_bundle(bundle, f"{runtime} container {spec}", spec)
            looked.append(f"{runtime} {root}")
        host = docker_host(docker)
        inspected = docker_inspect(host, spec)
        if inspected is not None:
            return _engine_view("docker", spec, inspected, lambda cid: _docker_vfs_dir(host, cid))
        looked.append(f"docker {host}")
        inspected = _podman_inspect(spec)
        if inspected is not None:
            return _engine_view("podman", spec, inspected, lambda cid: _podman_vfs_dir(spec, cid))
        looked.append("podman")
    found = cri.find_pod_container(spec, namespace or "default", runtime_endpoint, "debug")
    if found is not None:
        return view_of_pod(found, spec.rpartition("/")[2])
    endpoint = cri.runtime_endpoint(runtime_endpoint)
    looked.append(f"pods of namespace {namespace or 'default'} at {endpoint or 'no CRI socket'}")
    raise CrashcartError(
        f"no container {spec!r} to debug (looked in {', '.join(looked)})",
        hint="give a runc/crun/docker/podman name or id, POD[/CONTAINER] with --namespace NS, "
        "or the path of a bundle, root directory or image (OCI layout or archive)",
    )


def view_of_image(source: str) -> View:
    """An image (OCI layout, oci-archive, docker-archive), unpacked once into the cache."""
    from crashcart.image import root_from_image

    root, program = root_from_image(source)
    return View(f"image {source}", os.path.basename(source.rstrip("/")), root, (), (), program)
