"""The few recipe keys `smith lock` needs, read without the full recipe model.

Isolated on purpose: the recipe (a pydantic model) belongs to the build issue, which will
replace `read_lock_inputs` with its own validated object. Until then this reads `package`
or `packages`, `repos` (baseurl, priority, gpgcheck, gpgkey), `arch`, `excludes` and
`weak`, and refuses anything malformed with an error that names the key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from smith.errors import RecipeError
from smith.resolve.fetch import is_remote
from smith.resolve.repo import RepoConfig
from smith.resolve.solver import DEFAULT_ARCH


@dataclass(frozen=True)
class LockInputs:
    requests: tuple[str, ...]
    repos: tuple[RepoConfig, ...]
    arch: str
    excludes: tuple[str, ...]
    weak: bool


def _strings(value: Any, key: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) and v for v in value):
        return tuple(value)
    raise RecipeError(f"recipe key {key!r} must be a string or a list of strings")


def _url(value: str, base: Path) -> str:
    # A relative baseurl or key path is relative to the recipe, not to the current directory.
    if is_remote(value) or value.startswith("file:") or os.path.isabs(value):
        return value
    return str(base / value)


def read_lock_inputs(recipe: str | os.PathLike[str]) -> LockInputs:
    path = Path(recipe)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise RecipeError(f"cannot read recipe {path}: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise RecipeError(f"{path} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe is a mapping")
    base = path.resolve().parent
    requests = _strings(data.get("packages", data.get("package", [])), "packages")
    if not requests:
        raise RecipeError(f"{path}: no `package` or `packages` to resolve")
    raw_repos = data.get("repos", [])
    if isinstance(raw_repos, dict):
        raw_repos = [{"id": k, **(v or {})} for k, v in raw_repos.items()]
    if not isinstance(raw_repos, list) or not raw_repos:
        raise RecipeError(f"{path}: `repos` must list at least one repository")
    repos = []
    for i, r in enumerate(raw_repos):
        where = f"repos[{i}]"
        if isinstance(r, str):
            r = {"baseurl": r}
        if not isinstance(r, dict) or not isinstance(r.get("baseurl"), str):
            raise RecipeError(f"{path}: {where}.baseurl must be a string")
        priority = r.get("priority", 99)
        if not isinstance(priority, int) or isinstance(priority, bool):
            raise RecipeError(f"{path}: {where}.priority must be an integer, not {priority!r}")
        gpgcheck = r.get("gpgcheck", False)
        if not isinstance(gpgcheck, bool):
            raise RecipeError(f"{path}: {where}.gpgcheck must be true or false")
        keys = _strings(r.get("gpgkey", []), f"{where}.gpgkey") if r.get("gpgkey") else ()
        repos.append(
            RepoConfig(
                id=str(r.get("id", r.get("name", f"repo{i}"))),
                baseurl=_url(r["baseurl"], base),
                priority=priority,
                gpgcheck=gpgcheck,
                gpgkey=tuple(_url(k, base) for k in keys),
            )
        )
    arch = data.get("arch", DEFAULT_ARCH)
    if not isinstance(arch, str) or not arch:
        raise RecipeError(f"{path}: `arch` must be a string")
    excludes = _strings(data["excludes"], "excludes") if data.get("excludes") else ()
    weak = data.get("weak", False)
    if not isinstance(weak, bool):
        raise RecipeError(f"{path}: `weak` must be true or false")
    return LockInputs(requests, tuple(repos), arch, excludes, weak)
