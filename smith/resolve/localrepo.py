"""Local `.rpm` files named by a recipe, as a repository libsolv can resolve against.

The PyPI build of libsolv cannot read RPM files itself (no librpm), so smith writes the
rpm-md `primary.xml` that createrepo would, from the packages' own headers: name, EVR,
arch, sha256, provides, requires and file list. The repository gets the best priority, so a
local file wins over a repository's package of the same name, as `dnf install ./x.rpm`
does. Its packages are used where they are, checked by sha256.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from pathlib import Path

from smith.errors import PackageError
from smith.resolve.fetch import Fetcher, cache_temp
from smith.resolve.repo import Repo, RepoConfig
from smith.resolve.rpm import SENSE_EQUAL, SENSE_GREATER, SENSE_LESS, Dependency, read_rpm

LOCAL_REPO_ID = "@local"
# Lower wins: local files come before every repository.
LOCAL_PRIORITY = -1000


def is_local_rpm(request: str) -> bool:
    return request.endswith(".rpm")


def _flags(dep: Dependency) -> str:
    sense = dep.flags & (SENSE_LESS | SENSE_GREATER | SENSE_EQUAL)
    return {
        SENSE_LESS: "LT",
        SENSE_GREATER: "GT",
        SENSE_EQUAL: "EQ",
        SENSE_LESS | SENSE_EQUAL: "LE",
        SENSE_GREATER | SENSE_EQUAL: "GE",
    }.get(sense, "")


def _entry(dep: Dependency) -> str:
    from xml.sax.saxutils import quoteattr

    attrs = f"name={quoteattr(dep.name)}"
    flags = _flags(dep)
    if flags and dep.version:
        epoch, _, rest = dep.version.rpartition(":")
        ver, _, rel = rest.partition("-")
        attrs += f' flags="{flags}" epoch={quoteattr(epoch or "0")} ver={quoteattr(ver)}'
        if rel:
            attrs += f" rel={quoteattr(rel)}"
    return f"<rpm:entry {attrs}/>"


def primary_xml(paths: Sequence[Path]) -> str:
    # Here, not at the top: xml.sax.saxutils imports urllib.request (http.client, ssl,
    # email), ~15 ms of every build, and only builds with local RPM files come here.
    from xml.sax.saxutils import quoteattr

    packages = []
    for path in paths:
        pkg = read_rpm(path)
        with open(path, "rb") as f:
            sha = hashlib.file_digest(f, "sha256").hexdigest()
        provides = "".join(_entry(d) for d in pkg.provides if _dep_safe(d))
        # rpmlib() capabilities describe rpm itself, not the root: createrepo drops them.
        requires = "".join(
            _entry(d) for d in pkg.requires if not d.name.startswith("rpmlib(") and _dep_safe(d)
        )
        # A name XML cannot carry (not UTF-8, a control character) is left out: the file
        # list serves only file dependencies (/bin/sh), never such names. The package is
        # still extracted from its own payload, every file included.
        files = "".join(f"<file>{_text(f.path)}</file>" for f in pkg.files if _xml_safe(f.path))
        for what, value in (
            ("name", pkg.name),
            ("arch", pkg.arch),
            ("version", pkg.version),
            ("release", pkg.release),
            ("path", str(path.resolve())),
        ):
            if not _xml_safe(value):
                raise PackageError(f"{path.name}: its {what} {value!r} is not UTF-8 text")
        packages.append(
            f'<package type="rpm"><name>{_text(pkg.name)}</name><arch>{_text(pkg.arch)}</arch>'
            f'<version epoch="{pkg.epoch or 0}" ver={quoteattr(pkg.version)} '
            f"rel={quoteattr(pkg.release)}/>"
            f'<checksum type="sha256" pkgid="YES">{sha}</checksum>'
            f'<size package="{os.path.getsize(path)}" installed="0" archive="0"/>'
            f"<location href={quoteattr(str(path.resolve()).lstrip('/'))}/>"
            f"<format><rpm:provides>{provides}</rpm:provides>"
            f"<rpm:requires>{requires}</rpm:requires>{files}</format></package>"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<metadata xmlns="http://linux.duke.edu/metadata/common" '
        f'xmlns:rpm="http://linux.duke.edu/metadata/rpm" packages="{len(packages)}">'
        + "".join(packages)
        + "</metadata>\n"
    )


# The characters XML 1.0 allows (no surrogates: those stand for bytes that are not UTF-8).
# A pattern, compiled (through re's cache) at its first use, not at import: its ranges
# take ~2 ms to compile, and only builds with local RPM files use it.
_XML_UNSAFE = "[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"


def _xml_safe(value: str) -> bool:
    return not re.search(_XML_UNSAFE, value)


def _dep_safe(dep: Dependency) -> bool:
    return _xml_safe(dep.name) and _xml_safe(dep.version)


def _text(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def local_repo(paths: Sequence[Path], fetcher: Fetcher) -> Repo:
    """A Repo of the given files, its metadata kept in the cache under its own digest."""
    for path in paths:
        if not path.is_file():
            raise PackageError(f"no such RPM file: {str(path)!r}")
    xml = primary_xml(paths).encode()
    digest = hashlib.sha256(xml).hexdigest()
    primary = fetcher.cache_dir / "metadata" / f"local-{digest}.xml"
    if not primary.exists():
        primary.parent.mkdir(parents=True, exist_ok=True)
        with cache_temp(primary) as tmp:
            tmp.write_bytes(xml)
            os.replace(tmp, primary)
    config = RepoConfig(LOCAL_REPO_ID, "/", priority=LOCAL_PRIORITY)  # hrefs are absolute
    return Repo(config, digest, primary, None)
