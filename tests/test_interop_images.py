"""Images made offline by the real tools of this machine, in every format each writes, each
minimized by `smith minimize` as a whole command and the result run with runc on a
read-only root: docker (build FROM scratch with a whiteout, an opaque directory, a hard
link across layers and a non-root USER; import of `./` and of absolute names; `save` of
two images), buildah and podman (oci-archive, oci-dir, docker-archive, zstd layers), umoci
(insert at `/` and below), skopeo (oci:, oci-archive:, docker-archive:) and ctr (image
export). Images are built once per module; each cell costs one minimize and one run."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from tests.containers import (
    DockerDaemon,
    busybox_path,
    configure_bundle,
    run_bundle,
    start_dockerd,
    stop_daemon,
    unpack_bundle,
)
from tests.tools import PROJECT, require_root, require_tool

pytestmark = [pytest.mark.interop, pytest.mark.docker]

SMITH = [str(PROJECT / ".venv/bin/python"), "-m", "smith"]
# What the docker-built image's entrypoint prints: its uid, a file kept beside a whiteout,
# the hard link made in a later layer, the opaque directory's only entry, and the whiteout.
MULTI_SCRIPT = "id -u; cat /data/keep /hl/link; ls /opq; test -e /data/gone || echo gone"
MULTI_OUTPUT = "1000\nkeep\norig\nnew\ngone\n"
MULTI_FLAGS = ("--path", "/data", "--path", "/opq", "--path", "/hl")
DOCKERFILE = f"""\
FROM scratch
COPY rootfs/bin/ /bin/
COPY rootfs/data/ /data/
COPY rootfs/opq/ /opq/
COPY rootfs/hl/ /hl/
RUN ["/bin/busybox", "sh", "-c", "/bin/busybox rm /data/gone && /bin/busybox rm -r /opq \
&& /bin/busybox mkdir /opq && echo new > /opq/new && /bin/busybox ln /hl/orig /hl/link"]
USER 1000:1000
ENTRYPOINT ["/bin/busybox", "sh", "-c", "{MULTI_SCRIPT}"]
"""
# The imported trees: /bin/sh is a hard link to the symlink /usr/bin/sh -> /bin/busybox.
IMPORT_ENTRYPOINT = '["/bin/sh", "-c", "cat /etc/conf; id -u"]'
IMPORT_OUTPUT = "conf\n0\n"
BUILDAH_ENTRYPOINT = '["/bin/busybox", "sh", "-c", "cat /data/keep; id -u"]'
BUILDAH_OUTPUT = "keep\n1000\n"


def run(*args: str | Path, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    proc = subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **(env or {})},
    )
    if proc.returncode != 0:
        raise AssertionError(f"{args[0]} {args[1:3]} failed: {proc.stderr[-2000:]}")
    return proc.stdout


@pytest.fixture(scope="module")
def work() -> Iterator[Path]:
    # mkdtemp keeps the daemons' socket paths short: sun_path holds 108 bytes.
    path = Path(tempfile.mkdtemp(prefix="smith-interop-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def rootfs(work: Path) -> Path:
    root = work / "ctx" / "rootfs"
    for sub in ("bin", "data", "opq/sub", "hl"):
        (root / sub).mkdir(parents=True)
    shutil.copy(busybox_path(), root / "bin/busybox")
    for name, data in [("data/keep", "keep"), ("data/gone", "gone"), ("opq/old", "old"),
                       ("opq/sub/old2", "old2"), ("hl/orig", "orig")]:  # fmt: skip
        (root / name).write_text(data + "\n")
    return root


def import_tree(work: Path) -> Path:
    """A tree whose /bin/sh is a hard link to the symlink /usr/bin/sh (what `ln -P` makes)."""
    root = work / "import-root"
    (root / "bin").mkdir(parents=True)
    (root / "usr/bin").mkdir(parents=True)
    (root / "etc").mkdir()
    shutil.copy(busybox_path(), root / "bin/busybox")
    (root / "etc/conf").write_text("conf\n")
    os.symlink("/bin/busybox", root / "usr/bin/sh")
    run("ln", "-P", root / "usr/bin/sh", root / "bin/sh")
    return root


def docker(daemon: DockerDaemon, *args: str | Path) -> str:
    # Debian's CLI (20.10) and the classic builder: the newer CLI in /usr/local/bin wants buildx.
    cli = "/usr/bin/docker" if os.path.exists("/usr/bin/docker") else require_tool("docker")
    return run(cli, "-H", daemon.host, *args, env={"DOCKER_BUILDKIT": "0"})


@pytest.fixture(scope="module")
def docker_images(work: Path, rootfs: Path) -> dict[str, Path]:
    """docker-archives saved by a private dockerd on overlay2 (the driver whose layers carry
    opaque directories); the daemon is stopped once they are written."""
    tar = require_tool("tar")
    (rootfs.parent / "Dockerfile").write_text(DOCKERFILE)
    root = import_tree(work)
    dot = work / "dot.tar"
    absolute = work / "absolute.tar"
    run(tar, "-C", root, "-cf", dot, ".")
    tops = [root / "bin", root / "etc", root / "usr"]
    run(tar, "-P", "-cf", absolute, f"--transform=s|^{root}||", *tops)
    assert run(tar, "-P", "-tf", absolute).startswith("/bin/")  # GNU tar kept the `/`
    out = {}
    with contextlib.contextmanager(start_dockerd)(work / "dockerd", "overlay2") as daemon:
        docker(daemon, "build", "--network", "none", "-q", "-t", "multi:1", rootfs.parent)
        for name, source in [("dot:1", dot), ("absolute:1", absolute)]:
            docker(daemon, "import", "--change", f"ENTRYPOINT {IMPORT_ENTRYPOINT}", source, name)
        for name in ("multi", "dot", "absolute"):
            out[name] = work / f"docker-{name}.tar"
            docker(daemon, "save", "-o", out[name], f"{name}:1")
        out["both"] = work / "docker-both.tar"
        docker(daemon, "save", "-o", out["both"], "multi:1", "dot:1")
    return out


def storage_flags(work: Path) -> list[str]:
    return ["--root", str(work / "storage/root"), "--runroot", str(work / "storage/run"),
            "--storage-driver", "vfs"]  # fmt: skip


def buildah_command(work: Path) -> list[str]:
    return [require_tool("buildah"), *storage_flags(work)]


def podman_command(work: Path) -> list[str]:
    return [require_tool("podman"), *storage_flags(work), "--cgroup-manager", "cgroupfs",
            "--events-backend", "file"]  # fmt: skip


@pytest.fixture(scope="module")
def buildah_images(work: Path, rootfs: Path) -> dict[str, Path]:
    """One image committed by buildah, pushed and saved (podman) in every format."""
    require_root()
    buildah, podman = buildah_command(work), podman_command(work)
    container = run(*buildah, "from", "scratch").strip()
    run(*buildah, "copy", container, rootfs / "bin", "/bin")
    run(*buildah, "copy", container, rootfs / "data", "/data")
    run(*buildah, "config", "--entrypoint", BUILDAH_ENTRYPOINT, "--user", "1000", container)
    run(*buildah, "commit", "-q", container, "bb:1")
    out = {
        "buildah-oci-archive": work / "buildah.oar",
        "buildah-oci": work / "buildah-oci",
        "buildah-docker-archive": work / "buildah.dar",
        "buildah-zstd": work / "buildah-zstd",
        "podman-oci-archive": work / "podman.oar",
        "podman-oci-dir": work / "podman-oci",
        "podman-docker-archive": work / "podman.dar",
        "podman-docker-dir": work / "podman-docker-dir",
    }
    run(*buildah, "push", "-q", "bb:1", f"oci-archive:{out['buildah-oci-archive']}")
    run(*buildah, "push", "-q", "bb:1", f"oci:{out['buildah-oci']}")
    run(*buildah, "push", "-q", "bb:1", f"docker-archive:{out['buildah-docker-archive']}")
    zstd = ["--compression-format", "zstd"]
    run(*buildah, "push", "-q", *zstd, "bb:1", f"oci:{out['buildah-zstd']}")
    for fmt in ("oci-archive", "oci-dir", "docker-archive", "docker-dir"):
        run(*podman, "save", "--format", fmt, "-o", out[f"podman-{fmt}"], "localhost/bb:1")
    run(*buildah, "rm", container)
    return out


def layer_media_types(layout: Path) -> list[str]:
    index = json.loads((layout / "index.json").read_text())
    blobs = layout / "blobs/sha256"
    manifest = json.loads((blobs / index["manifests"][0]["digest"][7:]).read_text())
    return [layer["mediaType"] for layer in manifest["layers"]]


def layer_entry_kinds(archive: Path) -> dict[str, str]:
    """Name -> kind of the entries of a single-layer docker-archive's layer."""
    with tarfile.open(archive) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))  # type: ignore[arg-type]
        (layer,) = manifest[0]["Layers"]
        with tarfile.open(fileobj=outer.extractfile(layer)) as inner:
            return {
                m.name: "hardlink" if m.islnk() else "symlink" if m.issym() else "other"
                for m in inner
            }


def minimize_and_run(source: str, tmp: Path, *flags: str) -> str:
    """`smith minimize SOURCE` as a whole command, then the output run by runc on a
    read-only root; returns what the program printed."""
    tmp.mkdir(exist_ok=True)
    out = tmp / "minimized"
    proc = subprocess.run(
        [*SMITH, "minimize", source, "-o", str(out), "--tag", "t", *flags],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    bundle = unpack_bundle(f"{out}:t", tmp / "bundle")
    configure_bundle(bundle, readonly=True)
    result = run_bundle("runc", bundle)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("name", ["multi", "dot", "absolute"])
def test_docker_saved_images(docker_images: dict[str, Path], tmp_path: Path, name: str) -> None:
    flags = MULTI_FLAGS if name == "multi" else ["--path", "/etc/conf"]
    expected = MULTI_OUTPUT if name == "multi" else IMPORT_OUTPUT
    if name != "multi":  # docker kept the hard link to a symlink this is about
        kinds = layer_entry_kinds(docker_images[name])
        lead = "/" if name == "absolute" else "./"  # docker import keeps the tar's names
        pair = sorted([kinds.get(f"{lead}bin/sh", ""), kinds.get(f"{lead}usr/bin/sh", "")])
        assert pair == ["hardlink", "symlink"], kinds
    assert minimize_and_run(str(docker_images[name]), tmp_path, *flags) == expected


def open_image_layers(source: Path) -> list[str]:
    manifest = json.loads(subprocess.run(["tar", "-xOf", str(source), "manifest.json"],
                                         capture_output=True, check=True).stdout)  # fmt: skip
    return list(manifest[0]["Layers"])


def test_diff_of_a_docker_save_names_the_type_bits_apart(
    docker_images: dict[str, Path], tmp_path: Path
) -> None:
    """Go's archive/tar writes a directory's mode as 040755: `smith diff` between docker's
    image and its minimized copy must not read that as a change of permissions, and must
    say first that the layer counts differ."""
    out = tmp_path / "small.tar"
    run(*SMITH, "minimize", docker_images["multi"], "-o", out, *MULTI_FLAGS)
    proc = subprocess.run([*SMITH, "diff", str(docker_images["multi"]), str(out), "--limit",
                           "1000"], capture_output=True, text=True, check=False)  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    # Layers pair by position: that the counts differ comes first, as it explains the rest.
    layers = len(open_image_layers(docker_images["multi"]))
    assert proc.stdout.splitlines()[0] == (
        f"first cause: manifest: layers: number of layers differs: A {layers}, B 1"
        " (layer i of A is compared with layer i of B)"
    )
    assert "layer 1: bin: mode differs: A 0755 with the file type bits 040000, B 0755" in (
        proc.stdout
    ), proc.stdout
    assert "A 40755" not in proc.stdout


def test_docker_save_of_two_images_needs_a_name(
    docker_images: dict[str, Path], tmp_path: Path
) -> None:
    both = docker_images["both"]
    proc = subprocess.run(
        [*SMITH, "minimize", str(both), "-o", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr  # as a layout's
    assert "holds 2 images" in proc.stderr and "dot:1" in proc.stderr and "multi:1" in proc.stderr
    assert not (tmp_path / "out").exists()
    dot = minimize_and_run(f"{both}:dot:1", tmp_path / "dot", "--path", "/etc/conf")
    assert dot == IMPORT_OUTPUT
    assert minimize_and_run(f"{both}:multi:1", tmp_path / "multi", *MULTI_FLAGS) == MULTI_OUTPUT


@pytest.mark.parametrize(
    "name",
    [
        "buildah-oci-archive",
        "buildah-oci",
        "buildah-docker-archive",
        "buildah-zstd",
        "podman-oci-archive",
        "podman-oci-dir",
        "podman-docker-archive",
        "podman-docker-dir",
    ],
)
def test_buildah_and_podman_images(
    buildah_images: dict[str, Path], tmp_path: Path, name: str
) -> None:
    source = buildah_images[name]
    if name == "buildah-zstd":
        assert layer_media_types(source) == ["application/vnd.oci.image.layer.v1.tar+zstd"]
    assert minimize_and_run(str(source), tmp_path, "--path", "/data") == BUILDAH_OUTPUT


@pytest.mark.parametrize("transport", ["oci", "oci-archive", "docker-archive", "dir"])
def test_skopeo_copies(buildah_images: dict[str, Path], tmp_path: Path, transport: str) -> None:
    skopeo = require_tool("skopeo")
    dest = tmp_path / ("copy" if transport in ("oci", "dir") else "copy.tar")
    names = {"docker-archive": ":sk:1", "dir": ""}  # dir: holds one image, unnamed
    ref = f"{transport}:{dest}" + names.get(transport, ":sk")
    run(skopeo, "copy", "-q", f"oci:{buildah_images['buildah-oci']}", ref)
    assert minimize_and_run(str(dest), tmp_path, "--path", "/data") == BUILDAH_OUTPUT


@pytest.mark.parametrize("where", ["/", "/opt/sub"])
def test_umoci_insert(rootfs: Path, tmp_path: Path, where: str) -> None:
    """umoci 0.4.7 writes `/` and no tar footer (umoci #436); the program runs either way."""
    umoci = require_tool("umoci")
    layout = tmp_path / "layout"
    run(umoci, "init", "--layout", layout)
    run(umoci, "new", "--image", f"{layout}:u")
    run(umoci, "insert", "--image", f"{layout}:u", rootfs, where)
    prefix = "" if where == "/" else where
    script = f"cat {prefix}/data/keep; id -u"
    entrypoint = [f"{prefix}/bin/busybox", "sh", "-c", script]
    run(
        umoci, "config", "--image", f"{layout}:u", *(f"--config.entrypoint={a}" for a in entrypoint)
    )
    output = minimize_and_run(f"{layout}:u", tmp_path, "--path", f"{prefix}/data")
    assert output == "keep\n0\n"


@contextlib.contextmanager
def containerd(work: Path) -> Iterator[list[str]]:
    """A private containerd (own root, state and socket); yields the ctr command."""
    binary = require_tool("containerd")
    ctr = [require_tool("ctr"), "--address", str(work / "c.sock"), "--namespace", "smithtest"]
    work.mkdir(parents=True)
    (work / "config.toml").write_text("version = 2\n")  # not the host's /etc/containerd
    log = (work / "log").open("wb")
    proc = subprocess.Popen(
        [binary, "--config", str(work / "config.toml"), "--root", str(work / "root"),
         "--state", str(work / "state"), "--address", str(work / "c.sock")],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while subprocess.run([*ctr, "version"], capture_output=True).returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"containerd did not start: {(work / 'log').read_text()}")
            time.sleep(0.2)
        yield ctr
    finally:
        stop_daemon(proc, log)


@pytest.fixture(scope="module")
def ctr(work: Path) -> Iterator[list[str]]:
    with containerd(work / "containerd") as command:
        yield command


def test_ctr_image_export(docker_images: dict[str, Path], ctr: list[str], tmp_path: Path) -> None:
    exported = tmp_path / "ctr.tar"
    run(*ctr, "image", "import", "--no-unpack", docker_images["multi"])
    run(*ctr, "image", "export", exported, "docker.io/library/multi:1")
    assert minimize_and_run(str(exported), tmp_path, *MULTI_FLAGS) == MULTI_OUTPUT


# podman's default nofile limit is above what this host lets a container set.
PODMAN_RUN = ["run", "--rm", "--read-only", "--network", "none", "--runtime", "runc",
              "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]  # fmt: skip


@pytest.mark.parametrize("fmt", ["oci-archive", "docker-archive"])
def test_smith_outputs_run_in_podman_buildah_and_ctr(
    buildah_images: dict[str, Path], ctr: list[str], work: Path, tmp_path: Path, fmt: str
) -> None:
    """What smith writes is loaded and run by podman, buildah and containerd (docker and
    umoci: tests/test_oci_tools.py)."""
    out = tmp_path / "smith.tar"
    tag = f"smith-{fmt}:1"
    argv = [*SMITH, "minimize", str(buildah_images["buildah-oci"]), "-o", str(out),
            "--format", fmt, "--tag", tag, "--path", "/data"]  # fmt: skip
    subprocess.run(argv, check=True, capture_output=True)
    podman, buildah = podman_command(work), buildah_command(work)
    loaded = run(*podman, "load", "-q", "-i", out).strip().removeprefix("Loaded image: ")
    assert run(*podman, *PODMAN_RUN, loaded) == BUILDAH_OUTPUT
    if fmt == "oci-archive":
        image = run(*buildah, "pull", "-q", f"oci-archive:{out}").strip()
        container = run(*buildah, "from", "-q", image).strip()
        argv = ["run", "--runtime", "runc", "--network", "none", container, "--"]
        script = BUILDAH_ENTRYPOINT.split('"')[1::2]
        assert run(*buildah, *argv, *script) == BUILDAH_OUTPUT
        run(*buildah, "rm", container)
    run(*ctr, "image", "import", out)
    cid = f"smith-test-{os.getpid()}-{fmt}"
    assert run(*ctr, "run", "--rm", "--read-only", tag, cid) == BUILDAH_OUTPUT


def test_docker_archive_refuses_zstd(tmp_path: Path, buildah_images: dict[str, Path]) -> None:
    """Docker's archive format has no zstd (`docker load` fails on it): one line naming the
    way out, and no output."""
    out = tmp_path / "out.tar"
    args: Sequence[str] = [*SMITH, "minimize", str(buildah_images["buildah-oci"]), "-o", str(out),
                           "--format", "docker-archive", "--compression", "zstd"]  # fmt: skip
    proc = subprocess.run(args, capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "gzip" in proc.stderr and "oci-archive" in proc.stderr
    assert not out.exists()
