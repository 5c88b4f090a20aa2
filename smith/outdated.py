"""`smith outdated`: which pinned packages the repositories offer newer, and what that fixes.

For each locked package of a recipe (or each package an image records), the newest version
its repositories offer under the rules a resolution follows (libsolv's: arch, excludes,
priorities), and the advisories of the repositories' updateinfo.xml that apply to the
pinned version and that the newer one fixes. A package is flagged as affecting the image
only when it contributes a kept file: for a recipe that is what a build of its lock keeps
(the build runs into a temporary directory; nothing beside the recipe changes), for an
image what its package-files annotation records.

The exit status follows dnf check-update: 0 when nothing is newer, 100 when updates exist,
and SECURITY_STATUS when a security advisory applies to a package in the image, so that a
CI job can gate on that alone.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from smith.build import PACKAGE_FILES_ANNOTATION, BuildOptions, BuildResult, build
from smith.errors import ImageFormatError, ResolveError
from smith.limits import json_document
from smith.oci.registry import RegistryOptions
from smith.recipe import load_recipe
from smith.resolve.fetch import Fetcher
from smith.resolve.lock import lock_path_for, missing_section, read_lock_file
from smith.resolve.repo import Repo, RepoConfig, load_repos
from smith.resolve.solver import ResolvedPackage, compare_evr, newest_versions
from smith.resolve.updateinfo import Advisory, AdvisoryType, advisories_fixed, repo_advisories
from smith.sources import recipe_repos


class Status(IntEnum):
    """The exit status of `smith outdated` (the worst over everything it looked at)."""

    CURRENT = 0
    UPDATES = 100  # as dnf check-update
    SECURITY = 101  # a security advisory applies to a package whose files the image holds


@dataclass(frozen=True)
class Held:
    """A package as a lock pins it or an image records it."""

    name: str
    evr: str
    arch: str

    @property
    def nevra(self) -> str:
        return f"{self.name}-{self.evr}.{self.arch}"


@dataclass(frozen=True)
class PackageState:
    held: Held
    newest: ResolvedPackage | None  # None: no repository offers this name and arch any more
    affects_image: bool
    advisories: tuple[Advisory, ...]  # applying to `held`, fixed by `newest`

    @property
    def outdated(self) -> bool:
        return self.newest is not None and compare_evr(self.newest.evr, self.held.evr) > 0

    @property
    def security(self) -> bool:
        return any(a.type is AdvisoryType.SECURITY for a in self.advisories)


@dataclass(frozen=True)
class Report:
    source: str
    kind: str  # "recipe" or "image"
    packages: tuple[PackageState, ...]

    @property
    def status(self) -> Status:
        if any(p.outdated and p.affects_image and p.security for p in self.packages):
            return Status.SECURITY
        return Status.UPDATES if any(p.outdated for p in self.packages) else Status.CURRENT


def overall_status(reports: Iterable[Report]) -> Status:
    return max((r.status for r in reports), default=Status.CURRENT)


def compare_held(
    source: str,
    kind: str,
    held: Sequence[Held],
    repos: Sequence[Repo],
    in_image: set[str],
    *,
    arch: str,
    excludes: Sequence[str],
) -> Report:
    """`in_image`: the NEVRAs that contribute a kept file."""
    newest = newest_versions([(h.name, h.arch) for h in held], repos, arch=arch, excludes=excludes)
    advisories = repo_advisories(repos)
    states = []
    for h in sorted(held, key=lambda h: (h.name, h.arch)):
        new = newest.get((h.name, h.arch))
        fixed = advisories_fixed(h.name, h.arch, h.evr, new.evr, advisories) if new else ()
        states.append(PackageState(h, new, h.nevra in in_image, fixed))
    return Report(source, kind, tuple(states))


# -- recipes ---------------------------------------------------------------------------------


def check_recipe(
    recipe_path: str, fetcher: Fetcher, loaded: dict[RepoConfig, Repo] | None = None
) -> tuple[Report, ...]:
    """The recipe's smith.lock against what its repositories offer now: a report for each
    architecture of the recipe (named in the source when there are several), from that
    architecture's section and repositories."""
    recipe = load_recipe(recipe_path)
    lock_path = lock_path_for(recipe_path)
    if not lock_path.exists():
        raise ResolveError(f"{recipe_path}: there is no smith.lock beside it (run `smith lock`)")
    lock_file = read_lock_file(lock_path)
    reports = []
    for arch in recipe.arches or ("",):
        one = recipe.model_copy(update={"arch": arch, "arches": ()}) if arch else recipe
        lock = lock_file.section(one.arch)
        if lock is None:
            raise ResolveError(missing_section(lock_path, one.arch))
        _, repos = recipe_repos(one, recipe_path, fetcher, updateinfo=True, loaded=loaded)
        kept = kept_packages(trial_build(recipe_path, fetcher, compression="none", arch=arch))
        held = [Held(p.name, p.evr, p.arch) for p in lock.packages]
        source = f"{recipe_path} ({arch})" if arch else recipe_path
        reports.append(
            compare_held(
                source, "recipe", held, repos, kept, arch=one.arch, excludes=recipe.excludes
            )
        )
    return tuple(reports)


def trial_build(
    recipe_path: str, fetcher: Fetcher, *, compression: str | None, arch: str = ""
) -> BuildResult:
    """A build of the recipe's lock as it is now (for `arch` alone, of a recipe of several),
    into a directory removed afterwards: the packages whose files it keeps, and its layers
    and their sizes."""
    with tempfile.TemporaryDirectory(prefix="smith-outdated-") as tmp:
        return build(
            recipe_path,
            BuildOptions(
                output=os.path.join(tmp, "image"),
                fmt="oci",
                compression=compression,
                locked=True,
                offline=fetcher.offline,
                cache_dir=str(fetcher.cache_dir),
                arches=(arch,) if arch else (),
            ),
        )


def kept_packages(result: BuildResult) -> set[str]:
    return {origin for origin in result.owners.values() if origin}


# -- images ----------------------------------------------------------------------------------


def image_packages(source: str, registry: RegistryOptions | None = None) -> tuple[Held, ...]:
    """The packages an image built by smith records (its package-files annotation): every
    one of them contributes a kept file."""
    from smith.oci.layout import open_image

    with open_image(source, registry=registry) as image:
        annotations = image.manifest.get("annotations") or {}
    recorded = annotations.get(PACKAGE_FILES_ANNOTATION)
    if not isinstance(recorded, str):
        raise ImageFormatError(
            f"{source}: the image records no package list ({PACKAGE_FILES_ANNOTATION}): "
            "was it built by `smith build`?"
        )
    try:
        owners = json_document(recorded, f"{source}: {PACKAGE_FILES_ANNOTATION}")
    except json.JSONDecodeError as err:
        raise ImageFormatError(f"{source}: {PACKAGE_FILES_ANNOTATION} is not JSON: {err}") from None
    if not isinstance(owners, dict):
        raise ImageFormatError(f"{source}: {PACKAGE_FILES_ANNOTATION} is not a JSON object")
    held = (parse_nevra(origin) for origin in owners)
    return tuple(sorted((h for h in held if h is not None), key=lambda h: (h.name, h.arch)))


def parse_nevra(text: str) -> Held | None:
    """name-[epoch:]version-release.arch, or None for what is not a package (rootfs/,
    smith's own files)."""
    if " " in text or "/" in text:
        return None
    rest, dot, arch = text.rpartition(".")
    parts = rest.rsplit("-", 2)
    if not (dot and arch) or len(parts) != 3 or not all(parts):
        return None
    return Held(parts[0], f"{parts[1]}-{parts[2]}", arch)


def check_image(
    source: str,
    configs: Sequence[RepoConfig],
    fetcher: Fetcher,
    *,
    arch: str,
    excludes: Sequence[str] = (),
    loaded: dict[RepoConfig, Repo] | None = None,
    registry: RegistryOptions | None = None,
) -> Report:
    held = image_packages(source, registry)
    repos = load_repos(configs, fetcher, updateinfo=True, loaded=loaded)
    everything = {h.nevra for h in held}
    return compare_held(source, "image", held, repos, everything, arch=arch, excludes=excludes)


# -- output ----------------------------------------------------------------------------------


def advisory_json(adv: Advisory) -> dict[str, Any]:
    return {
        "id": adv.id,
        "type": adv.type.value,
        "severity": adv.severity,
        "issued": adv.issued,
        "title": adv.title,
        "cves": list(adv.cves),
        "repo": adv.repo_id,
    }


def report_json(reports: Sequence[Report]) -> str:
    status = overall_status(reports)
    body = {
        "status": status.name.lower(),
        "exit_code": int(status),
        "sources": [
            {
                "source": r.source,
                "kind": r.kind,
                "status": r.status.name.lower(),
                "packages": [
                    {
                        "name": p.held.name,
                        "arch": p.held.arch,
                        "locked": p.held.evr,
                        "newest": p.newest.evr if p.newest else None,
                        "newest_repo": p.newest.repo_id if p.newest else None,
                        "outdated": p.outdated,
                        "affects_image": p.affects_image,
                        "advisories": [advisory_json(a) for a in p.advisories],
                    }
                    for p in r.packages
                ],
            }
            for r in reports
        ],
    }
    return json.dumps(body, sort_keys=True, indent=2, ensure_ascii=False)


def report_lines(report: Report) -> list[str]:
    outdated = [p for p in report.packages if p.outdated]
    head = f"{report.source}: {len(outdated)} of {len(report.packages)} packages have updates"
    lines = [head]
    gone = [p.held.nevra for p in report.packages if p.newest is None]
    for title, group in (
        ("in the image", [p for p in outdated if p.affects_image]),
        ("not in the image (no kept file)", [p for p in outdated if not p.affects_image]),
    ):
        if not group:
            continue
        lines.append(f"  {title}:")
        width = max(len(p.held.name) + len(p.held.arch) + 1 for p in group)
        for p in group:
            assert p.newest is not None
            name = f"{p.held.name}.{p.held.arch}".ljust(width)
            lines.append(f"    {name}  {p.held.evr} -> {p.newest.evr}  ({p.newest.repo_id})")
            lines += [f"      {a.describe()}" for a in p.advisories]
    if gone:
        lines.append(f"  offered by no repository any more: {', '.join(gone)}")
    return lines
