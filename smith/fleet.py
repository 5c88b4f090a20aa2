"""`smith build RECIPE RECIPE...`: many recipes in one run, sharing the work they share.

One download cache and one set of loaded repositories serve every build (smith.build's
Shared): a repository's metadata is fetched and parsed once per run, whichever recipes use
it; a package is fetched once (the second recipe finds it in the cache, checked by its
checksum) and extracted once (its record in the content store is replayed, not
decompressed again); a recipe that did not change is copied from the build cache.

`-o DIR` writes each image to DIR/<recipe name> (the name of the recipe's directory, or of
the file without .yaml); without it, each recipe's own `output` is used, and two recipes
that would write the same output are refused before anything is built. A recipe that
fails does not stop the others: the run fails afterwards, naming it and what was written.

`--share-layers` (with the `packages` strategy, which it implies) stages every recipe
before writing any, so that a package two or more images keep gets one layer holding the
union of what they keep of it (smith/sharing.py), the same blob in each. An image's bytes
then depend on the other recipes of the run, so the build cache is neither read nor
written; a recipe that is not layered from packages (`package: IMAGE`, several
architectures, `layers: single`) is built alone, as without the flag.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from smith.errors import SmithError, UsageError

if TYPE_CHECKING:
    from smith.build import BuildResult, IndexBuildResult, Shared, StagedRecipe
    from smith.build_options import BuildOptions
    from smith.buildcache import CachedBuild

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FleetResult:
    built: tuple[tuple[str, BuildResult | IndexBuildResult | CachedBuild], ...]  # (recipe, ...)
    failed: tuple[tuple[str, str], ...]  # (recipe, the error's one line)

    def check(self) -> None:
        """Fail (after every recipe was tried) when one did, naming it and what was written."""
        if not self.failed:
            return
        written = ", ".join(result.output for _, result in self.built) or "nothing"
        recipe, error = self.failed[0]
        more = f" (and {len(self.failed) - 1} more recipes)" if len(self.failed) > 1 else ""
        raise SmithError(f"{recipe}: {error}{more}; written: {written}")


def recipe_name(recipe_path: str) -> str:
    """A recipe's name: its directory's for a smith.yaml, else the file's without .yaml."""
    path = os.path.abspath(recipe_path)
    base = os.path.basename(path)
    if base in ("smith.yaml", "smith.yml"):
        return os.path.basename(os.path.dirname(path))
    return base.removesuffix(".yaml").removesuffix(".yml")


def fleet_outputs(recipe_paths: Sequence[str], options: BuildOptions) -> dict[str, str | None]:
    """Each recipe's output: DIR/<name> with `-o DIR`, else None (the recipe's own)."""
    if options.output is None:
        return dict.fromkeys(recipe_paths)
    names: dict[str, str] = {}
    for path in recipe_paths:
        name = recipe_name(path)
        if name in names:
            raise UsageError(
                f"{names[name]} and {path} are both named {name!r}: -o {options.output} "
                "would write both to one place"
            )
        names[name] = path
    if os.path.lexists(options.output) and not os.path.isdir(options.output):
        raise UsageError(
            f"-o {options.output} is not a directory: several recipes write DIR/<name> each"
        )
    return {path: os.path.join(options.output, recipe_name(path)) for path in recipe_paths}


def build_fleet(recipes: Sequence[str], options: BuildOptions) -> FleetResult:
    """Build every recipe (a smith.yaml, or a directory holding one)."""
    from smith.build import Shared, fetcher_for, output_of
    from smith.recipe import find_recipe, load_recipe

    recipe_paths = [find_recipe(r) for r in recipes]
    options = sharing_options(options)

    if len(set(map(os.path.abspath, recipe_paths))) != len(recipe_paths):
        raise UsageError("a recipe is named twice")
    outputs = fleet_outputs(recipe_paths, options)
    if options.output is None:
        seen: dict[str, str] = {}
        for path in recipe_paths:
            try:
                output = os.path.abspath(output_of(options, load_recipe(path)))
            except SmithError:
                continue  # said when it is built
            if output in seen:
                raise UsageError(f"{seen[output]} and {path} both write {output}: use -o DIR")
            seen[output] = path
    # The directory is made here and removed again when no recipe wrote into it: a run
    # that failed for every recipe leaves nothing behind.
    made = options.output is not None and not os.path.isdir(options.output)
    if options.output is not None:
        os.makedirs(options.output, exist_ok=True)
    run = FleetRun(recipe_paths, outputs, options, Shared(fetcher_for(options)))
    try:
        if options.share_layers:
            build_shared(run)
        else:
            build_each(run)
    finally:
        if made and options.output is not None and not run.built:
            with contextlib.suppress(OSError):  # not empty: something else wrote there
                os.rmdir(options.output)
    return FleetResult(tuple(run.built), tuple(run.failed))


@dataclass(frozen=True)
class FleetRun:
    """One run: its recipes, where each is written, what their builds share, and (filled
    in as they are built) what was built and what failed."""

    recipe_paths: Sequence[str]
    outputs: Mapping[str, str | None]
    options: BuildOptions
    shared: Shared
    built: list[tuple[str, BuildResult | IndexBuildResult | CachedBuild]] = field(
        default_factory=list
    )
    failed: list[tuple[str, str]] = field(default_factory=list)

    def options_of(self, path: str) -> BuildOptions:
        return replace(self.options, output=self.outputs[path])

    def fail(self, path: str, err: SmithError) -> None:
        log.warning("%s: %s", path, err)
        self.failed.append((path, str(err)))


def build_each(run: FleetRun) -> None:
    from smith.build import build_recipe
    from smith.buildcache import restore_locked

    for path in run.recipe_paths:
        one = run.options_of(path)
        try:
            result = restore_locked(path, one) or build_recipe(path, one, run.shared)
        except SmithError as err:
            run.fail(path, err)
            continue
        run.built.append((path, result))


def sharing_options(options: BuildOptions) -> BuildOptions:
    """--share-layers: the `packages` strategy, and no build cache (an image's bytes
    depend on the other recipes of the run, which no cache key covers)."""
    if not options.share_layers:
        return options
    if options.layers == "single":
        raise UsageError("--share-layers shares package layers: it needs --layers packages")
    if options.cache_from or options.cache_to:
        raise UsageError(
            "--share-layers: a registry cache (--cache-from/--cache-to) is not kept for "
            "shared layers; build without one"
        )
    return replace(options, layers="packages", build_cache=False)


def member_names(recipe_paths: Sequence[str]) -> dict[str, str]:
    """What the report calls each recipe: its name, or its path where two share a name."""
    names = [recipe_name(p) for p in recipe_paths]
    return {p: n if names.count(n) == 1 else p for p, n in zip(recipe_paths, names, strict=True)}


def build_shared(run: FleetRun) -> None:
    """Stage every recipe, plan their layers together, then write each image."""
    from smith.build import build_recipe, stage_recipe, write_recipe
    from smith.sharing import Member, share_layers

    names = member_names(run.recipe_paths)
    staged: dict[str, StagedRecipe | None] = {}
    with contextlib.ExitStack() as stack:  # parent images stay open until written
        for path in run.recipe_paths:
            try:
                staged[path] = stage_recipe(path, run.options_of(path), run.shared, stack)
            except SmithError as err:
                run.fail(path, err)
        members = [
            Member(
                names[p], s.staged.image.tree, s.layers, (str(s.output.epoch), s.output.compression)
            )
            for p, s in staged.items()
            if s is not None
        ]
        plans = share_layers(members)
        for path, one in staged.items():
            try:
                if one is None:  # not layered from packages: built as it would be alone
                    result = build_recipe(path, run.options_of(path), run.shared)
                else:
                    plan = plans[names[path]]
                    result = write_recipe(one, plan.plan.trees(), plan.extra)
            except SmithError as err:
                run.fail(path, err)
                continue
            run.built.append((path, result))
