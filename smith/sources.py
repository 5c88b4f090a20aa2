"""From a recipe to its packages: repository configs, the lock or a fresh resolution.

Shared by `smith build` and `smith lock`, so that both read the same recipe keys the same
way: a relative `baseurl` or `gpgkey` is relative to the recipe, never to the current
directory.
"""

from __future__ import annotations

import os
from pathlib import Path

from smith.errors import RecipeError
from smith.recipe import Recipe
from smith.resolve.fetch import Fetcher, is_remote
from smith.resolve.lock import Lock, lock_path_for, pin_sha256
from smith.resolve.plan import plan_packages
from smith.resolve.repo import RepoConfig, load_repos
from smith.resolve.solver import ResolvedPackage, resolve


def relative_to(value: str, base: str) -> str:
    if is_remote(value) or value.startswith("file:") or os.path.isabs(value):
        return value
    return os.path.join(base, value)


def repo_configs(recipe: Recipe, recipe_path: str) -> tuple[RepoConfig, ...]:
    base = os.path.dirname(os.path.abspath(recipe_path))
    return tuple(
        RepoConfig(
            id=repo.id or repo.name or f"repo{i}",
            baseurl=relative_to(repo.baseurl, base),
            priority=repo.priority,
            gpgcheck=repo.gpgcheck,
            gpgkey=tuple(relative_to(k, base) for k in repo.gpgkey),
        )
        for i, repo in enumerate(recipe.repos)
        if repo.enabled
    )


def requests_of(recipe: Recipe, recipe_path: str) -> tuple[str, ...]:
    if not recipe.package_requests:
        raise RecipeError(f"{recipe_path}: no `package` or `packages` to build from")
    return recipe.package_requests


def plan_recipe(
    recipe: Recipe, recipe_path: str, fetcher: Fetcher, *, locked: bool = False
) -> tuple[ResolvedPackage, ...]:
    """The recipe's packages: smith.lock's when it fits the recipe, else resolved now."""
    requests = requests_of(recipe, recipe_path)
    configs = repo_configs(recipe, recipe_path)
    lock_path = lock_path_for(recipe_path)
    if not configs and not lock_path.exists() and not locked:
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
    )


def lock_recipe(recipe: Recipe, recipe_path: str, fetcher: Fetcher) -> tuple[Path, Lock]:
    """Resolve the recipe afresh and pin every package by sha256: (lock path, lock)."""
    requests = requests_of(recipe, recipe_path)
    configs = repo_configs(recipe, recipe_path)
    if not configs:
        raise RecipeError(f"{recipe_path}: `repos` must list at least one repository")
    packages = resolve(
        requests,
        load_repos(configs, fetcher),
        arch=recipe.arch,
        excludes=recipe.excludes,
        weak=recipe.weak,
    )
    lock = Lock(requests, recipe.arch, recipe.excludes, recipe.weak, pin_sha256(packages, fetcher))
    return lock_path_for(recipe_path), lock
