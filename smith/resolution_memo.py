"""The resolution memo: an unlocked warm build finds its build key without resolving.

A build without a lock resolves its packages against the repositories as they are now, so
its build key (smith/buildkey.py) is known only after libsolv ran over primary.xml — and
before that, the recipe's schema, the solver and the writer are loaded: most of a warm
build. But a resolution is a pure function of what it reads: the recipe (its bytes, and
where it is: a relative baseurl is relative to it), smith.lock's bytes, the options that
choose what is resolved (--arch, --locked), smith itself and libsolv's version, and each
repository's repomd.xml (which pins primary and filelists by checksum). The memo records,
under the digest of all of that but the repositories, each repomd.xml's URL and sha256 and
the packages the resolution gave (NEVRA + sha256, in order).

A warm build then asks each repository whether its repomd.xml is still the one recorded —
a conditional request answered 304 (smith/resolve/revalidate.py), or a local file's bytes
— and, when every one is, has the packages, so the build key, and copies the build from the
cache as a locked build does, before the recipe's schema, the solver or the writer loads.
Anything else (a repository changed, cannot be asked, --offline, a damaged memo, no cache
entry) is a miss: the build runs in full, as it would without a memo, and records the memo
anew. A memo only ever leads to a build the cache recorded, which validated.

Not memoized: recipes installing local `.rpm` files (their bytes are read by the
resolution), fleet runs, builds the build cache does not record (smith/buildcache.py).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from smith.atomic import atomic_path, remove_path
from smith.buildcache import (
    BuildCache,
    CachedBuild,
    Reuse,
    cache_dir_of,
    cached_report,
    pins_of,
    read_build_inputs,
)
from smith.buildkey import BuildInputs, PackagePin, canonical, file_sha256

if TYPE_CHECKING:
    from smith.build_options import BuildOptions
    from smith.recipe import Recipe
    from smith.resolve.repo import Repo
    from smith.resolve.solver import ResolvedPackage

log = logging.getLogger(__name__)

MEMO_VERSION = 1
MEMO_BYTES = 16 << 20  # a memo lists repositories and packages: far below this
_solver: list[str] = []  # computed once per process


@dataclass(frozen=True)
class Memo:
    repos: tuple[tuple[str, str], ...]  # (repomd.xml URL, its sha256)
    packages: tuple[PackagePin, ...]
    named: Mapping[str, str]  # what the validated recipe names (`profile`): a path


def solver_version() -> str:
    """libsolv's binding as installed (its dist-info's name), read without importing it:
    another libsolv may resolve the same request differently."""
    if not _solver:
        spec = importlib.util.find_spec("solv")
        found = ""
        if spec is not None and spec.origin:
            site = os.path.dirname(os.path.dirname(spec.origin))
            with os.scandir(site) as entries:
                names = sorted(e.name for e in entries if e.name.startswith("solv-"))
            found = ",".join(n for n in names if n.endswith(".dist-info"))
        _solver.append(found)
    return _solver[0]


def memo_key(inputs: BuildInputs, recipe_path: str) -> str:
    """What a resolution reads, but the repositories: the build's inputs (recipe bytes,
    rootfs/, settings, smith's source), smith.lock, where the recipe is, libsolv, the
    machine (an omitted arch is the host's)."""
    doc = {
        "version": MEMO_VERSION,
        "inputs": replace(inputs, named={}).key(()),
        "lock": hashlib.sha256(inputs.lock).hexdigest() if inputs.lock is not None else None,
        "recipe_dir": os.path.dirname(os.path.abspath(recipe_path)),
        "solver": solver_version(),
        "machine": os.uname().machine,
    }
    return hashlib.sha256(canonical(doc)).hexdigest()


def memo_path(cache_dir: str, key: str) -> str:
    return os.path.join(cache_dir, "resolutions", key + ".json")


def load_memo(path: str, key: str) -> Memo | None:
    """The memo at `path`, or None when there is none; a damaged one is removed (the build
    that follows writes it anew)."""
    try:
        with open(path, "rb") as f:
            data = f.read(MEMO_BYTES + 1)
    except OSError:
        return None  # none yet (or unreadable: the build runs and writes it)
    try:
        if len(data) > MEMO_BYTES:
            raise ValueError("too large")
        doc = json.loads(data)
        if doc["version"] != MEMO_VERSION or doc["key"] != key:
            raise ValueError("another key")
        memo = Memo(
            tuple((str(url), str(sha)) for url, sha in doc["repos"]),
            tuple(PackagePin(n, int(e), v, r, a, s) for n, e, v, r, a, s in doc["packages"]),
            {str(k): str(v) for k, v in doc["named"].items()},
        )
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as err:
        log.warning("the resolution memo %s is damaged (%s): resolving again", path, err)
        remove_path(path)
        return None
    return memo


def write_memo(path: str, key: str, memo: Memo) -> None:
    doc = {
        "version": MEMO_VERSION,
        "key": key,
        "repos": [list(r) for r in memo.repos],
        "packages": [p.row() for p in memo.packages],
        "named": dict(memo.named),
    }
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            f.write(canonical(doc))
    except OSError as err:  # a memo that cannot be written costs only speed
        log.warning("cannot write the resolution memo %s: %s", path, err.strerror)


def remember(
    reuse: Reuse,
    recipe: Recipe,
    recipe_path: str,
    repos: Iterable[Repo],
    packages: Sequence[ResolvedPackage],
) -> None:
    """Record the resolution a build made (`repos`: the repositories it loaded)."""
    from smith.resolve.localrepo import is_local_rpm

    loaded = tuple(repos)
    if any(is_local_rpm(r) for r in recipe.package_requests) or any(
        not r.repomd_sha256 for r in loaded
    ):
        return
    from smith.resolve.fetch import join_url

    memo = Memo(
        tuple(
            sorted(
                (join_url(r.config.baseurl, "repodata/repomd.xml"), r.repomd_sha256) for r in loaded
            )
        ),
        pins_of(packages),
        {"profile": recipe.profile} if recipe.profile else {},
    )
    key = memo_key(reuse.inputs, recipe_path)
    write_memo(memo_path(cache_dir_of(reuse.options), key), key, memo)


def restore_memoized(recipe_path: str, options: BuildOptions) -> CachedBuild | None:
    """The build of an unlocked recipe whose repositories did not change, from the build
    cache, without loading the recipe's schema or resolving: None when it is not there."""
    from smith.errors import SmithError
    from smith.oci.formats import choose_format

    if not options.build_cache or options.cache_to or options.locked:
        return None  # --locked: restore_locked answers; it resolves nothing
    try:
        inputs = read_build_inputs(recipe_path, options, choose_format)
    except (OSError, SmithError):
        return None
    if inputs is None:
        return None
    cache_dir = cache_dir_of(options)
    key = memo_key(inputs, recipe_path)
    memo = load_memo(memo_path(cache_dir, key), key)
    if memo is None:
        return None
    if not all(still_current(cache_dir, url, sha, options.offline) for url, sha in memo.repos):
        return None
    try:
        named = named_digests(memo.named, recipe_path)
    except OSError:
        return None
    build_key = replace(inputs, named=named).key(memo.packages)
    restored = BuildCache(cache_dir).restore(build_key, options.output)
    if restored is None:
        return None
    built = cached_report(*restored)
    return replace(built, cache={**built.cache, "resolution": "memo"})


def named_digests(named: Mapping[str, str], recipe_path: str) -> dict[str, str]:
    base = os.path.dirname(os.path.abspath(recipe_path))
    return {k: file_sha256(os.path.join(base, v)) for k, v in named.items()}


def still_current(cache_dir: str, url: str, sha256: str, offline: bool) -> bool:
    """Is repomd.xml at `url` still the one of this sha256? A local one is read; a remote
    one is asked conditionally, with the validators of the copy the fetcher kept, which
    must be that one. Never a download: anything but "yes" is a miss."""
    from smith.resolve.revalidate import is_remote, not_modified, read_kept

    if not is_remote(url):
        from smith.errors import SmithError
        from smith.resolve.fetch import Fetcher

        try:
            return hashlib.sha256(Fetcher(cache_dir).fetch_bytes(url)).hexdigest() == sha256
        except SmithError:
            return False
    if offline:
        return False  # as a build without the memo: --offline never asks a server
    kept = read_kept(Path(cache_dir), url)
    if kept is None or hashlib.sha256(kept[0]).hexdigest() != sha256:
        return False
    return not_modified(url, kept[1])
