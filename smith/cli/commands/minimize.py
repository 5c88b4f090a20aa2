"""`smith minimize IMAGE -o OUTPUT`: shrink an existing image to what its program needs."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import click

from smith.cli import progress
from smith.cli.limit_flags import limit_option
from smith.cli.main import cli
from smith.cli.registry_flags import registry_options
from smith.cli.sbom_flags import sbom_flags, sbom_formats
from smith.cli.settings_options import setting_options
from smith.errors import UsageError
from smith.settings import merged

if TYPE_CHECKING:
    from smith.minimize import MinimizeResult
    from smith.oci.output import IndexResult


@cli.command()
@click.argument("image", required=False)
@setting_options("minimize", required=("output",))
@click.option("--recipe", help="smith.yaml naming the image (or its directory).")
@sbom_flags
@limit_option  # what the command reads is untrusted: its bounds, as flags
def minimize(
    image: str | None,
    output: str,
    fmt: str | None,
    tag: str | None,
    platforms: tuple[str, ...],
    recipe: str | None,
    paths: tuple[str, ...],
    excludes: tuple[str, ...],
    nss: bool,
    gconv: bool,
    no_runtime: tuple[str, ...],
    profile: str | None,
    user: str,
    keep_ownership: bool,
    keep_modes: bool,
    entrypoint: str | None,
    compression: str | None,
    explain: bool,
    as_json: bool,
    quiet: bool,
    package_db: bool,
    layers: str | None,
    layer_budget: int | None,
    **flags: Any,
) -> None:
    """Shrink IMAGE (OCI layout, oci-archive, docker-archive, or a registry reference such
    as docker://HOST/REPO:TAG) to its program and its needs."""
    # Imported here, not at the top: `smith minimize --help` needs none of them (the
    # image reader, the shrink core and the recipe schema are ~300 modules).
    from smith.layering import merged_layering
    from smith.minimize import MinimizeOptions, minimize_image, minimize_platforms
    from smith.minimize_recipe import recipe_image
    from smith.oci.compress import parse_compression
    from smith.oci.image import EVERY_PLATFORM, SeveralPlatforms
    from smith.oci.index import chosen_platforms
    from smith.profile import read_profile

    options = MinimizeOptions(
        paths=paths,
        excludes=excludes,
        nss=nss,
        gconv=gconv,
        no_runtime=no_runtime,
        profile=read_profile(profile).entries if profile else (),
        user=user or "",
        keep_ownership=keep_ownership,
        keep_modes=keep_modes,
        entrypoint=parse_entrypoint(entrypoint) if entrypoint else None,
        platform=None,  # chosen_platforms(), once the image is known
        compression=parse_compression(merged("compression", compression)),
        epoch=merged("source_date_epoch", None),
        fmt=fmt,
        tag=tag or "",
        registry=registry_options(flags),
        sbom=sbom_formats(flags),
        package_db=package_db,
        layering=merged_layering(layers, layer_budget),
    )
    image, options = recipe_image(
        image,
        recipe,
        options,
        "minimize",
        compression=compression,
        tag=tag,
        layers=layers,
        layer_budget=layer_budget,
    )
    chosen = chosen_platforms(image, platforms, "minimize")
    if len(chosen) <= 1:
        # No --platform: every platform of an index (the image says which it has, as it is
        # read), else its one image; one --platform: that one.
        options = replace(options, platform=chosen[0] if chosen else EVERY_PLATFORM)
        try:
            with progress.showing("minimizing", quiet=quiet or as_json):
                result = minimize_image(image, output, options)
        except SeveralPlatforms as several:
            chosen = several.platforms
        else:
            report_image(result, output, explain, as_json, quiet)
            return
    with progress.showing("minimizing", quiet=quiet or as_json):
        written = minimize_platforms(image, output, replace(options, platform=None), chosen)
    report_platforms(*written, output, as_json)


def report_image(
    result: MinimizeResult, output: str, explain: bool, as_json: bool, quiet: bool
) -> None:
    if as_json:
        doc = result.summary(explain)
        sys.stdout.write(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    elif explain:
        for path, why in result.kept.items():
            sys.stdout.write(f"/{path}: {why}\n")
    elif not quiet:
        click.echo(
            f"{output}: {result.after.files} files, {result.after.bytes} bytes "
            f"(from {result.before.files} files, {result.before.bytes} bytes); "
            f"manifest {result.image.manifest.digest}",
            err=True,
        )


def parse_entrypoint(value: str) -> tuple[str, ...]:
    if value.startswith("["):
        try:
            items = json.loads(value)
        except ValueError as err:
            raise UsageError(f"--entrypoint is not a JSON list: {value!r} ({err})") from None
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items) or not items:
            raise UsageError(f"--entrypoint must be a list of strings: {value!r}")
        return tuple(items)
    return (value,)


def report_platforms(
    index: IndexResult, results: tuple[MinimizeResult, ...], output: str, as_json: bool
) -> None:
    if as_json:
        doc = {
            "output": output,
            "index": index.index.digest,
            "platforms": {str(r.platform): r.summary(False) for r in results},
        }
        sys.stdout.write(json.dumps(doc, indent=2, sort_keys=True) + "\n")
        return
    for r in results:
        click.echo(
            f"{output}: {r.platform}: {r.after.files} files, {r.after.bytes} bytes "
            f"(from {r.before.files} files, {r.before.bytes} bytes); "
            f"manifest {r.image.manifest.digest}",
            err=True,
        )
    click.echo(f"{output}: index {index.index.digest}", err=True)
