"""`package_db: true`: write the package database of the kept packages into the image, so
that vulnerability scanners (and `rpm -qa`) still see what a microcontainer holds.

`smith build` writes the rpm database of the packages it installed; `smith minimize
--package-db` keeps what the input image's own database says of the kept packages: an
rpmdb.sqlite of their headers, or distroless's /var/lib/dpkg/status.d/ for a Debian image.
"""

from __future__ import annotations

from collections.abc import Sequence

from smith.resolve.fetch import Fetcher
from smith.resolve.packages import fetch_package
from smith.resolve.repo import RepoConfig
from smith.resolve.rpm import read_rpm
from smith.resolve.solver import ResolvedPackage
from smith.sbom.dpkg import STATUS_D, DebPackage, read_status
from smith.sbom.rpmdb import DB_NAME, database_bytes, database_path, read_database
from smith.tree import FileTree, InlineBytes, Kind, copy_parents

ORIGIN = "smith (package db)"
# Scanners tell the distribution from os-release; a package that ships it keeps it.
OS_RELEASE = ("etc/os-release", "usr/lib/os-release")


def add_rpm_database(
    kept: FileTree,
    full: FileTree,
    resolved: Sequence[ResolvedPackage],
    fetcher: Fetcher,
    repos: Sequence[RepoConfig],
) -> str:
    """Add rpmdb.sqlite (the headers of the packages that gave `kept` a file) and the
    packages' os-release to `kept`; return the database's path."""
    for path in OS_RELEASE:
        keep_with_target(kept, full, path)
    owners = {e.origin for e in kept if e.kind is not Kind.DIR}
    headers = [
        read_rpm(fetch_package(pkg, fetcher, repos)).header
        for pkg in sorted(resolved, key=lambda p: p.nevra)
        if pkg.nevra in owners
    ]
    directory = database_path(full)
    copy_parents(kept, full, f"{directory}/{DB_NAME}")
    path = f"{directory}/{DB_NAME}"
    data = database_bytes(headers)
    kept.add_file(path, InlineBytes(data), 0o644, origin=ORIGIN, size=len(data))
    return path


def add_image_package_db(kept: FileTree, source: FileTree) -> list[str]:
    """For `smith minimize --package-db`: the database of the packages that gave `kept` a
    file, from the input image `source`'s own (rpmdb.sqlite, else dpkg status); the paths
    written (nothing when the input has no package database)."""
    for path in OS_RELEASE:
        keep_with_target(kept, source, path)
    # After os-release: the package that ships it (base-files) is one of the kept.
    kept_paths = {e.path for e in kept if e.kind is not Kind.DIR}
    installed = read_database(source)
    if installed:
        headers = sorted(
            (p.header for p in installed if kept_paths.intersection(p.files)),
            key=lambda h: tuple(h.string(tag) for tag in (1000, 1001, 1002, 1022)),
        )
        directory = database_path(source)
        path = f"{directory}/{DB_NAME}"
        copy_parents(kept, source, path)
        data = database_bytes(headers)
        kept.add_file(path, InlineBytes(data), 0o644, origin=ORIGIN, size=len(data))
        return [path]
    return add_status_d(kept, source, read_status(source), kept_paths)


def add_status_d(
    kept: FileTree, source: FileTree, packages: Sequence[DebPackage], kept_paths: set[str]
) -> list[str]:
    """distroless's layout: status.d/<package> holds the package's status stanza, and
    status.d/<package>.md5sums its file list with digests, for each kept package."""
    written = []
    for package in sorted(packages, key=lambda p: p.name):
        if not kept_paths.intersection(package.files):
            continue
        documents = [(f"{STATUS_D}/{package.name}", package.stanza.encode() + b"\n")]
        if package.md5sums:
            documents.append((f"{STATUS_D}/{package.name}.md5sums", package.md5sums))
        for path, data in documents:
            copy_parents(kept, source, path)
            kept.add_file(path, InlineBytes(data), 0o644, origin=ORIGIN, size=len(data))
            written.append(path)
    return written


def keep_with_target(kept: FileTree, full: FileTree, path: str) -> None:
    entry = full.get(path)
    if entry is None or path in kept or entry.kind not in (Kind.FILE, Kind.SYMLINK):
        return
    copy_parents(kept, full, path)
    kept.add(entry)
    if entry.kind is Kind.SYMLINK:
        target = full.resolve(path)
        if target != path:
            keep_with_target(kept, full, target)
