"""`smith probe IMAGE`: run the full image, record the files it needs into a profile."""

from __future__ import annotations

import shlex
from typing import Any

import click

from smith.cli import cli
from smith.errors import UsageError
from smith.minimize import MinimizeOptions
from smith.minimize_recipe import read_minimize_recipe
from smith.oci.image import parse_platform
from smith.probe import HttpCheck, ProbeOptions, probe_image
from smith.profile import DEFAULT_NAME, profile_beside, write_profile
from smith.registry_flags import registry_flags, registry_options


@cli.command()
@click.argument("image", required=False)
@click.argument("command", nargs=-1)
@click.option(
    "-o",
    "--output",
    help=f"The profile to write (default: {DEFAULT_NAME} beside the recipe, or here).",
)
@click.option(
    "--recipe", type=click.Path(dir_okay=False), help="smith.yaml whose package: names the image."
)
@click.option(
    "--check", "checks", multiple=True, help="A command run inside once it runs; must exit 0."
)
@click.option("--get", "get", help="PORT[/PATH]: GET http://127.0.0.1:PORT/PATH once it runs.")
@click.option("--status", default=200, show_default=True, help="The status the GET must answer.")
@click.option(
    "--run-timeout",
    "run_timeout",
    default=60.0,
    show_default=True,
    help="Seconds for the run and its checks.",
)
@click.option(
    "--bind", "binds", multiple=True, help="HOST_DIR:DIR, mounted read-only (e.g. a /read config)."
)
@click.option("--platform", help="OS/ARCH[/VARIANT] to pick from a multi-platform index.")
@registry_flags
def probe(
    image: str | None,
    command: tuple[str, ...],
    output: str | None,
    recipe: str | None,
    checks: tuple[str, ...],
    get: str | None,
    status: int,
    run_timeout: float,
    binds: tuple[str, ...],
    platform: str | None,
    **flags: Any,
) -> None:
    """Run IMAGE unminimized under runc on a read-only root (its Entrypoint + Cmd, or
    COMMAND), and record every file its processes open or execute into a profile that
    `smith minimize --profile` and a recipe's `profile:` keep."""
    image_options = MinimizeOptions(
        platform=parse_platform(platform) if platform else None,
        registry=registry_options(flags),
    )
    if recipe:
        named, image_options = read_minimize_recipe(recipe, image_options)
        if image and named and image != named:
            raise UsageError(f"the recipe names the image {named!r}, the command line {image!r}")
        image = image or named
    if not image:
        raise UsageError("name the image to probe (or a --recipe whose package: names it)")
    if run_timeout <= 0:
        raise UsageError(f"--run-timeout must be more than 0 seconds, not {run_timeout:g}")
    options = ProbeOptions(
        checks=tuple(tuple(shlex.split(check)) for check in checks),
        http=parse_get(get, status) if get else None,
        timeout=run_timeout,
        binds=tuple(parse_bind(bind) for bind in binds),
    )
    if any(not check for check in options.checks):
        raise UsageError("--check needs a command")
    profile = probe_image(image, command, image_options, options)
    dest = output or (profile_beside(recipe) if recipe else DEFAULT_NAME)
    write_profile(profile, dest)
    click.echo(f"{dest}: {len(profile.entries)} paths", err=True)


def parse_get(value: str, status: int) -> HttpCheck:
    port, _, path = value.partition("/")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--get needs PORT[/PATH] with a port from 1 to 65535, not {value!r}")
    return HttpCheck(int(port), "/" + path, status)


def parse_bind(value: str) -> tuple[str, str]:
    source, sep, target = value.rpartition(":")
    if not sep or not source or not target.startswith("/"):
        raise UsageError(f"--bind needs HOST_DIR:/DIR, not {value!r}")
    return source, target
