"""`smith lock [RECIPE]`: resolve a recipe's packages and pin them in smith.lock beside it.

`smith lock [RECIPE] --update [PKG...]` moves only the named pins (all with no names) to
the newest versions, with what they now require, and prints each change
(smith/lock_update.py). RECIPE defaults to ./smith.yaml, as for `smith build`. A recipe
of several architectures pins each in its own section of the one smith.lock.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import click

from smith.cli.limit_flags import limit_option
from smith.cli.main import cli
from smith.cli.settings_options import setting_options
from smith.errors import UsageError
from smith.recipe_file import find_recipe

if TYPE_CHECKING:
    from smith.resolve.fetch import Fetcher

# The recipe schema, the solver and the network stack (~300 modules) are imported by the
# command when it runs, not by `smith lock --help`.


@cli.command("lock")
@click.argument("args", nargs=-1, metavar="[RECIPE] [PKG]...")
@click.option("--offline", is_flag=True, help="Fail at once instead of using the network.")
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Download cache (default: $XDG_CACHE_HOME/smith).",
)
@click.option(
    "--update",
    is_flag=True,
    help="Move only the PKGs (all, with none named) to their newest versions; keep other pins.",
)
@click.option(
    "--preview",
    is_flag=True,
    help="With --update: build the old and the new lock and say which layers change and how "
    "many bytes a push sends.",
)
@click.option(
    "--arch",
    "arches",
    multiple=True,
    help="Lock only this architecture of the recipe (repeatable); the lock's other "
    "sections stay as they are.",
)
@setting_options("lock")
@limit_option
def lock_command(
    args: tuple[str, ...],
    offline: bool,
    cache_dir: Path | None,
    update: bool,
    preview: bool,
    arches: tuple[str, ...],
    retries: int,
) -> None:
    """Resolve RECIPE's packages (default ./smith.yaml) and write smith.lock next to it."""
    from smith.recipe import load_recipe
    from smith.resolve.fetch import Fetcher
    from smith.resolve.lock import (
        LockFile,
        lock_path_for,
        old_arch_lock,
        read_lock_file,
        write_lock,
    )
    from smith.sources import lock_recipe, portable_packages

    fetcher = Fetcher(cache_dir, offline=offline, retries=retries)
    recipe, packages = split_arguments(args)
    if update:
        if arches:
            raise UsageError("--update moves pins in every section: it takes no --arch")
        update_command(recipe, packages, fetcher, preview)
        return
    if packages:
        raise UsageError(f"{packages[0]!r}: package names go with --update")
    if preview:
        raise UsageError("--preview goes with --update")
    loaded = load_recipe(recipe)
    for arch in arches:
        if arch not in loaded.architectures:
            built = ", ".join(loaded.architectures)
            raise UsageError(f"--arch {arch}: {recipe} is built for {built}")
    if not loaded.arches and not arches:
        target, lock = lock_recipe(loaded, recipe, fetcher)
        write_lock(target, lock)
        click.echo(f"{target}: {len(lock.packages)} packages")
        return
    # Several architectures: each resolved from its own packages, pinned in its own section
    # (the one `smith build` of that recipe reads for that architecture); with --arch, the
    # named ones only, the others kept byte for byte.
    sections = tuple(
        lock_recipe(loaded.model_copy(update={"arch": arch, "arches": ()}), recipe, fetcher)[1]
        for arch in arches or loaded.architectures
    )
    target = lock_path_for(recipe)
    written = LockFile(())
    if arches and target.exists():
        kept = read_lock_file(target).sections
        written = LockFile(
            tuple(replace(s, packages=portable_packages(loaded, recipe, s.packages)) for s in kept)
        )
    for section in sections:
        written = written.with_section(section)
    write_lock(target, written)
    for section in sections:
        click.echo(f"{target}: {len(section.packages)} {section.arch} packages")
        if old_arch_lock(target, section.arch).exists():
            click.echo(f"note: {old_arch_lock(target, section.arch)} is not read any more")


def split_arguments(args: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
    """(the recipe, the package names): the first argument is the recipe when it names a
    file or directory that is there, or a .yaml/.yml file; else ./smith.yaml is."""
    if args and (os.path.exists(args[0]) or args[0].endswith((".yaml", ".yml"))):
        return find_recipe(args[0]), args[1:]
    return find_recipe(None), args


def update_command(recipe: str, packages: tuple[str, ...], fetcher: Fetcher, preview: bool) -> None:
    from smith.lock_update import compare_builds, update_lock
    from smith.outdated import trial_build
    from smith.recipe import load_recipe
    from smith.resolve.lock import write_lock

    arches = load_recipe(recipe).arches
    builds = arches or ("",)  # "": the recipe's one architecture
    before = [trial_build(recipe, fetcher, compression=None, arch=a) for a in builds if preview]
    result = update_lock(recipe, fetcher, packages)
    write_lock(result.path, result.new)
    for change in result.changes:
        click.echo(change.describe())
    for nevra in result.unoffered:
        click.echo(f"note: no repository offers {nevra} any more, so it could not stay")
    click.echo(f"{result.path}: {len(result.changes)} packages moved")
    for arch, old in zip(builds, before, strict=False):
        after = trial_build(recipe, fetcher, compression=None, arch=arch)
        lines = compare_builds(old, after).lines()
        click.echo("\n".join(f"{arch}: {line}" if arch else line for line in lines))
