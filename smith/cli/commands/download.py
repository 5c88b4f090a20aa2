"""`smith download -r REF -i OUT`: pull an image from a registry to a layout or archive."""

from __future__ import annotations

from typing import Any

import click

from smith.cli import progress
from smith.cli.limit_flags import limit_option
from smith.cli.main import cli
from smith.cli.registry_flags import registry_options
from smith.cli.settings_options import setting_options


@cli.command()
@click.option(
    "-r",
    "--remote",
    required=True,
    metavar="REF",
    help="What to pull: [docker://]HOST[:PORT]/REPO[:TAG|@DIGEST] or https://[USER:PASS@]HOST/REPO:TAG.",
)
@click.option(
    "-i",
    "--image",
    "output",
    required=True,
    metavar="OUT",
    help="Output: a directory (OCI layout), or a .tar / .tar.gz archive.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["oci", "oci-archive", "docker-archive"]),
    help="Output format (default: from OUT's name).",
)
@click.option("--tag", default="", help="Name the image in the output (ref.name / RepoTags).")
@click.option(
    "--platform", metavar="OS/ARCH[/VARIANT]", help="Which image of a multi-platform index."
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar (none without a terminal).")
@setting_options("download")
@limit_option  # what the command reads is untrusted: its bounds, as flags
def download(
    remote: str,
    output: str,
    fmt: str | None,
    tag: str,
    platform: str | None,
    quiet: bool,
    jobs: int,
    **flags: Any,
) -> None:
    """Pull REF to OUT; print the image's manifest digest."""
    # The image and registry stacks load when the command runs, not for --help.
    from smith.oci.image import parse_platform
    from smith.oci.pull import pull_image
    from smith.oci.reference import parse_reference

    options = registry_options(flags, jobs=jobs)
    with progress.showing("downloading", quiet=quiet):
        result = pull_image(
            parse_reference(remote),
            output,
            options=options,
            platform=parse_platform(platform) if platform else None,
            fmt=fmt,
            tag=tag,
        )
    click.echo(result.digest)
