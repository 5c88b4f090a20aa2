"""Test images made from real Debian software: one `mmdebstrap --variant=minbase` of the
host's suite with nginx, two of its dynamically loaded modules and python3, plus small layers
written by hand (an nginx configuration for a read-only root, whiteouts, a shell-script
program, a Python app: tests/debian_python.py). One root for all of them: mmdebstrap is the
slowest fixture of the suite (~25 s), and the tests need real Debian files, not a root each.

The Debian mirror is the one the machine's own apt configuration names; no registry or
mirror host is written here. The result is cached under pytest's cache directory, keyed
by everything that decides its bytes; with CI=true it is always built from scratch.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.debian_python import python_app_key, write_python_layout
from tests.imagekit import M, compress, layer_tar, sha256, write_layout
from tests.tools import in_ci, require_root, require_tool, unavailable

PACKAGES = ("nginx", "libnginx-mod-http-geoip", "libnginx-mod-stream", "python3")
FIXTURE_VERSION = "4"  # bump when what this module writes changes

NGINX_CONF = b"""\
# For a read-only root: pid in /run, temporary files in /write, the site from /read.
include /etc/nginx/modules-enabled/*.conf;
worker_processes 1;
pid /run/nginx.pid;
error_log stderr;
events { worker_connections 64; }
http {
    include /etc/nginx/mime.types;
    access_log off;
    client_body_temp_path /write/body;
    proxy_temp_path /write/proxy;
    fastcgi_temp_path /write/fastcgi;
    uwsgi_temp_path /write/uwsgi;
    scgi_temp_path /write/scgi;
    include /read/*.conf;
}
"""
GREET = b"""#!/bin/sh
# Only shell builtins: the minimized image has /bin/sh and nothing else to run.
read -r greeting < /etc/greeting
echo "$greeting from a script, argument: $1"
"""


@dataclass(frozen=True)
class DebianImages:
    nginx_layout: Path  # OCI layout, two layers: minbase+nginx, configuration
    nginx_docker_archive: Path  # the same image, written by skopeo as a docker-archive
    script_layout: Path  # minbase+nginx and a layer with a #!/bin/sh program
    python_layout: Path  # minbase+nginx and a layer with a Python app (tests/debian_python.py)
    rootfs_tar: Path  # mmdebstrap's output, the floor for the benchmark


def host_suite() -> str:
    with open("/etc/os-release") as f:
        for line in f:
            key, _, value = line.strip().partition("=")
            if key == "VERSION_CODENAME":
                return value.strip('"')
    unavailable("/etc/os-release names no VERSION_CODENAME")
    return ""


def apt_mirror(suite: str) -> str:
    """The URI the machine's apt sources use for `suite` (deb822 .sources or .list)."""
    files = sorted(glob.glob("/etc/apt/sources.list.d/*.sources"))
    for path in files:
        with open(path) as f:
            for stanza in f.read().split("\n\n"):
                fields: dict[str, str] = {}
                for line in stanza.splitlines():
                    key, sep, value = line.partition(":")
                    if sep and not line.startswith((" ", "#")):
                        fields[key.strip()] = value.strip()
                if (
                    "deb" in fields.get("Types", "").split()
                    and suite in fields.get("Suites", "").split()
                ):
                    return fields["URIs"].split()[0]
    lists = ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*.list"))]
    for path in lists:
        if not os.path.exists(path):
            continue
        with open(path) as f:
            for line in f:
                words = [w for w in line.split() if not w.startswith("[")]
                if len(words) >= 3 and words[0] == "deb" and words[2] == suite:
                    return words[1]
    unavailable(f"the machine's apt configuration names no mirror for {suite!r}")
    return ""


def cache_key(suite: str, mirror: str) -> str:
    doc = {"suite": suite, "mirror": mirror, "packages": PACKAGES, "v": FIXTURE_VERSION}
    doc["nginx.conf"] = hashlib.sha256(NGINX_CONF).hexdigest()
    doc["greet"] = hashlib.sha256(GREET).hexdigest()
    doc["python"] = python_app_key()
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def debian_images(cache_dir: Path, scratch: Path) -> DebianImages:
    """The images, from the cache when allowed and present, else built into place."""
    require_root()
    suite = host_suite()
    mirror = apt_mirror(suite)
    base = scratch if in_ci() else cache_dir
    final = base / f"debian-{cache_key(suite, mirror)}"
    images = DebianImages(
        final / "nginx",
        final / "nginx-docker.tar",
        final / "script",
        final / "python",
        final / "rootfs.tar",
    )
    if (final / "complete").exists():
        return images
    require_tool("mmdebstrap")
    skopeo = require_tool("skopeo")
    work = base / f".building-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        build(work, suite, mirror, skopeo)
        (work / "complete").write_text("")
        shutil.rmtree(final, ignore_errors=True)
        os.rename(work, final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return images


def mmdebstrap(rootfs: Path, suite: str, mirror: str, packages: tuple[str, ...]) -> None:
    """A minbase tar of `suite` with `packages`, from the machine's own mirror."""
    subprocess.run(
        [
            "mmdebstrap",
            "--quiet",
            "--mode=root",
            "--variant=minbase",
            "--include=" + ",".join(packages),
            suite,
            str(rootfs),
            mirror,
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def build(work: Path, suite: str, mirror: str, skopeo: str) -> None:
    rootfs = work / "rootfs.tar"
    mmdebstrap(rootfs, suite, mirror, PACKAGES)
    with open(rootfs, "rb") as f:
        base_diff_id = "sha256:" + hashlib.file_digest(f, "sha256").hexdigest()
    gz = subprocess.run(["gzip", "-n", "-c", str(rootfs)], check=True, capture_output=True)
    base_blob = gz.stdout
    nginx_layer = layer_tar(
        [
            M("etc", "dir"),
            M("etc/nginx", "dir"),
            M("etc/nginx/nginx.conf", data=NGINX_CONF),
            M("etc/nginx/sites-enabled", "dir"),
            M("etc/nginx/sites-enabled/.wh..wh..opq"),
            M("usr", "dir"),
            M("usr/share", "dir"),
            M("usr/share/.wh.doc"),
        ]
    )
    nginx_config = {
        "Entrypoint": ["nginx", "-e", "stderr"],
        "Cmd": ["-g", "daemon off;"],
        "User": "www-data",
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "ExposedPorts": {"8080/tcp": {}},
        "StopSignal": "SIGQUIT",
        "WorkingDir": "/",
        "Labels": {"org.example.purpose": "smith minimize test"},
    }
    write_layout(
        str(work / "nginx"),
        [],
        nginx_config,
        blobs=[base_blob, compress(nginx_layer, "gzip")],
        diff_ids=[base_diff_id, sha256(nginx_layer)],
    )
    script_layer = layer_tar(
        [
            M("etc", "dir"),
            M("etc/greeting", data=b"hello\n"),
            M("usr", "dir"),
            M("usr/local", "dir"),
            M("usr/local/bin", "dir"),
            M("usr/local/bin/greet", data=GREET, mode=0o755),
        ]
    )
    write_layout(
        str(work / "script"),
        [],
        {"Entrypoint": ["greet"], "Cmd": ["world"], "Env": ["PATH=/usr/local/bin:/usr/bin"]},
        blobs=[base_blob, compress(script_layer, "gzip")],
        diff_ids=[base_diff_id, sha256(script_layer)],
    )
    write_python_layout(work / "python", base_blob, base_diff_id)
    subprocess.run(
        [
            skopeo,
            "copy",
            "--quiet",
            f"oci:{work / 'nginx'}:latest",
            f"docker-archive:{work / 'nginx-docker.tar'}:nginx:latest",
        ],
        check=True,
        capture_output=True,
    )
