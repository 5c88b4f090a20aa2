"""`smith diff A B`: why two images differ, cause first (exit 1 when they do, 2 when one
cannot be read, like diff)."""

from __future__ import annotations

import json
from typing import Any

import click

from smith.cli.limit_flags import limit_option
from smith.cli.main import cli
from smith.cli.registry_flags import registry_options
from smith.cli.settings_options import setting_options
from smith.errors import SmithError, as_trouble


@cli.command("diff")
@click.argument("a")
@click.argument("b")
@click.option("--json", "as_json", is_flag=True, help="Print every finding as JSON.")
@click.option(
    "--limit",
    default=40,
    show_default=True,
    type=click.IntRange(min=0),
    help="Causes listed after the first.",
)
@click.option(
    "--platform",
    "platforms",
    multiple=True,
    help="OS/ARCH[/VARIANT] of multi-platform indexes to compare (default: the host's); "
    "repeated, or `all` (every platform of A): each compared on its own.",
)
@setting_options("diff")
@limit_option  # what the command reads is untrusted: its bounds, as flags
def diff_command(
    a: str, b: str, as_json: bool, limit: int, platforms: tuple[str, ...], **flags: Any
) -> None:
    """Compare images A and B (OCI layouts, oci-archives, docker-archives, registry
    references) blob by role."""
    # Here, not at the top: `smith diff --help` needs neither the image reader nor the differ.
    from smith.diff import diff_images
    from smith.oci.index import chosen_platforms

    registry = registry_options(flags)
    try:
        chosen = chosen_platforms(a, platforms, "diff")
        if len(chosen) > 1:
            reports = [(p, diff_images(a, b, registry=registry, platform=p)) for p in chosen]
        else:
            report = diff_images(a, b, registry=registry, platform=chosen[0] if chosen else None)
    except SmithError as err:
        raise as_trouble(err) from None
    if len(chosen) > 1:
        if as_json:
            doc = {str(p): r.to_json() for p, r in reports}
            click.echo(json.dumps(doc, indent=2, sort_keys=True))
        else:
            click.echo("\n".join(f"{p}: {r.render(limit)}" for p, r in reports))
        if not all(r.identical for _, r in reports):
            raise click.exceptions.Exit(1)
        return
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2, sort_keys=True))
    else:
        click.echo(report.render(limit))
    if not report.identical:
        raise click.exceptions.Exit(1)
