"""The part of a smith.yaml recipe that `smith minimize` uses, when `package:` names an image
(as in the original smith, where `package:` could be an OCI image).

A deliberately small reader: the full recipe model (validation with the closest known key,
line and column) belongs to `smith build`'s smith/recipe.py; when that lands, this module
should become a thin call to it.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import yaml

from smith.errors import RecipeError
from smith.minimize import MinimizeOptions

KNOWN = {
    "package", "paths", "excludes", "nss", "root", "user", "groups", "mounts",
    "entrypoint", "cmd", "dir", "env", "labels", "ports", "gconv", "type", "mock", "parent",
}  # fmt: skip


IGNORED = {
    "type": "smith minimize reads the image that package: names, whatever its type",
    "mock": "smith never uses mock",
    "parent": "a minimized image is one layer of its own",
}
log = logging.getLogger(__name__)


def read_minimize_recipe(path: str, options: MinimizeOptions) -> tuple[str, MinimizeOptions]:
    """(the image the recipe names, `options` with the recipe's settings added)."""
    try:
        with open(path, "rb") as f:
            doc = yaml.safe_load(f)
    except FileNotFoundError:
        raise RecipeError(f"recipe {path!r} does not exist") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        raise RecipeError(f"{path}{where}: not valid YAML") from None
    if not isinstance(doc, dict):
        raise RecipeError(f"{path}: a recipe is a mapping of keys, not {type(doc).__name__}")
    for key in doc:
        if key not in KNOWN:
            raise RecipeError(f"{path}: unknown key {key!r}")
    for key, instead in IGNORED.items():
        if key in doc:
            log.warning("%s: %r is ignored: %s", path, key, instead)

    def strings(key: str) -> tuple[str, ...] | None:
        value = doc.get(key)
        if value is None:
            return None
        if isinstance(value, str):
            return (value,)
        if not isinstance(value, list) or not all(isinstance(v, str | int) for v in value):
            raise RecipeError(f"{path}: {key} must be a list of strings")
        return tuple(str(v) for v in value)

    def flag(key: str) -> bool:
        value = doc.get(key, False)
        if not isinstance(value, bool):
            raise RecipeError(f"{path}: {key} must be true or false, not {value!r}")
        return value

    package = doc.get("package", "")
    if not isinstance(package, str):
        raise RecipeError(f"{path}: package must be a string naming the image")
    env = doc.get("env") or {}
    labels = doc.get("labels") or {}
    if not isinstance(env, dict | list) or not isinstance(labels, dict):
        raise RecipeError(f"{path}: env and labels must be mappings")
    env_items = tuple(f"{k}={v}" for k, v in env.items()) if isinstance(env, dict) else tuple(env)
    user = str(doc.get("user") or "")
    if flag("root"):
        user = "0:0"
    gconv: Any = doc.get("gconv", False)
    if isinstance(gconv, list):
        gconv = tuple(str(g) for g in gconv)
    return package, replace(
        options,
        paths=(*options.paths, *(strings("paths") or ())),
        excludes=(*options.excludes, *(strings("excludes") or ())),
        nss=options.nss or flag("nss"),
        gconv=options.gconv or gconv,
        user=options.user or user,
        entrypoint=options.entrypoint or strings("entrypoint"),
        cmd=options.cmd or strings("cmd"),
        env=(*env_items, *options.env),
        labels=tuple(sorted({**{str(k): str(v) for k, v in labels.items()}}.items())),
        ports=tuple(str(p) if "/" in str(p) else f"{p}/tcp" for p in strings("ports") or ()),
        volumes=strings("mounts") or (),
        workdir=str(doc.get("dir") or options.workdir),
    )
