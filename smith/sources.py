"""From a recipe to its packages: repository configs, the lock or a fresh resolution.

Shared by `smith build` and `smith lock`, so that both read the same recipe keys the same
way: a relative `baseurl` or `gpgkey` is relative to the recipe, never to the current
directory.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from smith.errors import RecipeError
from smith.recipe import Recipe
from smith.resolve.fetch import Fetcher, is_remote
from smith.resolve.localrepo import LOCAL_REPO_ID, is_local_rpm, local_repo
from smith.resolve.lock import Lock, lock_path_for, pin_sha256
from smith.resolve.plan import plan_packages
from smith.resolve.repo import Repo, RepoConfig, load_repos
from smith.resolve.rpm import read_rpm
from smith.resolve.solver import ResolvedPackage, resolve


def relative_to(value: str, base: str) -> str:
    if is_remote(value) or value.startswith("file:") or os.path.isabs(value):
        return value
    return os.path.join(base, value)


def url_relative_to(value: str, base: str) -> str:
    """A `baseurl` or `gpgkey`: relative to the recipe, except a URL of any scheme (ftp://
    too), left whole so that an unsupported one is named as such rather than looked for as
    a directory below the recipe."""
    return value if len(urllib.parse.urlsplit(value).scheme) > 1 else relative_to(value, base)


def repo_configs(recipe: Recipe, recipe_path: str) -> tuple[RepoConfig, ...]:
    base = os.path.dirname(os.path.abspath(recipe_path))
    return tuple(
        RepoConfig(
            id=repo.id or repo.name or f"repo{i}",
            baseurl=url_relative_to(expand_basearch(repo.baseurl, recipe.arch), base),
            priority=repo.priority,
            gpgcheck=repo.gpgcheck,
            gpgkey=tuple(url_relative_to(k, base) for k in repo.gpgkey),
            named=bool(repo.id or repo.name),
        )
        for i, repo in enumerate(recipe.repos)
        if repo.enabled
    )


def expand_basearch(url: str, arch: str) -> str:
    """yum's $basearch in a baseurl: each architecture of a recipe resolves in its own
    repository, as distributions publish them (.../os/$basearch/)."""
    return url.replace("${basearch}", arch).replace("$basearch", arch)


def requests_of(recipe: Recipe, recipe_path: str) -> tuple[str, ...]:
    if not recipe.package_requests:
        raise RecipeError(
            f"{recipe_path}: no `package` or `packages` (nor a rootfs/ beside it) to build from"
        )
    return recipe.package_requests


def local_files(
    requests: tuple[str, ...], recipe_path: str, fetcher: Fetcher
) -> tuple[tuple[str, ...], tuple[Repo, ...]]:
    """Requests with local `.rpm` files replaced by their package names, and the
    repository of those files (none when there are none)."""
    base = os.path.dirname(os.path.abspath(recipe_path))
    paths = {r: Path(os.path.normpath(relative_to(r, base))) for r in requests if is_local_rpm(r)}
    if not paths:
        return requests, ()
    repo = local_repo(list(paths.values()), fetcher)  # refuses a missing file by name
    names = {r: read_rpm(p).name for r, p in paths.items()}
    return tuple(names.get(r, r) for r in requests), (repo,)


def plan_recipe(
    recipe: Recipe,
    recipe_path: str,
    fetcher: Fetcher,
    *,
    locked: bool = False,
    lock_path: Path | None = None,
    loaded: dict[RepoConfig, Repo] | None = None,
) -> tuple[ResolvedPackage, ...]:
    """The recipe's packages: smith.lock's (or `lock_path`'s) when it fits the recipe, else
    resolved now (in repositories `loaded` already has, if it has them)."""
    written = requests_of(recipe, recipe_path)
    configs = repo_configs(recipe, recipe_path)
    lock_path = lock_path or lock_path_for(recipe_path)
    requests, local = local_files(written, recipe_path, fetcher)
    if not configs and not local and not lock_path.exists() and not locked:
        raise RecipeError(f"{recipe_path}: no `repos` to find {', '.join(requests)} in")
    return plan_packages(
        requests,
        configs,
        fetcher,
        arch=recipe.arch,
        excludes=recipe.excludes,
        weak=recipe.weak,
        lock_path=lock_path,
        locked=locked,
        lock_requests=written,
        extra_repos=local,
        loaded=loaded,
    )


def recipe_repos(
    recipe: Recipe,
    recipe_path: str,
    fetcher: Fetcher,
    *,
    updateinfo: bool = False,
    loaded: dict[RepoConfig, Repo] | None = None,
) -> tuple[tuple[str, ...], tuple[Repo, ...]]:
    """(the requests as libsolv takes them, every repository they are resolved in)."""
    written = requests_of(recipe, recipe_path)
    configs = repo_configs(recipe, recipe_path)
    requests, local = local_files(written, recipe_path, fetcher)
    if not configs and not local:
        raise RecipeError(f"{recipe_path}: `repos` must list at least one repository")
    return requests, (
        *local,
        *load_repos(configs, fetcher, updateinfo=updateinfo, loaded=loaded),
    )


def lock_recipe(recipe: Recipe, recipe_path: str, fetcher: Fetcher) -> tuple[Path, Lock]:
    """Resolve the recipe afresh and pin every package by sha256: (lock path, lock)."""
    requests, repos = recipe_repos(recipe, recipe_path, fetcher)
    packages = resolve(
        requests, repos, arch=recipe.arch, excludes=recipe.excludes, weak=recipe.weak
    )
    return pin_recipe(recipe, recipe_path, fetcher, packages)


def pin_recipe(
    recipe: Recipe, recipe_path: str, fetcher: Fetcher, packages: Sequence[ResolvedPackage]
) -> tuple[Path, Lock]:
    """The lock of `packages` (pinned by sha256) for the recipe: (lock path, lock)."""
    portable = portable_packages(recipe, recipe_path, pin_sha256(packages, fetcher))
    written = requests_of(recipe, recipe_path)
    lock = Lock(written, recipe.arch, recipe.excludes, recipe.weak, portable)
    return lock_path_for(recipe_path), lock


def portable_packages(
    recipe: Recipe, recipe_path: str, packages: Sequence[ResolvedPackage]
) -> tuple[ResolvedPackage, ...]:
    """`packages` as a lock records them: the URL of one the recipe names by a relative
    path relative to the lock (reading a lock makes them absolute again)."""
    base = lock_path_for(recipe_path).parent
    return tuple(
        replace(p, url=os.path.relpath(p.url, base))
        if named_relative(p, recipe, recipe_path)
        else p
        for p in packages
    )


def named_relative(pkg: ResolvedPackage, recipe: Recipe, recipe_path: str) -> bool:
    """Whether the recipe names where `pkg` is by a relative path (a `baseurl` beside it, a
    `./x.rpm`): the lock then records a path relative to itself, so that a checkout that
    moves keeps a lock that works (and the same lock wherever it is locked)."""
    base = os.path.dirname(os.path.abspath(recipe_path))
    if pkg.repo_id == LOCAL_REPO_ID:
        # Local files are named by their resolved path (see localrepo.py).
        named = [r for r in recipe.package_requests if is_local_rpm(r) and not os.path.isabs(r)]
        return any(os.path.realpath(os.path.join(base, r)) == pkg.url for r in named)
    for i, repo in enumerate(recipe.repos):
        if (repo.id or repo.name or f"repo{i}") == pkg.repo_id and repo.enabled:
            written = repo.baseurl
            return not urllib.parse.urlsplit(written).scheme and not os.path.isabs(written)
    return False
