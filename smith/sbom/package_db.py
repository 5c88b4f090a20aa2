"""`package_db: true`: write the package database of the kept packages into the image, so
that vulnerability scanners (and `rpm -qa`) still see what a microcontainer holds."""

from __future__ import annotations

from collections.abc import Sequence

from smith.paths import parent_paths
from smith.resolve.fetch import Fetcher
from smith.resolve.packages import fetch_package
from smith.resolve.repo import RepoConfig
from smith.resolve.rpm import read_rpm
from smith.resolve.solver import ResolvedPackage
from smith.sbom.rpmdb import DB_NAME, database_bytes, database_path
from smith.tree import Entry, FileTree, InlineBytes, Kind

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
    add_parents(kept, full, f"{directory}/{DB_NAME}")
    path = f"{directory}/{DB_NAME}"
    data = database_bytes(headers)
    kept.add_file(path, InlineBytes(data), 0o644, origin=ORIGIN, size=len(data))
    return path


def keep_with_target(kept: FileTree, full: FileTree, path: str) -> None:
    entry = full.get(path)
    if entry is None or path in kept or entry.kind not in (Kind.FILE, Kind.SYMLINK):
        return
    add_parents(kept, full, path)
    kept.add(entry)
    if entry.kind is Kind.SYMLINK:
        target = full.resolve(path)
        if target != path:
            keep_with_target(kept, full, target)


def add_parents(kept: FileTree, full: FileTree, path: str) -> None:
    for parent in parent_paths(path):
        if parent not in kept:
            entry = full.get(parent)
            kept.add(
                entry
                if entry is not None and entry.kind is Kind.DIR
                else Entry(parent, Kind.DIR, mode=0o755)
            )
