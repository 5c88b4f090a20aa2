"""Debian's package database in an image: /var/lib/dpkg/status (the installed packages'
control stanzas) and /var/lib/dpkg/info/<package>.list (their files).

Read for `smith minimize` of a Debian image: the SBOM names the packages the kept files
come from, and `--package-db` writes what distroless images carry instead of a status file,
one stanza per kept package in /var/lib/dpkg/status.d/<package> (scanners read that
directory; the files of a package are in its `.md5sums` there, as distroless writes them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from smith.errors import SmithError
from smith.sbom.inventory import PackageInfo, purl_namespace
from smith.tree import FileTree, Kind

STATUS = "var/lib/dpkg/status"
INFO = "var/lib/dpkg/info"
STATUS_D = "var/lib/dpkg/status.d"
MAX_STATUS_BYTES = 64 << 20  # a status file of every Debian package is ~40 MiB
FIELD = re.compile(r"^([A-Za-z0-9][A-Za-z0-9-]*):[ \t]*(.*)$")


@dataclass(frozen=True)
class DebPackage:
    stanza: str  # as the status file has it, without the blank line after it
    fields: tuple[tuple[str, str], ...]  # first lines of the fields, in order
    files: tuple[str, ...]  # root-relative paths of its .list, directories left out
    md5sums: bytes  # its info/<package>.md5sums, if any

    def field(self, name: str) -> str:
        return next((v for k, v in self.fields if k.lower() == name.lower()), "")

    @property
    def name(self) -> str:
        return self.field("Package")


def read_text(tree: FileTree, path: str, limit: int = MAX_STATUS_BYTES) -> bytes | None:
    entry = tree.lookup(path)
    if entry is None or entry.kind is not Kind.FILE or entry.content is None:
        return None
    with entry.content.open() as f:
        return f.read(limit)


def read_status(tree: FileTree) -> tuple[DebPackage, ...]:
    """The installed packages of the image's dpkg database (none if it has no status)."""
    data = read_text(tree, STATUS)
    if data is None:
        return ()
    packages = []
    for stanza in re.split(r"\n\s*\n", data.decode("utf-8", "replace").strip("\n")):
        fields = tuple(
            (m.group(1), m.group(2).strip())
            for line in stanza.splitlines()
            if (m := FIELD.match(line))
        )
        package = DebPackage(stanza, fields, (), b"")
        if not package.name or "installed" not in package.field("Status").split()[-1:]:
            continue
        names = (f"{package.name}:{package.field('Architecture')}", package.name)
        listed = next((d for n in names if (d := read_text(tree, f"{INFO}/{n}.list"))), b"")
        md5sums = next((d for n in names if (d := read_text(tree, f"{INFO}/{n}.md5sums"))), b"")
        files = tuple(
            path
            for line in listed.decode("utf-8", "surrogateescape").splitlines()
            if (path := in_tree(tree, line)) and not is_dir(tree, path)
        )
        packages.append(DebPackage(stanza, fields, files, md5sums))
    return tuple(packages)


def in_tree(tree: FileTree, listed: str) -> str:
    """Where a path a package database lists is in the image: on a merged /usr, dpkg's
    /lib/x86_64-linux-gnu/libc.so.6 is usr/lib/x86_64-linux-gnu/libc.so.6 (the parents'
    symlinks followed, not the last name's). "" for the root or a name that is no path."""
    path = listed.strip().strip("/")
    if not path or path == ".":
        return ""
    try:
        return tree.resolve(path, follow_last=False)
    except SmithError:  # a loop, or a name that climbs out: kept as the database says
        return path


def is_dir(tree: FileTree, path: str) -> bool:
    # dpkg lists directories too; on a merged /usr, /lib is a symlink to one (lookup
    # follows it) and names no file of the package.
    entry = tree.lookup(path)
    return entry is not None and entry.kind is Kind.DIR


def deb_info(package: DebPackage, vendor: str) -> PackageInfo:
    version = package.field("Version")
    epoch, _, rest = version.rpartition(":") if ":" in version else ("0", "", version)
    upstream, dash, revision = rest.rpartition("-")
    if not dash:
        upstream, revision = rest, ""
    source = package.field("Source").split(" ")[0] or package.name
    return PackageInfo(
        kind="deb",
        name=package.name,
        version=upstream,
        release=revision,
        epoch=int(epoch) if epoch.isdigit() else 0,
        arch=package.field("Architecture"),
        vendor=vendor,
        source_package=source,
        summary=package.field("Description"),
        homepage=package.field("Homepage"),
    )


def os_vendor(tree: FileTree) -> str:
    """The distribution's ID from os-release ("debian", "ubuntu"): the purl namespace."""
    for path in ("etc/os-release", "usr/lib/os-release"):
        data = read_text(tree, path, 1 << 16)
        if data is None:
            continue
        for line in data.decode("utf-8", "replace").splitlines():
            if line.startswith("ID="):
                return purl_namespace(line[3:].strip().strip("\"'"))
    return "debian"
