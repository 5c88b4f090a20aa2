"""`smith build`: from a recipe to a microcontainer image, as one flat pipeline.

recipe -> packages (lock or resolve, fetch, extract) -> FileTree -> closure of the program
and what `paths` names -> microcontainer conventions -> image. Each step is a function
below; `build` reads like the recipe it follows.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from smith.arch import oci_platform_of, parse_arch
from smith.conventions import (
    ROOT,
    Conventions,
    RuntimeUser,
    apply_conventions,
    check_name,
    nss_documents,
    parse_user,
)
from smith.errors import RecipeError, SmithError, UsageError
from smith.globs import Excludes, glob_match, has_magic
from smith.oci.compress import parse_compression
from smith.oci.image import Descriptor, ImageConfig, Platform
from smith.oci.layout import choose_format, open_image
from smith.oci.output import PlatformImage, write_image, write_index_image
from smith.oci.reference import is_registry_reference
from smith.oci.registry_options import RegistryOptions
from smith.oci.writer import ImageResult
from smith.paths import normalize_path, parent_paths
from smith.profile import recipe_profile
from smith.recipe import Recipe, RuntimeSet, load_recipe
from smith.resolve.dependencies import Closure, Extras, LoaderEnv, compute_closure
from smith.resolve.fetch import Fetcher
from smith.resolve.localrepo import is_local_rpm
from smith.resolve.packages import fetch_packages
from smith.resolve.programs import (
    DEFAULT_PATH_VALUE,
    find_program,
    search_path,
    shown_candidates,
)
from smith.resolve.repo import RepoConfig
from smith.resolve.rpm import add_rpm_to_tree
from smith.resolve.runtime_sets import rules_without
from smith.resolve.solver import ResolvedPackage
from smith.resolve.store import ContentStore
from smith.result_json import Source, TreeSize, output_size, result_document
from smith.rootfs import (
    add_mount_points,
    added_reason,
    overlay_rootfs,
    rootfs_of,
)
from smith.sbom.formats import SbomFormat
from smith.settings import merged
from smith.sources import plan_recipe, relative_to, repo_configs
from smith.tree import FileTree, InlineBytes, Kind, path_sort_key

if TYPE_CHECKING:
    from smith.minimize import MinimizeOptions, MinimizeResult
    from smith.sbom.attach import Attacher

log = logging.getLogger(__name__)

DEFAULT_OUTPUT = "image.tar.gz"  # the original smith's default
PACKAGE_FILES_ANNOTATION = "org.smith.package-files"
IMAGE_SUFFIXES = (".tar", ".tar.gz", ".tgz")


@dataclass(frozen=True)
class BuildOptions:
    output: str | None = None
    fmt: str | None = None
    tag: str | None = None
    compression: str | None = None
    locked: bool = False
    offline: bool = False
    cache_dir: str | None = None
    keep_going: bool = False
    epoch: int | None = None
    registry: RegistryOptions | None = None  # for a parent named by a registry reference
    sbom: tuple[SbomFormat, ...] = ()  # SBOMs to attach as OCI referrers of the image
    provenance: bool = False  # and an in-toto SLSA provenance statement
    package_db: bool = False  # write the kept packages' rpm database into the image
    arches: tuple[str, ...] = ()  # --arch: instead of the recipe's


@dataclass(frozen=True)
class BuildResult:
    output: str
    image: ImageResult
    packages: tuple[ResolvedPackage, ...]
    kept: tuple[str, ...]  # paths of the image, conventions included
    reasons: dict[str, str] = field(repr=False)
    owners: dict[str, str] = field(repr=False)
    program: str
    platform: Platform
    before: TreeSize  # the whole tree: packages and rootfs/, or the image
    after: TreeSize
    source_info: Source

    @property
    def image_bytes(self) -> int:
        return output_size(self.output)

    def why(self, path: str) -> str:
        return self.reasons.get(path) or (
            "named by the recipe" if self.owners.get(path) else "microcontainer conventions"
        )

    def explained(self) -> dict[str, str]:
        return {path: self.why(path) for path in self.kept}

    def summary(self, explain: bool = False) -> dict[str, object]:
        return result_document(self, explain)


def build_recipe(recipe_path: str, options: BuildOptions) -> BuildResult | IndexBuildResult:
    """Build the recipe; for several architectures (`arch: [...]`, or `--arch` more than
    once), one image index with a manifest per platform, each built as it would be alone."""
    recipe = load_recipe(recipe_path)
    arches = options.arches or recipe.architectures
    if len(arches) > 1:
        return build_platforms(recipe, recipe_path, options, arches)
    return build(recipe_path, options)


def build(recipe_path: str, options: BuildOptions) -> BuildResult:
    """Build the recipe for one architecture (the recipe's, or the one `--arch`)."""
    recipe = load_recipe(recipe_path)
    arches = options.arches or recipe.architectures
    if len(arches) > 1:
        raise UsageError(
            f"{recipe_path} is built for {', '.join(arches)}: here only one (--arch) can be"
        )
    if options.arches:
        parse_arch(arches[0])
    if arches[0] != recipe.arch:
        recipe = recipe.model_copy(update={"arch": arches[0], "arches": ()})
    base = os.path.dirname(os.path.abspath(recipe_path))
    # A bad output name or format fails before any download.
    choose_format(output_of(options, recipe), merged("format", options.fmt, recipe))
    image = image_package(recipe.package, base)
    if image is not None:
        return build_from_image(recipe, recipe_path, image, options)
    fetcher = fetcher_for(options)
    output = output_of(options, recipe)
    with contextlib.ExitStack() as stack:
        staged = stage_build(recipe, recipe_path, options, fetcher, stack)
        log.info("writing %d paths to %s", len(staged.image.tree), output)
        result = write_image(
            staged.image.tree,
            staged.image.config,
            output,
            fmt=merged("format", options.fmt, recipe),
            compression=parse_compression(merged("compression", options.compression, recipe)),
            epoch=merged("source_date_epoch", options.epoch, recipe),
            tag=merged("tag", options.tag, recipe) or "",
            parent=staged.image.parent,
            annotations=staged.image.annotations,
            cache_dir=str(fetcher.cache_dir),
            referrers=staged.referrers,
        )
    return staged.result(output, result)


def fetcher_for(options: BuildOptions) -> Fetcher:
    # --retries counts for repository downloads as for registries.
    retries = {"retries": options.registry.retries} if options.registry else {}
    return Fetcher(options.cache_dir, offline=options.offline, **retries)


@dataclass(frozen=True)
class StagedBuild:
    """One architecture's image, ready to be written, and what its BuildResult reports."""

    image: PlatformImage
    packages: tuple[ResolvedPackage, ...]
    reasons: dict[str, str]
    owners: dict[str, str]
    program: str
    before: TreeSize
    source_info: Source
    referrers: Attacher | None = None  # the SBOM and provenance to attach, if asked for

    def result(self, output: str, image: ImageResult) -> BuildResult:
        return BuildResult(
            output=output,
            image=image,
            packages=self.packages,
            kept=tuple(e.path for e in self.image.tree),
            reasons=self.reasons,
            owners=self.owners,
            program=self.program,
            platform=self.image.config.platform,
            before=self.before,
            after=TreeSize.of(self.image.tree),
            source_info=self.source_info,
        )


@dataclass(frozen=True)
class RecipeTree:
    """A recipe's packages (and rootfs/) in one tree, before the closure picks from it:
    what `smith build` minimizes and `smith probe RECIPE` runs."""

    tree: FileTree
    packages: tuple[ResolvedPackage, ...]
    user: RuntimeUser
    nss: bool
    rootfs: str | None


def unpack_recipe(
    recipe: Recipe,
    recipe_path: str,
    options: BuildOptions,
    fetcher: Fetcher,
    lock_path: Path | None = None,
) -> RecipeTree:
    base = os.path.dirname(os.path.abspath(recipe_path))
    rootfs = rootfs_of(base)
    packages: tuple[ResolvedPackage, ...] = ()
    if recipe.package_requests or rootfs is None:
        # A recipe with only a rootfs/ (a static binary) needs no package at all.
        log.info("resolving the packages of %s", recipe_path)
        packages = plan_recipe(
            recipe, recipe_path, fetcher, locked=options.locked, lock_path=lock_path
        )
    log.info("fetching and extracting %d packages", len(packages))
    store = ContentStore(fetcher.cache_dir / "content")
    full = extract_packages(packages, fetcher, repo_configs(recipe, recipe_path), store)
    if rootfs is not None:
        # The closure runs over the tree the image holds: packages, then rootfs/ over them,
        # so that a program shipped in rootfs/ finds its libraries in the packages.
        overlay_rootfs(full, rootfs)
    user = runtime_user(recipe)
    # A user or group given by name needs NSS to be looked up, as in the original.
    nss = recipe.nss or user_is_named(recipe)
    if nss:
        # The closure's NSS set follows the nsswitch.conf the image will have: smith's own.
        for path, data in nss_documents(user).items():
            full.add_file(path, InlineBytes(data), 0o644, origin="smith (nss)")
    return RecipeTree(full, tuple(packages), user, nss, rootfs)


def stage_build(
    recipe: Recipe,
    recipe_path: str,
    options: BuildOptions,
    fetcher: Fetcher,
    stack: contextlib.ExitStack,
    lock_path: Path | None = None,
) -> StagedBuild:
    """Resolve, fetch and close over the recipe's packages for `recipe.arch`; a parent
    image is opened on `stack` (it must stay open until the image is written)."""
    base = os.path.dirname(os.path.abspath(recipe_path))
    unpacked = unpack_recipe(recipe, recipe_path, options, fetcher, lock_path)
    full, packages = unpacked.tree, unpacked.packages
    user, nss, rootfs = unpacked.user, unpacked.nss, unpacked.rootfs
    program = recipe_program(full, recipe)
    paths = expand_paths(full, recipe.paths, what="paths")
    starts = [program, *(p for p in paths if is_regular_file(full, p))]
    log.info("walking the ELF closure of /%s and %d named paths", program, len(paths))
    profile = recipe_profile(recipe, recipe_path)
    closure = compute_closure(
        full,
        starts,
        env=LoaderEnv.from_env(environment(recipe), recipe.dir or "/"),
        extras=Extras(
            nss=nss or RuntimeSet.NSS in recipe.runtime_libraries,
            gconv=RuntimeSet.GCONV in recipe.runtime_libraries,
            globs=recipe.libraries,
            rules=rules_without(recipe.no_runtime_libraries, profiled=bool(profile)),
            profile=profile,
        ),
        keep_going=options.keep_going,
    )
    for missing in closure.missing:
        log.warning("%s", missing)
    excludes = Excludes.parse(recipe.excludes)
    kept = select_kept(full, closure, paths, excludes)
    if program not in kept:
        # An image whose entrypoint is gone cannot run: say which pattern did it.
        pattern = excludes.matching(program)
        raise RecipeError(f"excludes: {pattern!r} leaves out the program /{program}")
    if rootfs is not None:
        # All of rootfs/ is shipped, excludes or not; laid over what is kept as before the
        # closure saw it, a directory the kept packages do not need is rootfs/'s own.
        overlay_rootfs(kept, rootfs)
    add_mount_points(kept, recipe.mounts)
    if options.package_db or recipe.package_db:
        from smith.sbom.package_db import add_rpm_database  # sqlite only when asked for

        add_rpm_database(kept, full, packages, fetcher, repo_configs(recipe, recipe_path))
    image_tree = apply_conventions(kept, Conventions(user=user, nss=nss))
    owners = {e.path: e.origin for e in image_tree}
    config = image_config(recipe, user.config_user)
    sbom = options.sbom or ((SbomFormat.SPDX,) if recipe.sbom else ())
    referrers = None
    if sbom or options.provenance or recipe.provenance:
        from smith.sbom.attach import build_referrers  # the renderers only when asked for

        referrers = build_referrers(
            image_tree,
            full,
            packages,
            fetcher,
            repo_configs(recipe, recipe_path),
            recipe_path=recipe_path,
            locked=options.locked,
            epoch=merged("source_date_epoch", options.epoch, recipe),
            tag=merged("tag", options.tag, recipe) or "",
            sbom=sbom,
            provenance=options.provenance or recipe.provenance,
        )
    parent = None
    if recipe.parent:
        ref = (
            recipe.parent
            if is_registry_reference(recipe.parent)
            else relative_to(recipe.parent, base)
        )
        parent = stack.enter_context(
            open_image(ref, platform=config.platform, registry=options.registry)
        )
    annotations = {PACKAGE_FILES_ANNOTATION: package_files_json(owners)}
    return StagedBuild(
        PlatformImage(image_tree, config, parent, annotations),
        packages,
        explain_all(image_tree, closure, program, paths),
        owners,
        program,
        TreeSize.of(full),
        Source(
            recipe_path,
            packages_resolved=len(packages),
            packages_kept=tuple(sorted({o for o in owners.values() if o})),
        ),
        referrers,
    )


@dataclass(frozen=True)
class IndexBuildResult:
    """A build for several architectures: the index and each platform's own result."""

    output: str
    index: Descriptor
    platforms: tuple[tuple[str, BuildResult], ...]  # (arch, result), in the recipe's order
    image_bytes: int = 0

    def summary(self) -> dict[str, object]:
        return {
            "output": self.output,
            "index": self.index.digest,
            "size": self.image_bytes,
            "platforms": {
                str(result.image.manifest.platform): {"arch": arch, **result.summary()}
                for arch, result in self.platforms
            },
        }


def build_platforms(
    recipe: Recipe, recipe_path: str, options: BuildOptions, arches: Sequence[str]
) -> IndexBuildResult:
    """Each architecture resolved, fetched and closed over from its own packages (its own
    section of smith.lock), then one index of their manifests."""
    for arch in arches:
        parse_arch(arch)
    if len(set(arches)) != len(arches):
        raise RecipeError(f"--arch: {', '.join(arches)} names an architecture twice")
    base = os.path.dirname(os.path.abspath(recipe_path))
    image = image_package(recipe.package, base)
    if image is not None:
        return build_platforms_from_image(recipe, recipe_path, image, options, arches)
    output = output_of(options, recipe)
    choose_format(output, merged("format", options.fmt, recipe))
    fetcher = fetcher_for(options)
    with contextlib.ExitStack() as stack:
        staged = [
            stage_build(
                recipe.model_copy(update={"arch": arch, "arches": ()}),
                recipe_path,
                options,
                fetcher,
                stack,
            )
            for arch in arches
        ]
        log.info("writing an index of %d platforms to %s", len(staged), output)
        written = write_index_image(
            # Each platform's SBOM and provenance attach to its own manifest.
            [replace(s.image, referrers=s.referrers) for s in staged],
            output,
            fmt=merged("format", options.fmt, recipe),
            compression=parse_compression(merged("compression", options.compression, recipe)),
            epoch=merged("source_date_epoch", options.epoch, recipe),
            tag=merged("tag", options.tag, recipe) or "",
            cache_dir=str(fetcher.cache_dir),
        )
    results = tuple(
        (arch, s.result(output, image))
        for arch, s, image in zip(arches, staged, written.images, strict=True)
    )
    return IndexBuildResult(output, written.index, results, output_size(output))


def platform_for(arch: str) -> Platform:
    """The OCI platform of an architecture (linux/arm64/v8 for aarch64)."""
    architecture, variant = oci_platform_of(arch)
    return Platform(architecture, "linux", variant)


def build_from_image(
    recipe: Recipe, recipe_path: str, image: str, options: BuildOptions
) -> BuildResult:
    """`package:` names an image (the original's OCI build type): its layers, with rootfs/
    laid over them, are the tree the program and its closure are kept from, as by
    `smith minimize --recipe`."""
    from smith.minimize import minimize_image

    settings = image_settings(recipe, recipe_path, options)
    output = output_of(options, recipe)
    log.info("shrinking the image %s", image)
    return image_build_result(output, minimize_image(image, output, settings))


def build_platforms_from_image(
    recipe: Recipe, recipe_path: str, image: str, options: BuildOptions, arches: Sequence[str]
) -> IndexBuildResult:
    """An image `package:` for several architectures: each platform of the source index
    shrunk as it would be alone (a source without one of them is refused, naming it), one
    index of them."""
    from smith.minimize import minimize_platforms

    settings = image_settings(recipe, recipe_path, options)
    output = output_of(options, recipe)
    wanted = [Platform(platform_for(arch).architecture, "linux") for arch in arches]
    log.info("shrinking %d platforms of the image %s", len(wanted), image)
    written, results = minimize_platforms(image, output, settings, wanted)
    platforms = tuple(
        (arch, image_build_result(output, r)) for arch, r in zip(arches, results, strict=True)
    )
    return IndexBuildResult(output, written.index, platforms, output_size(output))


def image_settings(recipe: Recipe, recipe_path: str, options: BuildOptions) -> MinimizeOptions:
    """How an image `package:` is shrunk for `recipe.arch`: the recipe's minimize settings."""
    from smith.minimize import MinimizeOptions
    from smith.minimize_recipe import read_minimize_recipe

    _named, settings = read_minimize_recipe(
        recipe_path,
        MinimizeOptions(
            # The architecture alone: it matches the source index's entry with or without
            # a variant (linux/arm64 and linux/arm64/v8).
            platform=Platform(platform_for(recipe.arch).architecture, "linux"),
            fmt=merged("format", options.fmt, recipe),
            registry=options.registry,
        ),
        compression=options.compression,
        epoch=options.epoch,
        tag=options.tag,
    )
    return settings


def image_build_result(output: str, result: MinimizeResult) -> BuildResult:
    return BuildResult(
        output=output,
        image=result.image,
        packages=(),
        kept=tuple(result.kept),
        reasons=dict(result.kept),
        owners={path: "image" for path in result.kept},
        program=result.program,
        platform=result.platform,
        before=result.before,
        after=result.after,
        source_info=result.source_info,
    )


def image_package(package: str | None, base: str) -> str | None:
    """The image `package:` names, if it names one rather than an RPM: a registry reference
    (`docker://`, the original's `https://registry-1.docker.io/library/fedora`), or a path
    (with a `/` or an archive's suffix) to an OCI layout, oci-archive or docker-archive,
    relative to the recipe. RPM names hold neither."""
    if not package or is_local_rpm(package):
        return None
    if is_registry_reference(package):
        return package
    if "/" in package or package.endswith(IMAGE_SUFFIXES):
        return relative_to(package, base)
    return None


# -- packages --------------------------------------------------------------------------------


def extract_packages(
    packages: Sequence[ResolvedPackage],
    fetcher: Fetcher,
    repos: Sequence[RepoConfig],
    store: ContentStore,
) -> FileTree:
    """Fetch (checksum always, signature when the repository has gpgcheck) and unpack the
    packages into one tree, in resolution order."""
    tree = FileTree()
    for path in fetch_packages(packages, fetcher, repos):
        add_rpm_to_tree(tree, path, store)
    return tree


# -- what is kept ----------------------------------------------------------------------------


def environment(recipe: Recipe) -> list[str]:
    env = list(recipe.env)
    if not any(e.startswith("PATH=") for e in env):
        env.insert(0, f"PATH={DEFAULT_PATH_VALUE}")
    if recipe.library_path:
        extra = ":".join(recipe.library_path)
        env = [f"{e}:{extra}" if e.startswith("LD_LIBRARY_PATH=") else e for e in env]
        if not any(e.startswith("LD_LIBRARY_PATH=") for e in env):
            env.append(f"LD_LIBRARY_PATH={extra}")
    return env


def recipe_program(tree: FileTree, recipe: Recipe) -> str:
    """The program the image runs: the entrypoint's first word, else the cmd's, through
    the recipe's PATH, inside the tree of the packages and rootfs/."""
    argv = recipe.entrypoint or recipe.cmd
    if not argv:
        raise RecipeError("the recipe names no program: set `entrypoint` or `cmd`")
    name, path, workdir = argv[0], search_path(environment(recipe)), recipe.dir or "/"
    # A regular file, executable or not: smith built such images before minimize's stricter
    # (the runtime's) rule was shared, and recipes rely on it.
    found = find_program(name, path, workdir, lambda candidate: is_regular_file(tree, candidate))
    if found is None:
        where = shown_candidates(name, path, workdir)
        raise SmithError(
            f"the program {name!r} is in none of the packages or rootfs/ (looked at {where})"
        )
    return found


def expand_paths(tree: FileTree, patterns: Iterable[str], *, what: str) -> dict[str, str]:
    """Tree paths matching each pattern (a path or a glob; `*` stays within one directory,
    `**` crosses any number); a directory brings everything below it. A pattern that
    matches nothing is an error: it is almost always a typo."""
    all_paths = tree.paths()
    # Directories no package owns (/etc/ssl of a package that ships only
    # /etc/ssl/certs/x.pem) are there all the same, as on disk after an install.
    implicit = {d for p in all_paths for d in parent_paths(p)} - set(all_paths)
    out: dict[str, str] = {}  # path -> the pattern that named it
    for pattern in patterns:
        norm = normalize_path(pattern, what=f"{what} entry")
        if not norm:  # "/": the root directory brings everything the packages hold
            for p in all_paths:
                out.setdefault(p, pattern)
            continue
        if has_magic(norm):
            matches = [p for p in [*all_paths, *implicit] if glob_match(p, norm)]
        else:
            # A named symlink is kept, and so is what it leads to.
            real = tree.resolve(norm)
            matches = [p for p in dict.fromkeys((norm, real)) if p in tree or p in implicit]
        if not matches:
            raise SmithError(f"{what}: {pattern!r} matches nothing in the packages")
        for match in sorted(matches, key=path_sort_key):
            entry = tree.get(match)
            if match not in implicit:
                out.setdefault(match, pattern)
            if match in implicit or (entry is not None and entry.kind is Kind.DIR):
                prefix = match + "/"
                for p in all_paths:
                    if p.startswith(prefix):
                        out.setdefault(p, pattern)
    return out


def is_regular_file(tree: FileTree, path: str) -> bool:
    entry = tree.lookup(path)
    return entry is not None and entry.kind is Kind.FILE


def explain_all(
    tree: FileTree, closure: Closure, program: str, paths: dict[str, str]
) -> dict[str, str]:
    """Why each path of the image is there, in one line."""

    def start_reason(path: str) -> str:
        if path == program:
            return "the program (entrypoint/cmd)"
        return f"named by paths: {paths[path]}" if path in paths else "start"

    reasons = {}
    for entry in tree:
        if entry.path in closure.kept:
            chain = [line.split(": ", 1) for line in closure.explain(entry.path)]
            words = [why for _path, why in chain]
            if words and words[-1] == "start":
                words[-1] = start_reason(chain[-1][0].lstrip("/"))
            reasons[entry.path] = " <- ".join(words)
        elif entry.path in paths:
            reasons[entry.path] = f"named by paths: {paths[entry.path]}"
        elif entry.origin.startswith("rootfs"):
            reasons[entry.path] = "from rootfs/ beside the recipe"
        elif added := added_reason(entry):
            reasons[entry.path] = added
        elif entry.kind is Kind.DIR:
            reasons[entry.path] = "parent directory of kept files"
        else:
            reasons[entry.path] = entry.origin or "smith"
    return reasons


def select_kept(
    full: FileTree, closure: Closure, paths: Iterable[str], excludes: Excludes
) -> FileTree:
    """The kept part of `full`: the closure and the named paths, minus the excludes, with
    every parent directory as the packages had it."""
    wanted = set(closure.kept) | set(paths)
    excluded = {p for p in wanted if excludes.matching(p)}
    return full.subtree(sorted(wanted - excluded, key=path_sort_key))


# -- image -------------------------------------------------------------------------------------


def runtime_user(recipe: Recipe) -> RuntimeUser:
    if recipe.root:
        return ROOT
    user = parse_user(recipe.user) if recipe.user else RuntimeUser()
    for name in recipe.groups:
        check_name(name, name)
    return replace(user, groups=recipe.groups)


def user_is_named(recipe: Recipe) -> bool:
    """A user or group given by name needs NSS to be looked up, as in the original."""
    if not recipe.user or recipe.root:
        return bool(recipe.groups) and not recipe.root
    return any(part and not part.isdigit() for part in recipe.user.split(":"))


def image_config(recipe: Recipe, user: str) -> ImageConfig:
    return ImageConfig(
        platform=platform_for(recipe.arch),
        user=user,
        env=tuple(environment(recipe)),
        entrypoint=recipe.entrypoint,
        cmd=recipe.cmd,
        working_dir=recipe.dir or "",
        exposed_ports=recipe.ports,
        # `mounts` become volumes (the original crashed on them).
        volumes=recipe.mounts,
        labels=tuple(sorted(recipe.labels.items())),
    )


def output_of(options: BuildOptions, recipe: Recipe) -> str:
    return str(merged("output", options.output, recipe, DEFAULT_OUTPUT))


def package_files_json(owners: dict[str, str]) -> str:
    """Which package each kept file came from, as canonical JSON {origin: [paths]}.

    An annotation of the manifest: it names the owners without changing any byte a
    runtime unpacks."""
    by_origin: dict[str, list[str]] = {}
    for path in sorted(owners, key=path_sort_key):
        entry_origin = owners[path] or "smith"
        by_origin.setdefault(entry_origin, []).append("/" + printable_path(path))
    return json.dumps(by_origin, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def printable_path(path: str) -> str:
    """`path` as UTF-8 text: a byte that is not UTF-8 (a surrogate here) is shown as \\xNN,
    as JSON and terminals cannot carry it."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
