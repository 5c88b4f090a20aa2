"""`smith minimize` on an image of real Debian software (see tests/debian_image.py): the
minimized nginx runs under runc with a read-only root, answers HTTP on 127.0.0.1 and passes
`nginx -t` (its run-time modules kept); a #!/bin/sh program runs; every input format gives
the same output digest."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from smith.minimize import MinimizeOptions, minimize_image
from tests.debian_image import NGINX_CONF, DebianImages
from tests.tools import PROJECT, require_root, require_tool

NGINX_PATHS = ("/etc/nginx", "/usr/lib/nginx/modules", "/usr/share/nginx")


def smith(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PROJECT / ".venv/bin/smith"), *args],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )


@pytest.fixture(scope="module")
def minimized_nginx(
    debian: DebianImages, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("nginx") / "image"
    args = [str(debian.nginx_layout), "-o", str(out), "--tag", "nginx", "--json", "--explain"]
    for path in NGINX_PATHS:
        args += ["--path", path]
    proc = smith("minimize", *args)
    assert proc.returncode == 0, proc.stderr
    summary: dict[str, Any] = json.loads(proc.stdout)
    summary["dir"] = out
    return summary


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Bundle:
    """An OCI runtime bundle of an image, unpacked by umoci, run by runc read-only."""

    def __init__(self, image: Path, tag: str, where: Path, read_dir: Path | None = None) -> None:
        self.runc = require_tool("runc")
        umoci = require_tool("umoci")
        self.dir = where
        self.state = where.parent / f"{where.name}-runc-state"
        subprocess.run(
            [umoci, "unpack", "--image", f"{image}:{tag}", str(where)],
            check=True,
            capture_output=True,
        )
        with open(where / "config.json") as f:
            self.config: dict[str, Any] = json.load(f)
        self.config["root"]["readonly"] = True
        self.config["process"]["terminal"] = False
        linux = self.config["linux"]
        # The host's network, so that the server answers on the host's 127.0.0.1.
        linux["namespaces"] = [n for n in linux["namespaces"] if n["type"] != "network"]
        mounts = self.config["mounts"]
        user = self.config["process"]["user"]
        # runc gives a tmpfs the mode of the directory it covers (0755 by the conventions)
        # but root as owner: hand it to the runtime user, as a deployment would.
        owner = [f"uid={user['uid']}", f"gid={user['gid']}"]
        for target in ("/run", "/write"):
            mounts.append(
                {
                    "destination": target,
                    "type": "tmpfs",
                    "source": "tmpfs",
                    "options": ["nosuid", "nodev", *owner],
                }
            )
        if read_dir is not None:
            mounts.append(
                {
                    "destination": "/read",
                    "type": "bind",
                    "source": str(read_dir),
                    "options": ["rbind", "ro"],
                }
            )
        self.names: list[str] = []

    def command(self, name: str, args: list[str] | None) -> list[str]:
        config = json.loads(json.dumps(self.config))
        if args is not None:
            config["process"]["args"] = args
        with open(self.dir / "config.json", "w") as f:
            json.dump(config, f)
        self.names.append(name)
        return [self.runc, "--root", str(self.state), "run", "-b", str(self.dir), name]

    def run(self, name: str, args: list[str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(name, args), capture_output=True, text=True, check=False, timeout=60
        )

    def start(self, name: str, args: list[str] | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command(name, args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def cleanup(self) -> None:
        for name in self.names:
            subprocess.run(
                [self.runc, "--root", str(self.state), "delete", "--force", name],
                capture_output=True,
                check=False,
            )
        shutil.rmtree(self.state, ignore_errors=True)


@pytest.fixture
def bundles() -> Iterator[list[Bundle]]:
    made: list[Bundle] = []
    yield made
    for bundle in made:
        bundle.cleanup()


def test_minimized_nginx_runs_read_only_and_answers(
    minimized_nginx: dict[str, Any], tmp_path: Path, bundles: list[Bundle]
) -> None:
    require_root()
    port = free_port()
    read_dir = tmp_path / "read"
    read_dir.mkdir()
    (read_dir / "site.conf").write_text(
        f"server {{ listen 127.0.0.1:{port}; root /usr/share/nginx/html; }}\n"
    )
    bundle = Bundle(minimized_nginx["dir"], "nginx", tmp_path / "bundle", read_dir)
    bundles.append(bundle)
    assert bundle.config["process"]["user"]["uid"] == 33  # www-data, looked up at minimize

    # The configuration test loads the dynamic modules: their closure had to be kept.
    check = bundle.run("nginx-t", ["nginx", "-e", "stderr", "-t"])
    assert check.returncode == 0, check.stderr
    assert "test is successful" in check.stderr

    assert b"Welcome to nginx" in serve_and_get(bundle, port)


def serve_and_get(bundle: Bundle, port: int) -> bytes:
    """Start the image's server, GET / on 127.0.0.1:port (status 200), stop it."""
    server = bundle.start("nginx-serve")
    try:
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as reply:
                    assert reply.status == 200
                    return bytes(reply.read())
            except OSError:
                assert server.poll() is None, server.communicate()[1]
                time.sleep(0.1)
        raise AssertionError(f"nothing answered on 127.0.0.1:{port}")
    finally:
        subprocess.run(
            [bundle.runc, "--root", str(bundle.state), "kill", "nginx-serve", "KILL"],
            capture_output=True,
            check=False,
        )
        server.wait(timeout=30)


def test_minimized_nginx_is_small_and_explained(minimized_nginx: dict[str, Any]) -> None:
    before, after = minimized_nginx["before"], minimized_nginx["after"]
    assert after["files"] * 50 < before["files"]
    assert after["bytes"] * 5 < before["bytes"]
    kept = minimized_nginx["kept"]
    assert kept["/usr/sbin/nginx"] == "start"
    assert "DT_NEEDED libGeoIP.so.1" in next(v for k, v in kept.items() if "libGeoIP.so.1." in k)
    for absent in ("/usr/bin/bash", "/usr/bin/apt", "/usr/share/doc", "/etc/passwd"):
        assert absent not in kept
    for runtime_dir in ("/dev", "/proc", "/sys", "/run", "/write", "/read"):
        assert kept[runtime_dir] == "microcontainer conventions"


def test_every_input_format_gives_the_same_output(
    debian: DebianImages, minimized_nginx: dict[str, Any], tmp_path: Path
) -> None:
    """docker-archive (written by skopeo) and oci-archive inputs, another umask, TZ and
    temporary directory: the same manifest digest as from the OCI layout."""
    archive = tmp_path / "nginx-oci.tar"
    subprocess.run(["tar", "-C", str(debian.nginx_layout), "-cf", str(archive), "."], check=True)
    env = {**os.environ, "TZ": "Pacific/Chatham", "TMPDIR": str(tmp_path), "LC_ALL": "C"}
    for source in (debian.nginx_docker_archive, archive):
        args = [str(source), "-o", str(tmp_path / "out.tar"), "--tag", "nginx", "--json"]
        for path in NGINX_PATHS:
            args += ["--path", path]
        proc = subprocess.run(
            [
                "sh",
                "-c",
                'umask 077; exec "$@"',
                "sh",
                str(PROJECT / ".venv/bin/smith"),
                "minimize",
                *args,
            ],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["manifest"] == minimized_nginx["manifest"]
    assert sorted(os.listdir(tmp_path)) == ["nginx-oci.tar", "out.tar"]


def test_script_program_runs(debian: DebianImages, tmp_path: Path, bundles: list[Bundle]) -> None:
    require_root()
    out = tmp_path / "image"
    result = minimize_image(
        str(debian.script_layout), str(out), MinimizeOptions(paths=("/etc/greeting",), tag="t")
    )
    assert result.program == "usr/local/bin/greet"
    assert "#! interpreter /bin/sh" in result.kept["usr/bin/dash"]
    assert "symlink on the way to /bin/sh" in result.kept["usr/bin/sh"]
    bundle = Bundle(out, "t", tmp_path / "bundle")
    bundles.append(bundle)
    proc = bundle.run("greet")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "hello from a script, argument: world\n"
    assert result.after.files < 10


def test_nginx_t_needs_what_its_modules_load(
    debian: DebianImages, tmp_path: Path, bundles: list[Bundle]
) -> None:
    """The counter-check: leave out the library only a run-time module needs (what a tool
    that follows the program's DT_NEEDED alone, like the original smith, would keep) and
    `nginx -t` fails where the full minimized image passes."""
    require_root()
    out = tmp_path / "image"
    options = MinimizeOptions(paths=NGINX_PATHS, excludes=("/usr/lib/*/libGeoIP.so*",), tag="n")
    minimize_image(str(debian.nginx_layout), str(out), options)
    read_dir = tmp_path / "read"
    read_dir.mkdir()
    bundle = Bundle(out, "n", tmp_path / "bundle", read_dir)
    bundles.append(bundle)
    check = bundle.run("nginx-t-nogeoip", ["nginx", "-e", "stderr", "-t"])
    assert check.returncode != 0
    assert "libGeoIP.so.1" in check.stderr


def umoci_image(rootfs_tar: Path, work: Path) -> Path:
    """The Debian nginx root made into an image by umoci 0.4.7 the way debootstrap users and
    stacker do (unpack an empty image, fill the bundle, `repack`): one layer whose first
    entry is `/` and which ends without the tar footer (umoci #436)."""
    umoci = require_tool("umoci")
    layout, bundle = work / "umoci-nginx", work / "umoci-bundle"
    for args in (
        ["init", "--layout", str(layout)],
        ["new", "--image", f"{layout}:latest"],
        ["unpack", "--image", f"{layout}:latest", str(bundle)],
    ):
        subprocess.run([umoci, *args], check=True, capture_output=True)
    rootfs = bundle / "rootfs"
    subprocess.run(["tar", "-C", str(rootfs), "-xf", str(rootfs_tar)], check=True)
    (rootfs / "etc/nginx/nginx.conf").write_bytes(NGINX_CONF)
    for args in (
        ["repack", "--image", f"{layout}:latest", str(bundle)],
        ["config", "--image", f"{layout}:latest", "--config.entrypoint", "nginx",
         "--config.entrypoint", "-e", "--config.entrypoint", "stderr",
         "--config.cmd", "-g", "--config.cmd", "daemon off;", "--config.user", "www-data"],
    ):  # fmt: skip
        subprocess.run([umoci, *args], check=True, capture_output=True)
    shutil.rmtree(bundle)
    return layout


def test_umoci_built_debian_nginx_minimizes_in_every_form_and_runs(
    debian: DebianImages, tmp_path: Path, bundles: list[Bundle]
) -> None:
    """The image that failed in all three forms before smith read layers as Go's archive/tar
    does: Debian's nginx packed by umoci. Layout, oci-archive and docker-archive (skopeo)
    give the same output, and the minimized nginx passes `nginx -t` on a read-only root."""
    require_root()
    skopeo = require_tool("skopeo")
    layout = umoci_image(debian.rootfs_tar, tmp_path)
    oci_archive, docker_archive = tmp_path / "nginx-oci.tar", tmp_path / "nginx-docker.tar"
    subprocess.run(["tar", "-C", str(layout), "-cf", str(oci_archive), "."], check=True)
    subprocess.run(
        [skopeo, "copy", "--quiet", f"oci:{layout}:latest",
         f"docker-archive:{docker_archive}:nginx:latest"],
        check=True, capture_output=True,
    )  # fmt: skip
    manifests = set()
    for n, source in enumerate((layout, oci_archive, docker_archive)):
        out = tmp_path / f"small-{n}"
        args = [str(source), "-o", str(out), "--tag", "nginx", "--json"]
        for path in NGINX_PATHS:
            args += ["--path", path]
        proc = smith("minimize", *args)
        assert proc.returncode == 0, f"{source.name}: {proc.stderr}"
        manifests.add(json.loads(proc.stdout)["manifest"])
    assert len(manifests) == 1
    read_dir = tmp_path / "read"
    read_dir.mkdir()
    (read_dir / "site.conf").write_text("server { listen 127.0.0.1:8; }\n")
    bundle = Bundle(tmp_path / "small-0", "nginx", tmp_path / "bundle", read_dir)
    bundles.append(bundle)
    check = bundle.run("umoci-nginx-t", ["nginx", "-e", "stderr", "-t"])
    assert check.returncode == 0, check.stderr
    assert "test is successful" in check.stderr
