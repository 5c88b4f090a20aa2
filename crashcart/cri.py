"""Kubernetes pods and containers by name, with crictl's conventions: `POD` or `POD/CONTAINER`,
`--namespace NS` (default "default"), the node's CRI socket from `--runtime-endpoint`, else
$CONTAINER_RUNTIME_ENDPOINT, else containerd's or CRI-O's default socket.

No CRI client is needed: containerd's CRI plugin keeps its containers in containerd's
`k8s.io` namespace, labelled with their pod's name and namespace and their own name, so
`ctr` finds them by those labels and names the task's pid.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

from smith.errors import CrashcartError

CRI_NAMESPACE = "k8s.io"  # containerd's namespace of the CRI plugin's containers
POD_LABEL = "io.kubernetes.pod.name"
NAMESPACE_LABEL = "io.kubernetes.pod.namespace"
CONTAINER_LABEL = "io.kubernetes.container.name"
KIND_LABEL = "io.cri-containerd.kind"  # "sandbox" for a pod's pause container
DEFAULT_ENDPOINTS = ("/run/containerd/containerd.sock", "/var/run/crio/crio.sock")
CTR_TIMEOUT = 10  # seconds
# What a Kubernetes object name may hold (a DNS subdomain): nothing that a ctr filter reads.
NAME_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-.")
PID_HINT = "attach by the container's pid (crictl inspect shows it as info.pid)"


def runtime_endpoint(explicit: str | None) -> str | None:
    """The CRI socket's path: the option, the variable, then the first default that exists."""
    chosen = explicit or os.environ.get("CONTAINER_RUNTIME_ENDPOINT")
    if chosen:
        return chosen.removeprefix("unix://")
    return next((path for path in DEFAULT_ENDPOINTS if os.path.exists(path)), None)


def is_pod_spec(spec: str) -> bool:
    pod, _, container = spec.partition("/")
    return bool(pod) and all(set(part) <= NAME_CHARACTERS for part in (pod, container))


def _ctr(endpoint: str, *args: str) -> str:
    ctr = shutil.which("ctr")
    if ctr is None:
        raise CrashcartError(
            f"crashcart finds Kubernetes containers with containerd's ctr, which is not "
            f"installed (CRI socket {endpoint})",
            hint=PID_HINT,
        )
    try:
        done = subprocess.run(
            [ctr, "--address", endpoint, "--namespace", CRI_NAMESPACE, *args],
            capture_output=True,
            text=True,
            timeout=CTR_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise CrashcartError(
            f"containerd at {endpoint} did not answer in {CTR_TIMEOUT} s", hint=PID_HINT
        ) from None
    if done.returncode != 0:
        error = done.stderr.strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
        raise CrashcartError(f"ctr at {endpoint}: {error[0]}", hint=PID_HINT)
    return done.stdout


def _info(endpoint: str, container_id: str) -> dict[str, object]:
    """`ctr containers info`: the container's labels, OCI spec, snapshotter and snapshot."""
    import json

    info = json.loads(_ctr(endpoint, "containers", "info", container_id))
    return info if isinstance(info, dict) else {}


def _labels(info: dict[str, object]) -> dict[str, str]:
    labels = info.get("Labels")
    return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}


@dataclass(frozen=True)
class PodContainer:
    endpoint: str
    id: str  # containerd's container id
    shown: str  # "pod shop/web container app"
    info: dict[str, object]  # ctr containers info


def find_pod_container(
    spec: str, namespace: str, explicit: str | None, verb: str = "attach to"
) -> PodContainer | None:
    """The container POD or POD/CONTAINER of the Kubernetes namespace, running or not;
    None when there is no CRI socket or no such pod."""
    endpoint = runtime_endpoint(explicit)
    if endpoint is None or not is_pod_spec(spec):
        return None
    if not os.path.exists(endpoint):
        raise CrashcartError(f"no CRI socket at {endpoint}", hint="check --runtime-endpoint")
    if "crio" in os.path.basename(endpoint):
        raise CrashcartError(
            f"the CRI socket {endpoint} is CRI-O's: crashcart looks pods up through containerd",
            hint=PID_HINT,
        )
    pod, _, name = spec.partition("/")
    wanted = [f'labels."{POD_LABEL}"=={pod}', f'labels."{NAMESPACE_LABEL}"=={namespace}']
    if name:
        wanted.append(f'labels."{CONTAINER_LABEL}"=={name}')
    ids = _ctr(endpoint, "containers", "list", "--quiet", ",".join(wanted)).split()
    found = {}
    for container_id in ids:
        info = _info(endpoint, container_id)
        labels = _labels(info)
        if labels.get(KIND_LABEL) != "sandbox":  # the pod's pause container is no one's target
            found[labels.get(CONTAINER_LABEL, container_id)] = (container_id, info)
    if not found:
        return None
    if len(found) > 1:
        forms = ", ".join(f"{pod}/{n}" for n in sorted(found))
        raise CrashcartError(f"pod {pod!r} has several containers: {verb} one of {forms}")
    ((container, (container_id, info)),) = found.items()
    return PodContainer(
        endpoint, container_id, f"pod {namespace}/{pod} container {container}", info
    )


def pod_container_pid(found: PodContainer) -> int:
    """The pid of the container's running task."""
    for line in _ctr(found.endpoint, "tasks", "list").splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 3 and fields[0] == found.id:
            if fields[2] != "RUNNING" or not fields[1].isdigit():
                break
            return int(fields[1])
    raise CrashcartError(
        f"{found.shown} is not running",
        hint="`crashcart debug` looks at its files post-mortem; crictl logs says what it said",
    )


def snapshot_layers(found: PodContainer) -> tuple[str, ...]:
    """The overlay layers (upper first) or the directory of the container's snapshot, from
    what `ctr snapshots mounts` says a mount of it would be (it mounts nothing)."""
    snapshotter = str(found.info.get("Snapshotter") or "overlayfs")
    key = str(found.info.get("SnapshotKey") or "")
    out = _ctr(found.endpoint, "snapshots", "--snapshotter", snapshotter, "mounts", "/", key)
    # One line per mount: "mount -t TYPE SOURCE TARGET -o OPTIONS" (ctr's printMounts).
    words = out.split()
    if len(words) >= 7 and words[:2] == ["mount", "-t"] and words[5] == "-o":
        kind, source, options = words[2], words[3], words[6].split(",")
        values = dict(option.partition("=")[::2] for option in options)
        if kind == "overlay" and values.get("lowerdir"):
            upper = [values["upperdir"]] if values.get("upperdir") else []
            return (*upper, *values["lowerdir"].split(":"))
        if kind == "bind":  # a snapshot without parents, or the native snapshotter
            return (source,)
    raise CrashcartError(f"cannot read {found.shown}'s snapshot {key!r}: ctr said {out.strip()!r}")
