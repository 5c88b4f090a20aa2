"""`smith build [RECIPE]`: build a microcontainer from a recipe (default ./smith.yaml)."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import click

from smith.build_options import BuildOptions
from smith.buildcache import CachedBuild, restore_locked
from smith.cli import progress
from smith.cli.limit_flags import limit_option
from smith.cli.main import cli
from smith.cli.registry_flags import registry_options
from smith.cli.sbom_flags import sbom_flags, sbom_formats
from smith.cli.settings_options import setting_options
from smith.errors import UsageError
from smith.oci.reference import parse_reference
from smith.recipe_file import find_recipe
from smith.resolution_memo import restore_memoized

log = logging.getLogger("smith")

if TYPE_CHECKING:
    from smith.build import BuildResult, IndexBuildResult
    from smith.fleet_push import FleetPush
    from smith.oci.push import PushResult
    from smith.oci.reference import Reference
    from smith.oci.registry_options import RegistryOptions


@cli.command("build")
@click.argument("recipes", nargs=-1)
@setting_options("build", aliases={"output": ("-i",)})
@click.option(
    "--push",
    metavar="REF",
    help="Also push the image to this registry reference (the registry flags apply, as to a "
    "registry parent). Several RECIPEs: REF is a prefix HOST[/PATH] without a tag, and each "
    "image goes to PREFIX/<name>:<tag> (<name> as -o DIR names it; <tag> that of the recipe's "
    "tag: or --tag, else latest), one after the other, a blob an earlier image has mounted, "
    "not uploaded again. A registry has no transactions: an image that fails to push is "
    "named and the run fails, and the others stay pushed.",
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
@click.option(
    "--share-layers",
    is_flag=True,
    help="Several RECIPEs: a package two or more of the images keep gets one layer holding "
    "the union of what they keep of it, one blob in each (implies --layers packages; "
    "--explain names, per extra path, the image that needed it).",
)
@sbom_flags
@limit_option  # what the command reads is untrusted: its bounds, as flags
def build_command(
    recipes: tuple[str, ...],
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
    cache_from: str | None,
    cache_to: str | None,
    layers: str | None,
    layer_budget: int | None,
    share_layers: bool,
    **flags: Any,
) -> None:
    """Build the image a RECIPE (smith.yaml) describes; several RECIPEs in one run share
    repositories, downloads and extracted packages (-o DIR: one output DIR/NAME each)."""
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
    is_fleet = len(recipes) > 1 or share_layers
    # Bad input fails before the build (a fleet's references: in build_many).
    target = parse_reference(push) if push and not is_fleet else None
    for ref in (cache_from, cache_to):
        if ref:
            parse_reference(ref)
    if sys.stderr.isatty() and not quiet:
        # On a terminal, each step of the build is shown as it starts.
        logging.getLogger("smith").setLevel(
            min(logging.getLogger("smith").level or 99, logging.INFO)
        )
    options = BuildOptions(
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
        cache_from=cache_from,
        cache_to=cache_to,
        share_layers=share_layers,
    )
    if is_fleet:
        fleet = recipes or (find_recipe(None),)
        build_many(fleet, options, push, explain=explain, as_json=as_json, quiet=quiet)
        return
    recipe_path = find_recipe(recipes[0] if recipes else None)
    # A locked recipe that did not change is taken from the build cache before the recipe's
    # schema, the solver and the writer are even loaded; so is an unlocked one whose
    # repositories did not change since its last build (the resolution memo).
    result: BuildResult | CachedBuild | None = restore_locked(
        recipe_path, options
    ) or restore_memoized(recipe_path, options)
    if result is None:
        from smith.build import IndexBuildResult, build_recipe

        # A registry parent or `package:` image is downloaded and unpacked with a bar.
        with progress.showing("reading the image", quiet=quiet):
            built = build_recipe(recipe_path, options)
        if isinstance(built, IndexBuildResult):
            report_index(built, target, registry, explain=explain, as_json=as_json, quiet=quiet)
            return
        result = built
    pushed = None
    if target:
        from smith.oci.push import push_image  # the registry client: only to push
        from smith.oci.push_referrers import push_referrers

        with progress.showing("uploading", quiet=quiet):
            mount = cache_mounts(target.registry, options)
            pushed = push_image(result.output, target, options=registry, mount_from=mount)
            push_referrers(result.output, target, pushed.digest, registry)  # SBOM etc. beside it
    if explain and not as_json:
        print_explained(result)
    pushed_ref = (
        f"{target.registry}/{target.repository}@{pushed.digest}" if target and pushed else ""
    )
    if as_json:
        summary = summary_of(result, explain, pushed)
        if pushed_ref:
            summary["pushed"] = pushed_ref
        click.echo(json.dumps(summary, indent=2, sort_keys=True))
    elif not quiet:
        click.echo(one_line(result), err=True)
    if pushed_ref and not as_json and not quiet:
        click.echo(pushed_ref)


def cache_mounts(registry: str, options: BuildOptions) -> list[str]:
    """Layers the registry cache holds on the same registry are mounted, not sent."""
    caches = [parse_reference(r) for r in (options.cache_to, options.cache_from) if r]
    return [c.repository for c in caches if c.registry == registry]


def print_explained(result: BuildResult | CachedBuild, prefix: str = "") -> None:
    for path in result.kept:
        owner = result.owners.get(path) or "smith"
        click.echo(f"{prefix}/{path}\t[{owner}]\t{result.why(path)}")


def summary_of(
    result: BuildResult | CachedBuild, explain: bool, pushed: PushResult | None = None
) -> dict[str, Any]:
    summary = result.summary(explain)
    cache: dict[str, object] = {"build": "off", **result.cache}
    if pushed is not None:
        cache["pushed_bytes"] = pushed.uploaded
        cache["pushed_blobs_skipped"] = len(pushed.skipped)
    summary["cache"] = cache
    return summary


def one_line(result: BuildResult | CachedBuild) -> str:
    return (
        f"{result.output}: {manifest_digest(result)} "
        f"({result.image_bytes} bytes, {len(result.kept)} paths, "
        f"{len(result.packages)} packages resolved)"
    )


def build_many(
    recipes: tuple[str, ...],
    options: BuildOptions,
    push: str | None,
    *,
    explain: bool,
    as_json: bool,
    quiet: bool,
) -> None:
    """A fleet: every recipe built (the failing ones too, tried), each pushed with --push,
    then one report."""
    from smith.build import IndexBuildResult
    from smith.fleet import build_fleet
    from smith.fleet_push import FleetPush, fleet_targets, push_fleet
    from smith.oci.registry_options import RegistryOptions

    targets = fleet_targets([find_recipe(r) for r in recipes], options, push) if push else {}
    fleet = build_fleet(recipes, options)
    pushes = FleetPush({}, {})
    if targets:
        outputs = [(r, res.output, isinstance(res, IndexBuildResult)) for r, res in fleet.built]
        registries = {t.registry for t in targets.values()}
        mount = [m for host in sorted(registries) for m in cache_mounts(host, options)]
        with progress.showing("uploading", quiet=quiet):
            pushes = push_fleet(outputs, targets, options.registry or RegistryOptions(), mount)
    summaries: list[dict[str, Any]] = []
    for recipe, result in fleet.built:
        pushed = pushes.pushed.get(recipe)
        if pushed is not None and not as_json and not quiet:
            click.echo(f"{targets[recipe]}@{pushed.digest}")
        if isinstance(result, IndexBuildResult):
            summaries.append({**result.summary(), **push_summary(recipe, targets, pushes)})
            if not quiet and not as_json:
                click.echo(f"{result.output}: {result.index.digest}", err=True)
            continue
        summaries.append({**summary_of(result, explain), **push_summary(recipe, targets, pushes)})
        if explain and not as_json:
            print_explained(result, prefix=f"{recipe}\t")
            for extra in () if isinstance(result, CachedBuild) else result.extra:
                owner = extra.package or "directory"
                needed = ", ".join(extra.needed_by)
                click.echo(f"{recipe}\t/{extra.path}\t[{owner}]\textra: needed by {needed}")
        if not quiet and not as_json:
            click.echo(one_line(result), err=True)
    if as_json:
        click.echo(json.dumps(summaries, indent=2, sort_keys=True))
    fleet.check()
    pushes.check(targets)


def push_summary(
    recipe: str, targets: Mapping[str, Reference], pushes: FleetPush
) -> dict[str, Any]:
    """--json of one image of a fleet: where it went and what its push sent."""
    if recipe not in targets:
        return {}
    doc: dict[str, Any] = {"reference": str(targets[recipe])}
    pushed = pushes.pushed.get(recipe)
    if pushed is None:
        doc["error"] = pushes.failed.get(recipe, "not built")
    else:
        doc.update(
            digest=pushed.digest,
            uploaded_bytes=pushed.uploaded,
            mounted_blobs=len(pushed.mounted),
            skipped_blobs=len(pushed.skipped),
        )
    return {"push": doc}


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
        from smith.oci.push_referrers import push_referrers

        with progress.showing("uploading", quiet=quiet):
            pushed = push_index(result.output, target, options=registry)
            for _, platform in result.platforms:  # each platform's SBOM etc. beside it
                push_referrers(result.output, target, platform.image.manifest.digest, registry)
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


def manifest_digest(result: BuildResult | CachedBuild) -> str:
    return result.manifest if isinstance(result, CachedBuild) else result.image.manifest.digest
