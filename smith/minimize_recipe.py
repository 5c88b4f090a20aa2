"""`smith minimize --recipe smith.yaml`: a recipe whose `package:` names an image, as in the
original smith (where `package:` could be an OCI image). The recipe is read and validated by
smith/recipe.py like any other; this module only maps its keys onto MinimizeOptions
(command-line options win over the recipe's)."""

from __future__ import annotations

import logging
import os
from dataclasses import replace

from smith.errors import RecipeError, UsageError
from smith.layering import merged_layering
from smith.minimize import MinimizeOptions
from smith.oci.compress import parse_compression
from smith.profile import recipe_profile
from smith.recipe_file import find_recipe
from smith.rootfs import rootfs_of
from smith.settings import merged

log = logging.getLogger(__name__)

# Keys that say how to get packages: meaningless when `package:` is an image.
IGNORED = ("packages", "repos", "parent", "libraries", "library_path")


def read_minimize_recipe(
    path: str,
    options: MinimizeOptions,
    *,
    compression: str | None = None,
    epoch: int | None = None,
    tag: str | None = None,
    layers: str | None = None,
    layer_budget: int | None = None,
) -> tuple[str, MinimizeOptions]:
    """(the image the recipe names, `options` with the recipe's settings added): the
    recipe's `compression`, `source_date_epoch`, `tag` and `layers` apply unless the flag
    (the argument) is given, as for every setting (smith/settings.py)."""
    # The recipe's schema (pydantic, yaml: ~170 ms of imports) only when there is a recipe:
    # `smith minimize IMAGE` has none.
    from smith.recipe import RuntimeSet, load_recipe

    recipe = load_recipe(path)
    if not recipe.package:
        raise RecipeError(f"{path}: `package:` must name the image to minimize")
    for key in IGNORED:
        if getattr(recipe, key):
            log.warning(
                "%s: %r is ignored: smith minimize reads the image `package:` names", path, key
            )
    user = "0:0" if recipe.root else recipe.user or ""
    runtime = recipe.runtime_libraries
    return recipe.package, replace(
        options,
        paths=merged("paths", options.paths, recipe),
        excludes=merged("excludes", options.excludes, recipe),
        nss=merged("nss", options.nss, recipe) or RuntimeSet.NSS in runtime,
        gconv=options.gconv or RuntimeSet.GCONV in runtime,
        no_runtime=merged("no_runtime_libraries", options.no_runtime, recipe),
        profile=options.profile or recipe_profile(recipe, path),
        user=options.user or user,
        entrypoint=merged("entrypoint", options.entrypoint, recipe),
        cmd=options.cmd or recipe.cmd,
        env=(*recipe.env, *options.env),
        labels=tuple(sorted({**recipe.labels, **dict(options.labels)}.items())),
        ports=options.ports or recipe.ports,
        volumes=options.volumes or recipe.mounts,
        workdir=options.workdir or recipe.dir or "",
        compression=parse_compression(merged("compression", compression, recipe)),
        epoch=merged("source_date_epoch", epoch, recipe),
        tag=merged("tag", tag, recipe) or "",
        rootfs=options.rootfs or rootfs_of(os.path.dirname(os.path.abspath(path))),
        mounts=(*options.mounts, *recipe.mounts),
        layering=merged_layering(
            layers, layer_budget, recipe.layers.layering() if recipe.layers else None
        ),
    )


def recipe_image(
    image: str | None,
    recipe: str | None,
    options: MinimizeOptions,
    verb: str,
    *,
    compression: str | None = None,
    tag: str | None = None,
    layers: str | None = None,
    layer_budget: int | None = None,
) -> tuple[str, MinimizeOptions]:
    """The image a command line names, or its --recipe's `package:` (not two different
    ones), and the options with the recipe's settings. A --recipe may be a directory
    holding smith.yaml, as `smith build DIR` takes one."""
    if recipe:
        named, options = read_minimize_recipe(
            find_recipe(recipe),
            options,
            compression=compression,
            tag=tag,
            layers=layers,
            layer_budget=layer_budget,
        )
        if image and named and image != named:
            raise UsageError(f"the recipe names the image {named!r}, the command line {image!r}")
        image = image or named
    if not image:
        raise UsageError(f"name the image to {verb} (or a --recipe whose package: names it)")
    return image, options
