"""A small aarch64 package universe, made the way the x86_64 one is (rpm_universe.py).

Nothing can be cross-compiled here, so the files are Debian's own arm64 builds (`apt-get
download PKG:arm64`, which needs `dpkg --add-architecture arm64`: scripts/setup.sh),
repackaged by rpmbuild --target aarch64, whose dependency generator writes the real soname
Requires and Provides of aarch64 objects. Libraries go where Debian's arm64 ld.so looks
(/usr/lib/aarch64-linux-gnu), so qemu-aarch64-static runs the programs of an image.

Packages: filesystem and setup (noarch, aarch64's layout), glibc, zlib, libgcc, coreutils
(cat, echo, true: they need only libc), busybox (static, with /usr/bin/sh) and hello (GNU
hello: `hello -g TEXT` prints TEXT, the universe's x86_64 hello prints "hello from smith").
One repository, repos/main, metadata gzip. The `aarch64_universe` fixture serves it. The
.deb files are pinned by version and sha256 (PINNED_DEBS), so that what is built from the
universe can have golden digests. When Debian no longer serves a pinned version, the
universe is built from the versions it serves (every aarch64 test still runs) and says so
(`is_pinned`): only the golden-digest test cannot check then, and skips naming the drift.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.rpm_universe import (
    SubPackage,
    Universe,
    _createrepo,
    _rpmbuild,
    _spec,
    cached_universe,
    debian_package,
    filesystem_package,
    served,
)
from tests.tools import require_tool, unavailable

TRIPLET = "aarch64-linux-gnu"
LIBDIR = f"/usr/lib/{TRIPLET}"
DEBIAN_ARCH = "arm64"

# package -> (Debian package, [(path in the .deb, packaged path)])
LIBRARIES = {
    "glibc": (
        "libc6",
        [
            f"lib/{TRIPLET}/{name}"
            for name in (
                "ld-linux-aarch64.so.1",
                "libc.so.6",
                "libm.so.6",
                "libdl.so.2",
                "libpthread.so.0",
                "libresolv.so.2",
                "librt.so.1",
                "libnss_files.so.2",
                "libnss_dns.so.2",
            )
        ],
    ),
    "zlib": ("zlib1g", [f"lib/{TRIPLET}/libz.so.1", f"lib/{TRIPLET}/libz.so.1.2.13"]),
    "libgcc": ("libgcc-s1", [f"lib/{TRIPLET}/libgcc_s.so.1"]),
}
PROGRAMS = {
    "coreutils": (
        "coreutils",
        [("bin/cat", "/usr/bin/cat"), ("bin/echo", "/usr/bin/echo"), ("bin/true", "/usr/bin/true")],
    ),
    "busybox": ("busybox-static", [("bin/busybox", "/usr/bin/busybox")]),
    "hello": ("hello", [("usr/bin/hello", "/usr/bin/hello")]),
}
DEBIAN_PACKAGES = sorted(
    {deb for deb, _ in LIBRARIES.values()} | {deb for deb, _ in PROGRAMS.values()}
)
# The exact .deb files the universe is made of (version, sha256 of the file): images built
# from it are golden (tests/golden/platforms-hello.json) only if its bytes never change.
# Debian's mirrors serve a version until an update replaces it; then the pin can no longer
# be fetched on a machine that lacks it, and the universe is built from the served versions
# (the golden test skips, naming the drift): pin the new versions (`apt-cache policy
# PKG:arm64`, sha256sum of `apt-get download`) and record the goldens again.
PINNED_DEBS = {
    "busybox-static": (
        "1:1.35.0-4+deb12u1+b1",
        "732c9135564fc71337e0e05fb4da4d11e6c28c1834bce3e405e575afef2a52f5",
    ),
    "coreutils": ("9.1-1", "ec8f090a14c684879dce251254d8d9ed0876d4480f750d5807ef04e5435e1c4d"),
    "hello": ("2.10-3", "f7b20d304db0f3a18da28eb2000de2b0205eaa340c1d0fecec3b7c50acc932dc"),
    "libc6": (
        "2.36-9+deb12u14",
        "01f4330719fd4f65580e16ea5a0527f372fca750e8f588d26deaf09f2d3b1cf4",
    ),
    "libgcc-s1": (
        "12.2.0-14+deb12u1",
        "576926b283613db80168ddf76380a3bd877602778cf0d226caa7bfbfa71eacf3",
    ),
    "zlib1g": (
        "1:1.2.13.dfsg-1+deb12u1",
        "61477d8059daf1765683a73099cc17941e1970acb520fd238646dedf99eb16f6",
    ),
}


class DebianDrift(RuntimeError):
    """A pinned .deb cannot be had with its pinned bytes."""


def pinned_package(deb: str) -> tuple[Path, Path]:
    """The pinned arm64 .deb and its unpacked directory; DebianDrift if it cannot be
    fetched or its bytes are not the pinned ones."""
    version, sha256 = PINNED_DEBS[deb]
    try:
        path, root = debian_package(deb, DEBIAN_ARCH, version)
    except RuntimeError as err:
        raise DebianDrift(f"{err}: Debian no longer serves the pinned {deb} {version}") from None
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    if actual != sha256:
        raise DebianDrift(f"{path.name} has sha256 {actual}, not the pinned {sha256}")
    return path, root


DRIFT_NOTE = "drift.txt"  # in a universe built from other than the pinned .deb files


def _unpacked() -> tuple[dict[str, Path], str]:
    """The unpacked .deb files, and why they are not the pinned ones ("" when they are)."""
    try:
        return {deb: pinned_package(deb)[1] for deb in DEBIAN_PACKAGES}, ""
    except DebianDrift as err:
        return {deb: debian_package(deb, DEBIAN_ARCH)[1] for deb in DEBIAN_PACKAGES}, str(err)


def drift(universe: Universe) -> str:
    """Why `universe` is not made of the pinned .deb files ("" when it is)."""
    note = universe.root / DRIFT_NOTE
    return note.read_text() if note.exists() else ""


def _subpackages(roots: dict[str, Path]) -> list[SubPackage]:
    subs = [
        filesystem_package(LIBDIR, lib64=False),
        SubPackage(
            "setup",
            "System users, groups and the NSS configuration",
            [
                "mkdir -p %{buildroot}/etc",
                "printf 'root:x:0:0:root:/root:/bin/sh\\n' > %{buildroot}/etc/passwd",
                "printf 'root:x:0:\\n' > %{buildroot}/etc/group",
                "printf 'passwd: files\\ngroup: files\\n' > %{buildroot}/etc/nsswitch.conf",
            ],
            ["/etc/passwd", "/etc/group", "/etc/nsswitch.conf"],
            ["BuildArch: noarch", "Requires: filesystem"],
        ),
    ]
    for pkg, (deb, paths) in LIBRARIES.items():
        install = [f"mkdir -p %{{buildroot}}{LIBDIR}"]
        # cp -P: the .so.1 -> .so.1.2.13 links stay links, as in the .deb.
        install += [f"cp -P {roots[deb] / p} %{{buildroot}}{LIBDIR}/" for p in paths]
        files = [f"{LIBDIR}/{Path(p).name}" for p in paths]
        extra = ["Requires: filesystem"]
        if pkg == "glibc":
            # PT_INTERP of every arm64 program: /lib/ld-linux-aarch64.so.1 (/lib -> usr/lib).
            install.append(
                f"ln -s {TRIPLET}/ld-linux-aarch64.so.1"
                " %{buildroot}/usr/lib/ld-linux-aarch64.so.1"
            )
            files.append("/usr/lib/ld-linux-aarch64.so.1")
            extra.append("Provides: rtld(GNU_HASH)")
        subs.append(
            SubPackage(pkg, f"The {pkg} libraries (Debian {deb}:arm64)", install, files, extra)
        )
    for pkg, (deb, programs) in PROGRAMS.items():
        install = [
            f"install -D -m 0755 {roots[deb] / src} %{{buildroot}}{dest}" for src, dest in programs
        ]
        files = [dest for _, dest in programs]
        if pkg == "busybox":
            install.append("ln -s busybox %{buildroot}/usr/bin/sh")
            files.append("/usr/bin/sh")
        subs.append(SubPackage(pkg, f"Programs from Debian {deb}:arm64", install, files, []))
    return subs


def build_aarch64_universe(dest: Path) -> Universe:
    """Build the packages and repos/main under `dest` (which must not exist yet)."""
    work = Path(tempfile.mkdtemp(prefix="universe-aarch64-"))
    try:
        spec = work / "aarch64.spec"
        roots, drifted = _unpacked()
        spec.write_text(_spec("universe-aarch64", "1.0", "1", _subpackages(roots), "w3.zstdio"))
        _rpmbuild(spec, work / "top", "aarch64")
        main = dest / "repos" / "main"
        main.mkdir(parents=True)
        for rpm in (work / "top" / "RPMS").rglob("*.rpm"):
            shutil.copy2(rpm, main / rpm.name)
        _createrepo(main, "--general-compress-type", "gz")
        if drifted:
            (dest / DRIFT_NOTE).write_text(drifted)
        return Universe(dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def aarch64_universe_key() -> str:
    """A hash of this file (which pins the .deb files it repackages), the x86_64 universe's
    builder (whose helpers it uses) and the .deb files it would be built from now."""
    h = hashlib.sha256(Path(__file__).read_bytes())
    h.update((Path(__file__).parent / "rpm_universe.py").read_bytes())
    roots, drifted = _unpacked()
    h.update(drifted.encode())
    for deb in sorted(roots):
        h.update(f"{roots[deb].name}\n".encode())
    return h.hexdigest()[:16]


@pytest.fixture(scope="session")
def aarch64_universe(request: pytest.FixtureRequest) -> Iterator[Universe]:
    """The aarch64 universe, served over HTTP on 127.0.0.1 for the session; cached under
    pytest's cache dir like the x86_64 one (SMITH_UNIVERSE_REBUILD=1 rebuilds it)."""
    for tool in ("rpmbuild", "createrepo_c", "dpkg-deb", "apt-get"):
        require_tool(tool)
    cache_plugin = getattr(request.config, "cache", None)
    if cache_plugin is not None:
        cache = Path(cache_plugin.mkdir("smith-rpm-universe-aarch64"))
    else:
        cache = request.getfixturevalue("tmp_path_factory").mktemp("smith-rpm-universe-aarch64")
    try:
        key = aarch64_universe_key()
    except RuntimeError as err:  # apt-get cannot fetch even the served versions
        unavailable(f"the aarch64 universe's Debian packages: {err}")
        raise
    if os.environ.get("SMITH_UNIVERSE_REBUILD"):
        shutil.rmtree(cache / key, ignore_errors=True)
    yield from served(cached_universe(cache, key, build_aarch64_universe))
