"""`smith build [RECIPE]`: build a microcontainer from a recipe (default ./smith.yaml)."""

from __future__ import annotations

import json
import logging
import sys
from typing import TYPE_CHECKING, Any

import click

from smith.cli import progress
from smith.cli.limit_flags import limit_option
from smith.cli.main import cli
from smith.cli.registry_flags import registry_options
from smith.cli.sbom_flags import sbom_flags, sbom_formats
from smith.cli.settings_options import setting_options
from smith.errors import UsageError
from smith.oci.reference import parse_reference

log = logging.getLogger("smith")

if TYPE_CHECKING:
    from smith.build import IndexBuildResult
    from smith.oci.reference import Reference
    from smith.oci.registry_options import RegistryOptions


@cli.command("build")
@click.argument("recipe", required=False)
@setting_options("build", aliases={"output": ("-i",)})
@click.option(
    "--push",
    metavar="REF",
    help="Also push the image to this registry reference (the registry flags apply, as to a "
    "registry parent).",
)
@click.option(
    "-f",
    "--fast",
    is_flag=True,
    help="Oracle smith's fast rebuild: every build reuses smith.lock and the download "
    "cache, so this changes nothing.",
)
@click.option(
    "-b",
    "--buildnumber",
    metavar="N",
    help="Oracle smith's build number: refused (it would make each build differ); "
    "put it in --tag instead.",
)
@sbom_flags
@limit_option  # what the command reads is untrusted: its bounds, as flags
def build_command(
    recipe: str | None,
    fast: bool,
    buildnumber: str | None,
    output: str | None,
    fmt: str | None,
    tag: str | None,
    compression: str | None,
    arches: tuple[str, ...],
    locked: bool,
    offline: bool,
    cache_dir: str | None,
    keep_going: bool,
    explain: bool,
    as_json: bool,
    quiet: bool,
    push: str | None,
    provenance: bool,
    package_db: bool,
    layers: str | None,
    layer_budget: int | None,
    **flags: Any,
) -> None:
    """Build the image a RECIPE (smith.yaml) describes."""
    # Here, not at the top: `smith build --help` needs none of the build's libraries
    # (pydantic, yaml, libsolv, the OCI writer), ~0.15 s of imports.
    from smith.build import BuildOptions, IndexBuildResult, build_recipe
    from smith.recipe import find_recipe

    if buildnumber is not None:
        raise UsageError(
            f"-b/--buildnumber {buildnumber}: a build number would make every build's image "
            f"differ, and smith's builds are reproducible; name the build in the tag "
            f"instead: --tag NAME:VERSION-{buildnumber}"
        )
    if fast:
        log.warning(
            "-f/--fast: every build reuses smith.lock and the download cache already; "
            "nothing more to skip (--locked refuses to resolve beyond smith.lock)"
        )
    sbom = sbom_formats(flags)
    registry = registry_options(flags)
    target = parse_reference(push) if push else None  # bad input fails before the build
    if sys.stderr.isatty() and not quiet:
        # On a terminal, each step of the build is shown as it starts.
        logging.getLogger("smith").setLevel(
            min(logging.getLogger("smith").level or 99, logging.INFO)
        )
    # A registry parent or `package:` image is downloaded and unpacked with a bar.
    with progress.showing("reading the image", quiet=quiet):
        result = build_recipe(
            find_recipe(recipe),
            BuildOptions(
                output=output,
                fmt=fmt,
                tag=tag,
                compression=compression,
                locked=locked,
                offline=offline,
                cache_dir=cache_dir,
                keep_going=keep_going,
                registry=registry,
                sbom=sbom,
                provenance=provenance,
                package_db=package_db,
                arches=arches,
                layers=layers,
                layer_budget=layer_budget,
            ),
        )
    if isinstance(result, IndexBuildResult):
        report_index(result, target, registry, explain=explain, as_json=as_json, quiet=quiet)
        return
    pushed = None
    if target:
        from smith.oci.push import push_image  # the registry client: only to push
        from smith.oci.push_referrers import push_referrers

        with progress.showing("uploading", quiet=quiet):
            pushed = push_image(result.output, target, options=registry)
            push_referrers(result.output, target, pushed.digest, registry)  # SBOM etc. beside it
    if explain and not as_json:
        for path in result.kept:
            owner = result.owners.get(path) or "smith"
            click.echo(f"/{path}\t[{owner}]\t{result.why(path)}")
    pushed_ref = (
        f"{target.registry}/{target.repository}@{pushed.digest}" if target and pushed else ""
    )
    if as_json:
        summary = result.summary(explain)
        if pushed_ref:
            summary["pushed"] = pushed_ref
        click.echo(json.dumps(summary, indent=2, sort_keys=True))
    elif not quiet:
        click.echo(
            f"{result.output}: {result.image.manifest.digest} "
            f"({result.image_bytes} bytes, {len(result.kept)} paths, "
            f"{len(result.packages)} packages resolved)",
            err=True,
        )
    if pushed_ref and not as_json and not quiet:
        click.echo(pushed_ref)


def report_index(
    result: IndexBuildResult,
    target: Reference | None,
    registry: RegistryOptions,
    *,
    explain: bool,
    as_json: bool,
    quiet: bool,
) -> None:
    """Push and report a build of several platforms (an image index)."""
    pushed_ref = ""
    if target:
        from smith.oci.push import push_index  # the registry client: only to push

        with progress.showing("uploading", quiet=quiet):
            pushed = push_index(result.output, target, options=registry)
        pushed_ref = f"{target.registry}/{target.repository}@{pushed.digest}"
    if explain and not as_json:
        for arch, platform in result.platforms:
            for path in platform.kept:
                owner = platform.owners.get(path) or "smith"
                click.echo(f"{arch}\t/{path}\t[{owner}]\t{platform.why(path)}")
    if as_json:
        summary = result.summary()
        if pushed_ref:
            summary["pushed"] = pushed_ref
        click.echo(json.dumps(summary, indent=2, sort_keys=True))
        return
    if not quiet:
        platforms = ", ".join(
            f"{p.image.manifest.platform} {p.image.manifest.digest}" for _, p in result.platforms
        )
        click.echo(
            f"{result.output}: {result.index.digest} ({result.image_bytes} bytes; {platforms})",
            err=True,
        )
        if pushed_ref:
            click.echo(pushed_ref)
