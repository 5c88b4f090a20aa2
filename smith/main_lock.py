"""`smith lock RECIPE`: resolve a recipe's packages and pin them in smith.lock beside it."""

from __future__ import annotations

from pathlib import Path

import click

from smith.cli import cli
from smith.recipe import load_recipe
from smith.registry_flags import retries_option
from smith.resolve.fetch import Fetcher
from smith.resolve.lock import write_lock
from smith.sources import lock_recipe


@cli.command("lock")
@click.argument("recipe", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--offline", is_flag=True, help="Fail at once instead of using the network.")
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Download cache (default: $XDG_CACHE_HOME/smith).",
)
@retries_option
def lock_command(recipe: Path, offline: bool, cache_dir: Path | None, retries: int) -> None:
    """Resolve RECIPE's packages and write smith.lock next to it."""
    fetcher = Fetcher(cache_dir, offline=offline, retries=retries)
    target, lock = lock_recipe(load_recipe(str(recipe)), str(recipe), fetcher)
    write_lock(target, lock)
    click.echo(f"{target}: {len(lock.packages)} packages")
