"""`smith lock [RECIPE]`: resolve a recipe's packages and pin them in smith.lock beside it.

`smith lock [RECIPE] --update [PKG...]` moves only the named pins (all with no names) to
the newest versions, with what they now require, and prints each change
(smith/lock_update.py). RECIPE defaults to ./smith.yaml, as for `smith build`.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from smith.cli.limit_flags import limit_option
from smith.cli.main import cli
from smith.cli.settings_options import setting_options
from smith.errors import UsageError
from smith.recipe import find_recipe, load_recipe
from smith.resolve.fetch import Fetcher
from smith.resolve.lock import lock_path_for, write_lock
from smith.sources import lock_recipe


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
@setting_options("lock")
@limit_option
def lock_command(
    args: tuple[str, ...],
    offline: bool,
    cache_dir: Path | None,
    update: bool,
    preview: bool,
    retries: int,
) -> None:
    """Resolve RECIPE's packages (default ./smith.yaml) and write smith.lock next to it."""
    fetcher = Fetcher(cache_dir, offline=offline, retries=retries)
    recipe, packages = split_arguments(args)
    if update:
        if load_recipe(recipe).arches:
            raise UsageError(f"{recipe}: --update is for a recipe of one architecture")
        update_command(recipe, packages, fetcher, preview)
        return
    if packages:
        raise UsageError(f"{packages[0]!r}: package names go with --update")
    if preview:
        raise UsageError("--preview goes with --update")
    loaded = load_recipe(recipe)
    if not loaded.arches:
        target, lock = lock_recipe(loaded, recipe, fetcher)
        write_lock(target, lock)
        click.echo(f"{target}: {len(lock.packages)} packages")
        return
    # Several architectures: each resolved from its own packages, pinned in its own lock
    # (the one `smith build` of that recipe reads for that architecture).
    for arch in loaded.arches:
        one = loaded.model_copy(update={"arch": arch, "arches": ()})
        _, lock = lock_recipe(one, recipe, fetcher)
        target = lock_path_for(recipe, arch)
        write_lock(target, lock)
        click.echo(f"{target}: {len(lock.packages)} {arch} packages")


def split_arguments(args: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
    """(the recipe, the package names): the first argument is the recipe when it names a
    file or directory that is there, or a .yaml/.yml file; else ./smith.yaml is."""
    if args and (os.path.exists(args[0]) or args[0].endswith((".yaml", ".yml"))):
        return find_recipe(args[0]), args[1:]
    return find_recipe(None), args


def update_command(recipe: str, packages: tuple[str, ...], fetcher: Fetcher, preview: bool) -> None:
    from smith.lock_update import compare_builds, update_lock
    from smith.outdated import trial_build

    before = trial_build(recipe, fetcher, compression=None) if preview else None
    result = update_lock(recipe, fetcher, packages)
    write_lock(result.path, result.new)
    for change in result.changes:
        click.echo(change.describe())
    for nevra in result.unoffered:
        click.echo(f"note: no repository offers {nevra} any more, so it could not stay")
    click.echo(f"{result.path}: {len(result.changes)} packages moved")
    if before is not None:
        after = trial_build(recipe, fetcher, compression=None)
        click.echo("\n".join(compare_builds(before, after).lines()))
