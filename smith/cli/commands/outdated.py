"""`smith outdated [RECIPE...|IMAGE]`: which pins have newer versions, and which advisories.

Exit status as dnf check-update: 0 when nothing is newer, 100 when updates exist, 101 when
a security advisory applies to a package whose files the image holds. Errors exit 1 or 2.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import click

from smith.cli.limit_flags import limit_option
from smith.cli.main import cli
from smith.cli.registry_flags import registry_options
from smith.cli.settings_options import setting_options
from smith.errors import UsageError
from smith.recipe_file import DEFAULT_RECIPE, find_recipe

if TYPE_CHECKING:
    from smith.outdated import Report
    from smith.resolve.repo import Repo, RepoConfig

# The checking modules (the recipe schema, the solver, the repository and network stack:
# ~400 modules, 0.3 s) are imported by the command, not by `smith outdated --help`.


def is_recipe(arg: str) -> bool:
    """A recipe is a .yaml/.yml file or a directory holding smith.yaml; anything else is an
    image (an OCI layout, an archive, a registry reference)."""
    if os.path.isdir(arg):
        return os.path.exists(os.path.join(arg, DEFAULT_RECIPE))
    return arg.endswith((".yaml", ".yml"))


@cli.command("outdated")
@click.argument("sources", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable report.")
@click.option(
    "--recipe",
    "image_recipe",
    metavar="RECIPE",
    help="For an IMAGE: take repositories, arch and excludes from this recipe.",
)
@click.option(
    "--repo",
    "repo_urls",
    multiple=True,
    metavar="[ID=]BASEURL",
    help="For an IMAGE: a repository to compare with (repeatable).",
)
@click.option("--offline", is_flag=True, help="Fail at once instead of using the network.")
@click.option("--cache-dir", default=None, help="Download cache (default: $XDG_CACHE_HOME/smith).")
@setting_options("outdated")
@limit_option  # what the command reads is untrusted: its bounds, as flags
def outdated_command(
    sources: tuple[str, ...],
    as_json: bool,
    image_recipe: str | None,
    repo_urls: tuple[str, ...],
    offline: bool,
    cache_dir: str | None,
    **flags: Any,
) -> int:
    """Compare the packages of RECIPEs' smith.lock (default ./smith.yaml), or of an IMAGE
    smith built, with what their repositories offer now, with the advisories that apply.

    Exit status: 0 nothing is newer, 100 updates exist, 101 a security advisory applies to
    a package that contributes a kept file."""
    from smith.outdated import check_image, check_recipe, report_json, report_lines
    from smith.resolve.fetch import Fetcher

    fetcher = Fetcher(cache_dir, offline=offline)
    registry = registry_options(flags)  # for an IMAGE named by a registry reference
    loaded: dict[RepoConfig, Repo] = {}  # recipes that share repositories load them once
    names = list(sources) or [find_recipe(None)]
    reports: list[Report] = []
    for name in names:
        if is_recipe(name):
            reports.extend(check_recipe(find_recipe(name), fetcher, loaded))
            continue
        configs, arch, excludes = image_repos(image_recipe, repo_urls)
        reports.append(
            check_image(
                name,
                configs,
                fetcher,
                arch=arch,
                excludes=excludes,
                loaded=loaded,
                registry=registry,
            )
        )
    if as_json:
        click.echo(report_json(reports))
    else:
        for report in reports:
            click.echo("\n".join(report_lines(report)))
    return int(max(r.status for r in reports))


def image_repos(
    recipe: str | None, urls: tuple[str, ...]
) -> tuple[tuple[RepoConfig, ...], str, tuple[str, ...]]:
    """An image does not record where its packages came from: the repositories are named
    by --recipe or --repo."""
    from smith.recipe import load_recipe
    from smith.resolve.repo import RepoConfig
    from smith.resolve.solver import DEFAULT_ARCH
    from smith.sources import repo_configs

    configs: list[RepoConfig] = []
    arch, excludes = DEFAULT_ARCH, tuple[str, ...]()
    if recipe:
        recipe = find_recipe(recipe)  # a directory holding smith.yaml, as for a RECIPE
        loaded = load_recipe(recipe)
        configs += repo_configs(loaded, recipe)
        arch, excludes = loaded.arch, loaded.excludes
    for i, url in enumerate(urls):
        repo_id, eq, base = url.partition("=")
        if not eq or "/" in repo_id:
            repo_id, base = f"repo{len(configs) + i}", url
        configs.append(RepoConfig(repo_id, base))
    if not configs:
        raise UsageError("an IMAGE needs --recipe or --repo: it does not record its repositories")
    return tuple(configs), arch, excludes
