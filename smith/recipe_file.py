"""Which file is the recipe: apart from reading it, so that finding it loads no YAML and
no schema (a build taken from the cache needs neither)."""

from __future__ import annotations

import os

DEFAULT_RECIPE = "smith.yaml"


def find_recipe(path: str | None) -> str:
    """The recipe to build: the argument, or `smith.yaml` in the current directory."""
    if path:
        return os.path.join(path, DEFAULT_RECIPE) if os.path.isdir(path) else path
    return DEFAULT_RECIPE
