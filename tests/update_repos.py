"""Repositories that have moved on: a base repository and an updates repository whose
updateinfo.xml (added with modifyrepo_c) holds advisories, built from the fixture universe.

  repos/base         the universe's packages with zlib at 1.0-1 only; no updateinfo.xml
  repos/base-trimmed base without openssl-libs 1.0-1, as a repository that dropped it
  repos/updates      zlib 1.0-2, openssl-libs 1.0-2 and docs-noarch 1.1-1 (which, unlike
                     1.0-1, requires ncurses-base), built here with rpmbuild; the new libz
                     carries a few more bytes at its end, so that an image holding it
                     differs; updateinfo.xml gzip-compressed
  repos/updates-xz, -zst, -bz2   the same packages, updateinfo.xml in that compression
  repos/updates-bad  the same packages, an updateinfo.xml that is not XML

The advisories (UPDATEINFO below) cover each rule of `smith outdated`: one that applies
(security, two CVEs), two for a package with no kept file (bugfix, and security, which
must not raise the security exit status), and four that must not be listed (a fix older
than the pin, a fix no repository offers, a package no lock holds, another arch).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.rpm_universe import SubPackage, Universe, _lib_files, _rpmbuild, _simple, _spec
from tests.tools import require_tool

UPDATEINFO = """<?xml version="1.0" encoding="UTF-8"?>
<updates>
  <update from="security@example.org" status="stable" type="security" version="2.0">
    <id>SMITH-2026-0001</id>
    <title>zlib: heap overflow in inflate</title>
    <severity>Important</severity>
    <issued date="2026-01-10 00:00:00"/>
    <references>
      <reference href="https://example.org/CVE-2026-1111" id="CVE-2026-1111" type="cve"/>
      <reference href="https://example.org/CVE-2026-2222" id="CVE-2026-2222" type="cve"/>
      <reference href="https://example.org/b/7" id="7" type="bugzilla"/>
    </references>
    <pkglist><collection short="u"><name>updates</name>
      <package name="zlib" epoch="0" version="1.0" release="2" arch="x86_64">
        <filename>zlib-1.0-2.x86_64.rpm</filename></package>
    </collection></pkglist>
  </update>
  <update from="docs@example.org" status="stable" type="bugfix" version="2.0">
    <id>SMITH-2026-0002</id>
    <title>docs-noarch: typo</title>
    <issued date="2026-02-01 00:00:00"/>
    <references/>
    <pkglist><collection short="u"><name>updates</name>
      <package name="docs-noarch" version="1.1" release="1" arch="noarch">
        <filename>docs-noarch-1.1-1.noarch.rpm</filename></package>
    </collection></pkglist>
  </update>
  <update type="security">
    <id>SMITH-2025-0099</id>
    <title>glibc: fixed long ago (older than any pin)</title>
    <severity>Critical</severity>
    <issued date="2025-01-01 00:00:00"/>
    <references><reference id="CVE-2025-9999" type="cve"/></references>
    <pkglist><collection><package name="glibc" version="0.9" release="1" arch="x86_64"/>
    </collection></pkglist>
  </update>
  <update type="security">
    <id>SMITH-2026-0003</id>
    <title>openssl-libs: fixed in a version no repository offers yet</title>
    <severity>Critical</severity>
    <issued date="2026-03-01 00:00:00"/>
    <references><reference id="CVE-2026-3333" type="cve"/></references>
    <pkglist><collection><package name="openssl-libs" version="9.0" release="1" arch="x86_64"/>
    </collection></pkglist>
  </update>
  <update type="security">
    <id>SMITH-2026-0004</id>
    <title>lsof: a package no lock holds</title>
    <severity>Low</severity>
    <issued date="2026-03-02 00:00:00"/>
    <pkglist><collection><package name="lsof" version="9.0" release="1" arch="x86_64"/>
    </collection></pkglist>
  </update>
  <update type="security">
    <id>SMITH-2026-0006</id>
    <title>docs-noarch: a security fix in a file no image keeps</title>
    <severity>Moderate</severity>
    <issued date="2026-03-04 00:00:00"/>
    <references><reference id="CVE-2026-6666" type="cve"/></references>
    <pkglist><collection><package name="docs-noarch" version="1.1" release="1" arch="noarch"/>
    </collection></pkglist>
  </update>
  <update type="enhancement">
    <id>SMITH-2026-0005</id>
    <title>zlib for i686 (another arch)</title>
    <issued date="2026-03-03 00:00:00"/>
    <pkglist><collection><package name="zlib" version="1.0" release="2" arch="i686"/>
    </collection></pkglist>
  </update>
</updates>
"""

# What `smith outdated` must find for the packages of the tests' recipes.
SECURITY_ZLIB = "SMITH-2026-0001"
BUGFIX_DOCS = "SMITH-2026-0002"
SECURITY_DOCS = "SMITH-2026-0006"

COMPRESSIONS = {"updates": "gz", "updates-xz": "xz", "updates-zst": "zstd", "updates-bz2": "bz2"}


def _new_packages(work: Path) -> list[Path]:
    """zlib 1.0-2, openssl-libs 1.0-2 and docs-noarch 1.1-1, built with rpmbuild."""
    specs = work / "specs"
    specs.mkdir(parents=True)
    install, files = _lib_files(["libssl.so.3", "libcrypto.so.3"])
    zlib_install, zlib_files = _lib_files(["libz.so.1"])
    # Bytes past the end of the ELF image: the loader never reads them, the layer differs.
    zlib_install.append(f"printf 'zlib 1.0-2' >> %{{buildroot}}{zlib_files[0]}")
    builds = {
        "zlib3": _spec(
            "zlib3",
            "1.0",
            "2",
            [
                SubPackage(
                    "zlib", "zlib, patched", zlib_install, zlib_files, ["Requires: filesystem"]
                )
            ],
            "w9.gzdio",
        ),
        "openssl2": _spec(
            "openssl2",
            "1.0",
            "2",
            [
                SubPackage(
                    "openssl-libs", "OpenSSL, rebuilt", install, files, ["Requires: filesystem"]
                )
            ],
            "w1.gzdio",
        ),
        "docs2": _spec(
            "docs2",
            "1.1",
            "1",
            # The new version needs a package the old one did not: `lock --update` adds it.
            [_simple("docs-noarch", ["Requires: ncurses-base"], arch="noarch")],
            "w9.gzdio",
        ),
    }
    out = []
    for name, text in builds.items():
        (specs / f"{name}.spec").write_text(text)
        _rpmbuild(specs / f"{name}.spec", work / f"top-{name}")
        out += sorted((work / f"top-{name}" / "RPMS").rglob("*.rpm"))
    return out


def _createrepo(repo: Path) -> None:
    subprocess.run(
        [require_tool("createrepo_c"), "--quiet", "--no-database", str(repo)], check=True
    )


def _add_updateinfo(repo: Path, text: str, compression: str, work: Path) -> None:
    # Debian's modifyrepo_c cannot write zstd; the one of the PyPI createrepo_c wheel can.
    tool = (
        str(Path(sys.executable).parent / "modifyrepo_c")
        if compression == "zstd"
        else require_tool("modifyrepo_c")
    )
    source = work / f"{repo.name}-in" / "updateinfo.xml"
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_text(text)
    subprocess.run(
        [tool, f"--compress-type={compression}", str(source), str(repo / "repodata")],
        check=True,
        capture_output=True,
    )


def build_update_repos(universe: Universe, dest: Path) -> Path:
    """The repositories above under dest/repos; returns dest."""
    work = dest / "work"
    main = universe.repo_dir("main")
    base = dest / "repos" / "base"
    base.mkdir(parents=True)
    for rpm in main.glob("*.rpm"):
        if rpm.name != "zlib-1.0-2.x86_64.rpm":
            os.link(rpm, base / rpm.name)
    _createrepo(base)
    trimmed = dest / "repos" / "base-trimmed"
    trimmed.mkdir()
    for rpm in base.glob("*.rpm"):
        if rpm.name != "openssl-libs-1.0-1.x86_64.rpm":
            os.link(rpm, trimmed / rpm.name)
    _createrepo(trimmed)
    newer = _new_packages(work)
    for name, compression in [*COMPRESSIONS.items(), ("updates-bad", "gz")]:
        repo = dest / "repos" / name
        repo.mkdir()
        for rpm in newer:
            shutil.copyfile(rpm, repo / rpm.name)
        _createrepo(repo)
        text = "<updates><update><id>broken" if name == "updates-bad" else UPDATEINFO
        _add_updateinfo(repo, text, compression, work)
    shutil.rmtree(work)
    return dest
