"""`smith lock RECIPE`: resolve a recipe's packages and pin them in smith.lock beside it."""

from __future__ import annotations

from pathlib import Path

import click

from smith.cli import cli
from smith.resolve.fetch import Fetcher
from smith.resolve.lock import Lock, lock_path_for, pin_sha256, write_lock
from smith.resolve.recipe_keys import read_lock_inputs
from smith.resolve.repo import load_repos
from smith.resolve.solver import resolve


@cli.command("lock")
@click.argument("recipe", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--offline", is_flag=True, help="Fail at once instead of using the network.")
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Download cache (default: $XDG_CACHE_HOME/smith).",
)
def lock_command(recipe: Path, offline: bool, cache_dir: Path | None) -> None:
    """Resolve RECIPE's packages and write smith.lock next to it."""
    inputs = read_lock_inputs(recipe)
    fetcher = Fetcher(cache_dir, offline=offline)
    repos = load_repos(inputs.repos, fetcher)
    packages = resolve(
        inputs.requests, repos, arch=inputs.arch, excludes=inputs.excludes, weak=inputs.weak
    )
    lock = Lock(
        inputs.requests, inputs.arch, inputs.excludes, inputs.weak, pin_sha256(packages, fetcher)
    )
    target = lock_path_for(recipe)
    write_lock(target, lock)
    click.echo(f"{target}: {len(lock.packages)} packages")
