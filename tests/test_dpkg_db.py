"""`smith minimize` of a Debian image (one with /var/lib/dpkg/status): the SBOM names the
kept packages from dpkg's own database, and `--package-db` writes them as distroless does,
/var/lib/dpkg/status.d/<package>, which dpkg-query reads as a status file."""

from __future__ import annotations

import subprocess
from pathlib import Path

from smith.oci.layout import open_image
from smith.oci.unpack import apply_layers
from tests.debian_image import DebianImages
from tests.imagekit import M, layer_tar, write_layout
from tests.test_minimize_cli import CONFIG
from tests.test_minimize_debian import NGINX_PATHS
from tests.test_sbom import sbom_of, smith, validated
from tests.tools import require_tool

BUSYBOX = """\
Package: busybox-static
Status: install ok installed
Priority: optional
Section: shells
Installed-Size: 2077
Maintainer: Debian Install System Team <debian-boot@lists.debian.org>
Architecture: amd64
Source: busybox
Version: 1:1.35.0-4+b1
Description: Standalone rescue shell with tons of builtin utilities
 BusyBox combines tiny versions of many common UNIX utilities into a single
 small executable.
Homepage: http://www.busybox.net
"""
BIG = """\
Package: bigdata
Status: install ok installed
Architecture: all
Version: 2.0
Maintainer: Nobody <nobody@example.org>
Description: a large file nothing needs
"""
REMOVED = """\
Package: gone
Status: deinstall ok config-files
Architecture: all
Version: 1.0
Description: removed, its configuration left
"""


def debian_like(tmp_path: Path) -> Path:
    with open(require_tool("busybox"), "rb") as f:
        busybox = f.read()
    status = "\n".join((BUSYBOX, BIG, REMOVED)).encode()
    layer = layer_tar(
        [
            M("bin", "dir"),
            M("bin/busybox", data=busybox, mode=0o755),
            M("bin/sh", "symlink", link="busybox"),
            M("etc", "dir"),
            M("etc/passwd", data=b"root:x:0:0::/:/bin/sh\napp:x:1234:2345::/:/bin/sh\n"),
            M("etc/group", data=b"root:x:0:\napp:x:2345:\n"),
            M("etc/motd", data=b"hello\n"),
            M("usr", "dir"),
            M("usr/lib", "dir"),
            M("usr/lib/os-release", data=b'PRETTY_NAME="Debian GNU/Linux 12"\nID=debian\n'),
            M("etc/os-release", "symlink", link="../usr/lib/os-release"),
            M("usr/share", "dir"),
            M("usr/share/big", data=b"x" * 100_000),
            M("var", "dir"),
            M("var/lib", "dir"),
            M("var/lib/dpkg", "dir"),
            M("var/lib/dpkg/status", data=status),
            M("var/lib/dpkg/info", "dir"),
            M("var/lib/dpkg/info/busybox-static.list", data=b"/.\n/bin\n/bin/busybox\n"),
            M("var/lib/dpkg/info/busybox-static.md5sums",
              data=b"0123456789abcdef0123456789abcdef  bin/busybox\n"),
            M("var/lib/dpkg/info/bigdata.list", data=b"/usr\n/usr/share\n/usr/share/big\n"),
        ]
    )  # fmt: skip
    layout = tmp_path / "debian"
    write_layout(str(layout), [layer], CONFIG)
    return layout


def test_status_d_lists_the_kept_packages_and_dpkg_query_reads_it(tmp_path: Path) -> None:
    out = tmp_path / "small"
    proc = smith("minimize", str(debian_like(tmp_path)), "-o", str(out), "--package-db", "--sbom")
    assert proc.returncode == 0, proc.stderr.decode()
    with open_image(str(out)) as image:
        (tmp_path / "store").mkdir()
        tree, _ = apply_layers(image, str(tmp_path / "store"))

        def read(path: str) -> bytes:
            entry = tree.get(path)
            assert entry is not None and entry.content is not None, path
            with entry.content.open() as f:
                return f.read()

        listing = sorted(p for p in tree.paths() if p.startswith("var/lib/dpkg/"))
        assert listing == [
            "var/lib/dpkg/status.d",
            "var/lib/dpkg/status.d/busybox-static",
            "var/lib/dpkg/status.d/busybox-static.md5sums",
        ]
        stanza = read("var/lib/dpkg/status.d/busybox-static")
        assert stanza == BUSYBOX.encode()
        # Scanners tell the distribution by os-release: kept, with the file it links to.
        assert tree.resolve("etc/os-release") == "usr/lib/os-release"
        assert b"ID=debian" in read("usr/lib/os-release")
    # dpkg-query reads the stanzas of status.d as a status file, as scanners do.
    admindir = tmp_path / "admin"
    (admindir / "info").mkdir(parents=True)
    (admindir / "status").write_bytes(stanza)
    (admindir / "available").write_bytes(b"")
    show = ["-W", "-f", "${Package} ${Version}\\n"]
    query = subprocess.run(
        [require_tool("dpkg-query"), f"--admindir={admindir}", *show],
        capture_output=True,
        text=True,
        check=False,
    )
    assert query.returncode == 0, query.stderr
    assert query.stdout == "busybox-static 1:1.35.0-4+b1\n"

    doc = validated(sbom_of(out), tmp_path)
    packages = {p["name"]: p for p in doc["packages"] if p["SPDXID"] != "SPDXRef-Image"}
    assert set(packages) == {"busybox-static"}  # bigdata gave nothing; gone is not installed
    busybox = packages["busybox-static"]
    assert busybox["versionInfo"] == "1:1.35.0-4+b1"
    assert busybox["externalRefs"][0]["referenceLocator"] == (
        "pkg:deb/debian/busybox-static@1:1.35.0-4%2Bb1?arch=amd64"
    )
    ids = {p["SPDXID"]: p["name"] for p in doc["packages"]}
    files = {f["SPDXID"]: f["fileName"] for f in doc["files"]}
    contains = {
        (ids[r["spdxElementId"]], files[r["relatedSpdxElement"]])
        for r in doc["relationships"]
        if r["relationshipType"] == "CONTAINS" and r["relatedSpdxElement"] in files
    }
    assert ("busybox-static", "./bin/busybox") in contains
    assert ("image", "./var/lib/dpkg/status.d/busybox-static") in contains


def test_without_package_db_nothing_of_dpkg_is_kept(tmp_path: Path) -> None:
    out = tmp_path / "small"
    proc = smith("minimize", str(debian_like(tmp_path)), "-o", str(out))
    assert proc.returncode == 0, proc.stderr.decode()
    with open_image(str(out)) as image:
        (tmp_path / "store").mkdir()
        tree, _ = apply_layers(image, str(tmp_path / "store"))
        assert not [p for p in tree.paths() if p.startswith("var/lib/dpkg")]


def test_minimized_debian_nginx_keeps_the_status_of_its_packages(
    debian: DebianImages,
    tmp_path: Path,
) -> None:
    """A real Debian image (mmdebstrap minbase + nginx): the kept packages, and only
    they, get a status.d entry; the SBOM names the same ones."""
    out = tmp_path / "nginx"
    args = ["--package-db", "--sbom", *(a for p in NGINX_PATHS for a in ("--path", p))]
    proc = smith("minimize", str(debian.nginx_layout), "-o", str(out), *args)
    assert proc.returncode == 0, proc.stderr.decode()
    with open_image(str(out)) as image:
        (tmp_path / "store").mkdir()
        tree, _ = apply_layers(image, str(tmp_path / "store"))
        stanzas = {}
        for entry in tree:
            if entry.path.startswith("var/lib/dpkg/status.d/") and entry.content is not None:
                with entry.content.open() as f:
                    stanzas[entry.path.rsplit("/", 1)[1]] = f.read()
    names = {n for n in stanzas if not n.endswith(".md5sums")}
    assert {"libc6", "libgeoip1", "nginx", "base-files"} <= names, names  # base-files: os-release
    assert not names & {"bash", "apt", "dpkg", "coreutils"}, names
    doc = validated(sbom_of(out), tmp_path)
    assert {p["name"] for p in doc["packages"] if p["SPDXID"] != "SPDXRef-Image"} == names
    admindir = tmp_path / "admin"
    (admindir / "info").mkdir(parents=True)
    (admindir / "status").write_bytes(b"\n".join(stanzas[n] for n in sorted(names)))
    query = subprocess.run(
        [require_tool("dpkg-query"), f"--admindir={admindir}", "-W", "-f", "${Package}\\n"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert query.returncode == 0, query.stderr
    assert set(query.stdout.split()) == names
