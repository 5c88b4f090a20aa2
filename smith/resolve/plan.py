"""Which packages a build installs: the lock's when it fits, else a fresh resolution.

A build uses smith.lock when it is present and was made for the same request (same
packages asked for, arch, excludes and weak setting). `locked=True` (`smith build
--locked`) refuses to resolve anything at all: no lock, or a lock that does not cover the
recipe, is an error instead of a new resolution. Each architecture reads its own section
of the lock; one the lock has no section for is resolved afresh (or refused, `--locked`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from smith.errors import ResolveError
from smith.resolve.fetch import Fetcher
from smith.resolve.lock import (
    Lock,
    check_lock_covers,
    missing_section,
    old_lock_hint,
    read_lock_file,
)
from smith.resolve.repo import Repo, RepoConfig, load_repos
from smith.resolve.solver import ResolvedPackage, resolve

log = logging.getLogger(__name__)


def plan_packages(
    requests: Sequence[str],
    repos: Sequence[RepoConfig],
    fetcher: Fetcher,
    *,
    arch: str,
    excludes: Sequence[str] = (),
    weak: bool = False,
    lock_path: Path | None = None,
    locked: bool = False,
    lock_requests: Sequence[str] | None = None,
    extra_repos: Sequence[Repo] = (),
    loaded: dict[RepoConfig, Repo] | None = None,
) -> tuple[ResolvedPackage, ...]:
    """`lock_requests` are the requests as the recipe wrote them (what the lock records),
    when `requests` had to be rewritten (local files become package names); `extra_repos`
    are already loaded (the local files' repository); `loaded` keeps repositories between
    calls (a fleet build loads each repository once)."""
    written = list(lock_requests if lock_requests is not None else requests)
    lock: Lock | None = None
    if lock_path is not None and lock_path.exists():
        lock = read_lock_file(lock_path).section(arch)
        if lock is None:
            if locked:
                raise ResolveError(missing_section(lock_path, arch))
            log.warning("%s; resolving %s again", missing_section(lock_path, arch), arch)
    elif locked:
        hint = old_lock_hint(lock_path, arch) if lock_path is not None else ""
        raise ResolveError(f"--locked, but there is no lock at {lock_path}{hint}")
    elif lock_path is not None and old_lock_hint(lock_path, arch):
        log.warning("%s%s; resolving %s", lock_path, old_lock_hint(lock_path, arch), arch)
    if lock is not None:
        try:
            check_lock_covers(lock, written, arch=arch, excludes=excludes, weak=weak)
            if sorted(set(written)) == sorted(set(lock.requests)):
                return lock.packages
            raise ResolveError(f"{lock_path} was made for other packages")
        except ResolveError:
            if locked:
                raise
            log.warning("%s does not match the recipe; resolving again", lock_path)
    found = (*extra_repos, *load_repos(repos, fetcher, loaded=loaded))
    return resolve(requests, found, arch=arch, excludes=excludes, weak=weak)
