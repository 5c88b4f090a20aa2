"""`smith cache prune`: evict the build cache's least recently used entries and layers."""

from __future__ import annotations

import json
import time

import click

from smith.cli.main import cli
from smith.errors import UsageError


@cli.group("cache")
def cache_group() -> None:
    """The local caches (builds and layers)."""


@cache_group.command("prune")
@click.option("--max-size", default=None, metavar="SIZE", help="Keep at most SIZE (500M, 2G).")
@click.option("--older-than", default=None, metavar="DAYS", help="Remove what was unused DAYS.")
@click.option("--cache-dir", default=None, help="Download cache (default: $XDG_CACHE_HOME/smith).")
@click.option("--json", "as_json", is_flag=True, help="Print what was removed as JSON.")
def prune_command(
    max_size: str | None, older_than: str | None, cache_dir: str | None, as_json: bool
) -> None:
    """Remove build-cache entries and cached layers, least recently used first: those no
    build used for DAYS, then until what remains takes at most SIZE. Packages and
    repository metadata stay. Waits for running builds; builds wait for it."""
    from smith.cache_prune import parse_days, parse_size, prune
    from smith.resolve.fetch import default_cache_dir

    if max_size is None and older_than is None:
        raise UsageError("cache prune: give --max-size SIZE, --older-than DAYS or both")
    report = prune(
        cache_dir if cache_dir is not None else str(default_cache_dir()),
        max_size=parse_size(max_size) if max_size is not None else None,
        older_than=parse_days(older_than) if older_than is not None else None,
        now=time.time(),
    )
    if as_json:
        click.echo(json.dumps(report.to_json(), sort_keys=True))
    else:
        click.echo(
            f"removed {report.entries} builds and {report.layers} layers: "
            f"{report.freed} bytes freed, {report.left} bytes left"
        )
