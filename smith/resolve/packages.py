"""Fetch resolved packages and check them: checksum always, OpenPGP signature on gpgcheck."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from smith.errors import PackageError
from smith.resolve.fetch import Fetcher
from smith.resolve.repo import Repo, RepoConfig
from smith.resolve.rpm import read_rpm

if TYPE_CHECKING:
    from smith.resolve.pgp import PublicKey
    from smith.resolve.solver import ResolvedPackage


def repo_keys(config: RepoConfig, fetcher: Fetcher) -> tuple[PublicKey, ...]:
    """The public keys a repository's `gpgkey` URLs name (files, file:// or http(s))."""
    if not config.gpgkey:
        raise PackageError(f"repository {config.shown} has gpgcheck on but no gpgkey")
    from smith.resolve.rpmsig import load_keys  # cryptography: only for gpgcheck

    return load_keys([fetcher.fetch_bytes(url) for url in config.gpgkey])


def fetch_packages(
    pkgs: Sequence[ResolvedPackage],
    fetcher: Fetcher,
    repos: Sequence[Repo | RepoConfig] = (),
    *,
    workers: int = 4,
) -> tuple[Path, ...]:
    """`fetch_package` for each package, `workers` downloads at a time, in `pkgs` order.

    Downloads are latency-bound; the order of the result (and of any error) does not depend
    on which finishes first.
    """
    if workers <= 1 or len(pkgs) <= 1:
        return tuple(fetch_package(p, fetcher, repos) for p in pkgs)
    from smith.stopsignals import block_stop_signals

    with concurrent.futures.ThreadPoolExecutor(workers, initializer=block_stop_signals) as pool:
        futures = [pool.submit(fetch_package, p, fetcher, repos) for p in pkgs]
        try:
            return tuple(f.result() for f in futures)
        except BaseException:
            # An error or a signal: the downloads not yet started must not start (leaving
            # the pool waits for every one of them), the running ones end at their bounds.
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def fetch_package(
    pkg: ResolvedPackage, fetcher: Fetcher, repos: Sequence[Repo | RepoConfig] = ()
) -> Path:
    """A local, verified copy of `pkg`.

    The file always matches the checksum from the metadata or the lock. When the package's
    repository (found in `repos` by id) has gpgcheck on, its signature must also verify
    against that repository's keys; a bad or missing signature names the package.
    """
    path = fetcher.fetch(pkg.url, pkg.checksum, pkg.size)
    configs = [r.config if isinstance(r, Repo) else r for r in repos]
    config = next((c for c in configs if c.id == pkg.repo_id), None)
    if config is not None and config.gpgcheck:
        from smith.resolve.rpmsig import verify_signature

        try:
            verify_signature(read_rpm(path), repo_keys(config, fetcher))
        except PackageError as err:
            # The cache names files by checksum: say where the package came from.
            raise PackageError(f"{err.message} (from {pkg.url})") from None
    return path
