"""The repository of crashcart's toolbox extension (`crashcart toolbox build --extra-repo`).

tcpdump, ltrace, bash, openssl, readelf, objdump, drill (for dig) and jq, packaged from the
host's Debian binaries like the rest of the fixture universe (tests/rpm_universe.py), but
as a repository of their own: the lead's golden digests are recorded from a frozen copy of
the universe (../shared/universe) that cannot gain packages, so the default toolbox recipe
stays as it is and the extension is added to it when asked for.

One package, crashcart-toolbox-extra: the programs, and the libraries they need beyond
glibc (which the universe's glibc package provides) in a directory of their own named by
each program's RPATH, so no file clashes with a universe package.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from crashcart.toolbox import EXTRA_PACKAGE
from tests.rpm_universe import (
    LIB_GROUPS,
    SubPackage,
    _createrepo,
    _rpmbuild,
    _spec,
    debian_package,
    ldd_closure,
    tool_source,
)
from tests.tools import require_tool

# packaged path -> host source (a path, or deb:PACKAGE/PATH fetched with apt-get download)
EXTRA_TOOLS = {
    "/usr/sbin/tcpdump": "deb:tcpdump/usr/bin/tcpdump",
    "/usr/bin/ltrace": "deb:ltrace/usr/bin/ltrace",
    "/usr/bin/bash": "/usr/bin/bash",
    "/usr/bin/openssl": "/usr/bin/openssl",
    "/usr/bin/readelf": "/usr/bin/readelf",
    "/usr/bin/objdump": "/usr/bin/objdump",
    "/usr/bin/drill": "deb:ldnsutils/usr/bin/drill",
    "/usr/bin/jq": "/usr/bin/jq",
}
# Libraries of those programs that the host may not have installed.
LIBRARY_DEBS = ("libpcap0.8", "libldns3", "libibverbs1")
PRIVATE_LIBDIR = "/usr/lib/crashcart-extra"


def build_extra_repo(dest: Path) -> Path:
    """Build the repository into dest/repo; its path."""
    patchelf = require_tool("patchelf")
    work = Path(tempfile.mkdtemp(prefix="crashcart-extra-"))
    try:
        payload = work / "payload"
        lib_paths = []
        for deb in LIBRARY_DEBS:
            root = debian_package(deb)[1]
            lib_paths += [
                str(root / "usr/lib/x86_64-linux-gnu"),
                str(root / "lib/x86_64-linux-gnu"),
            ]
        install, files = [], []
        sources = {path: os.path.realpath(tool_source(src)) for path, src in EXTRA_TOOLS.items()}
        for path, source in sources.items():
            target = payload / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            target.chmod(0o755)
            # DT_RPATH, not RUNPATH: it also applies to what the libraries load.
            subprocess.run(
                [patchelf, "--force-rpath", "--set-rpath", PRIVATE_LIBDIR, str(target)], check=True
            )
            install.append(f"install -D -m 0755 {target} %{{buildroot}}{path}")
            files.append(path)
        env = {**os.environ, "LD_LIBRARY_PATH": ":".join(lib_paths)}
        old = os.environ.get("LD_LIBRARY_PATH")
        os.environ["LD_LIBRARY_PATH"] = env["LD_LIBRARY_PATH"]  # ldd_closure's ldd reads it
        try:
            closure = ldd_closure(list(sources.values()))
        finally:
            if old is None:
                del os.environ["LD_LIBRARY_PATH"]
            else:
                os.environ["LD_LIBRARY_PATH"] = old
        missing = [so for so, host in closure.items() if host == "not"]
        assert not missing, f"libraries not found for the extension: {missing}"
        for soname in sorted(set(closure) - set(LIB_GROUPS["glibc"])):
            install.append(
                f"install -D -m 0755 {os.path.realpath(closure[soname])} "
                f"%{{buildroot}}{PRIVATE_LIBDIR}/{soname}"
            )
            files.append(f"{PRIVATE_LIBDIR}/{soname}")
        package = SubPackage(
            EXTRA_PACKAGE,
            "crashcart's toolbox extension",
            install,
            files,
            # The private libraries are found through RPATH, not provided to anyone.
            ["AutoReqProv: no", "Requires: glibc"],
        )
        spec = work / "extra.spec"
        spec.write_text(_spec("crashcart-extra", "1.0", "1", [package], "w9.gzdio"))
        _rpmbuild(spec, work / "top")
        repo = dest / "repo"
        repo.mkdir(parents=True)
        for rpm in (work / "top" / "RPMS").rglob("*.rpm"):
            shutil.copy(rpm, repo / rpm.name)
        _createrepo(repo)
        return repo
    finally:
        shutil.rmtree(work, ignore_errors=True)
