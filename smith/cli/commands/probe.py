"""`smith probe IMAGE`: run the full image, record the files it needs into a profile."""

from __future__ import annotations

import os
import shlex
from typing import TYPE_CHECKING, Any

import click

from smith.cli.limit_flags import limit_option
from smith.cli.main import cli
from smith.cli.registry_flags import registry_options
from smith.cli.settings_options import setting_options
from smith.errors import UsageError
from smith.profile import DEFAULT_NAME, Profile, profile_beside, write_profile

if TYPE_CHECKING:
    from smith.probe import HttpCheck, ProbeOptions

# The image, minimize and run-time stacks are imported by the command when it runs, not by
# `smith probe --help`.


@cli.command()
@click.argument("image", required=False)
@click.argument("command", nargs=-1)
@click.option(
    "-o",
    "--output",
    help=f"The profile to write (default: {DEFAULT_NAME} beside the recipe, or here).",
)
@click.option("--recipe", help="smith.yaml whose package: names the image (or its directory).")
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
@click.option("--cache-dir", help="Package cache for a build recipe (as smith build).")
@setting_options("probe")
@limit_option  # what the command reads is untrusted: its bounds, as flags
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
    cache_dir: str | None,
    **flags: Any,
) -> None:
    """Run IMAGE unminimized (or a build recipe's full tree: IMAGE is then a .yaml file)
    under runc on a read-only root, with its Entrypoint + Cmd or COMMAND (after --), and
    record every file its processes open or execute into a profile that `smith minimize
    --profile` and a recipe's `profile:` keep."""
    from smith.minimize import MinimizeOptions
    from smith.minimize_recipe import recipe_image
    from smith.oci.image import parse_platform
    from smith.probe import probe_image, probe_recipe

    if image and image.endswith((".yaml", ".yml")) and os.path.isfile(image) and not recipe:
        # A build recipe: its packages' full tree is what runs.
        profile = probe_recipe(
            image, command, probe_options(checks, get, status, run_timeout, binds), cache_dir
        )
        write_and_say(profile, output or profile_beside(image))
        return
    image_options = MinimizeOptions(
        platform=parse_platform(platform) if platform else None,
        registry=registry_options(flags),
    )
    image, image_options = recipe_image(image, recipe, image_options, "probe")
    options = probe_options(checks, get, status, run_timeout, binds)
    profile = probe_image(image, command, image_options, options)
    write_and_say(profile, output or (profile_beside(recipe) if recipe else DEFAULT_NAME))


def probe_options(
    checks: tuple[str, ...], get: str | None, status: int, timeout: float, binds: tuple[str, ...]
) -> ProbeOptions:
    from smith.probe import ProbeOptions

    if timeout <= 0:
        raise UsageError(f"--run-timeout must be more than 0 seconds, not {timeout:g}")
    options = ProbeOptions(
        checks=tuple(tuple(shlex.split(check)) for check in checks),
        http=parse_get(get, status) if get else None,
        timeout=timeout,
        binds=tuple(parse_bind(bind) for bind in binds),
    )
    if any(not check for check in options.checks):
        raise UsageError("--check needs a command")
    return options


def write_and_say(profile: Profile, dest: str) -> None:
    write_profile(profile, dest)
    click.echo(f"{dest}: {len(profile.entries)} paths", err=True)


def parse_get(value: str, status: int) -> HttpCheck:
    from smith.probe import HttpCheck

    port, _, path = value.partition("/")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--get needs PORT[/PATH] with a port from 1 to 65535, not {value!r}")
    return HttpCheck(int(port), "/" + path, status)


def parse_bind(value: str) -> tuple[str, str]:
    source, sep, target = value.rpartition(":")
    if not sep or not source or not target.startswith("/"):
        raise UsageError(f"--bind needs HOST_DIR:/DIR, not {value!r}")
    return source, target
