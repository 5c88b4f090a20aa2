"""`smith verify RECIPE`: build it twice in changed environments; every digest must match."""

from __future__ import annotations

import json

import click

from smith.cli.main import cli
from smith.errors import SmithError, as_trouble


@cli.command("verify", context_settings={"ignore_unknown_options": True})
@click.argument("target", required=False)
@click.argument("build_args", nargs=-1, type=click.UNPROCESSED)
@click.option("--builds", default=0, help="How many builds (default 2; 1 with --against).")
@click.option("--python", "python", default="", help="Also build under this Python interpreter.")
@click.option(
    "--against",
    default="",
    help="Compare with recorded digests (a golden .json, by recipe name) or an image.",
)
@click.option("--cache-dir", default="", help="Seed each build's cache from this one.")
@click.option("--keep", default="", help="Keep every build's output under this directory.")
@click.option(
    "--minimize", is_flag=True, help="TARGET is an image: verify `smith minimize TARGET`."
)
@click.option("--no-shuffle", is_flag=True, help="Do not shuffle directory order (disorderfs).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def verify_command(
    target: str | None,
    build_args: tuple[str, ...],
    builds: int,
    python: str,
    against: str,
    cache_dir: str,
    keep: str,
    minimize: bool,
    no_shuffle: bool,
    as_json: bool,
) -> int:
    """Build TARGET (a recipe; an image with --minimize) in deliberately different
    environments and compare index, manifest, config and layer digests and diff_ids.
    Exit 0 when all are equal, 1 with `smith diff`'s explanation when not, 2 when a build
    or an image fails. Arguments after TARGET go to `smith build` (or `smith minimize`)."""
    # Here: `smith verify --help` needs neither the recipe model nor the builds' libraries.
    from smith.recipe import find_recipe
    from smith.verify import VerifyOptions, verify

    try:
        result = verify(
            target if minimize and target else find_recipe(target),
            VerifyOptions(
                builds=builds,
                python=python,
                against=against,
                cache_dir=cache_dir,
                keep=keep,
                build_args=build_args,
                minimize=minimize,
                shuffle=not no_shuffle,
            ),
        )
    except SmithError as err:
        raise as_trouble(err) from None
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2, sort_keys=True))
    else:
        click.echo(result.render())
    return 0 if result.reproducible else 1
