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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from smith.arch import oci_platform_of, parse_arch
from smith.build_options import BuildOptions as BuildOptions
from smith.buildcache import pins_of, reuse_for
from smith.conventions import (
    ROOT,
    RuntimeUser,
    nss_documents,
)
from smith.errors import ImageFormatError, RecipeError, UsageError
from smith.layering import (
    Layering,
    LayerInputs,
    PackageDeps,
    dependency_order,
    layer_inputs,
    merged_layering,
    rpm_deps,
)
from smith.oci.compress import parse_compression
from smith.oci.image import Descriptor, ImageConfig, Platform
from smith.oci.layout import choose_format
from smith.oci.output import PlatformImage
from smith.oci.reference import is_registry_reference
from smith.oci.writer import ImageResult
from smith.partial import (
    Listing,
    NotReusable,
    Prior,
    capture,
    check_kept,
    reassemble,
    shared_files,
)
from smith.profile import recipe_profile
from smith.recipe import Recipe, RuntimeSet, load_recipe
from smith.resolve.fetch import Fetcher
from smith.resolve.localrepo import is_local_rpm
from smith.resolve.packages import fetch_packages
from smith.resolve.programs import (
    DEFAULT_PATH_VALUE,
)
from smith.resolve.repo import Repo, RepoConfig
from smith.resolve.rpm import RpmPackage, add_rpm_to_tree
from smith.resolve.solver import ResolvedPackage
from smith.resolve.store import ContentStore
from smith.result_json import Source, TreeSize, output_size, result_document
from smith.rootfs import (
    overlay_rootfs,
    rootfs_of,
)
from smith.sbom.formats import SbomFormat
from smith.settings import merged
from smith.shrink import (
    ConfigChanges,
    Output,
    ShrinkSpec,
    SourceKind,
    Staged,
    image_config,
    runtime_user,
    shrink,
    write_staged,
    write_staged_index,
)
from smith.sources import plan_recipe, relative_to, repo_configs
from smith.tree import FileTree, InlineBytes, path_sort_key

if TYPE_CHECKING:
    from smith.minimize import MinimizeOptions
    from smith.sharing import ExtraPath

log = logging.getLogger(__name__)

DEFAULT_OUTPUT = "image.tar.gz"  # the original smith's default
PACKAGE_FILES_ANNOTATION = "org.smith.package-files"
IMAGE_SUFFIXES = (".tar", ".tar.gz", ".tgz")


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
    # What the caches saved ("build": "hit"|"miss"|"off", "registry": ..., counts).
    cache: Mapping[str, object] = field(default_factory=dict)
    # --share-layers: the paths the image has only because another image of the fleet
    # needed them (its shared layers hold the union of what the images keep).
    extra: tuple[ExtraPath, ...] = field(default=(), repr=False)

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
        doc = result_document(self, explain)
        if self.extra:
            doc["extra"] = {
                "/" + x.path: {"package": x.package, "needed_by": list(x.needed_by)}
                for x in self.extra
            }
        return doc


@dataclass(frozen=True)
class Shared:
    """What the builds of one run share (a fleet: `smith build RECIPE...`): the download
    cache and the repositories already loaded, each fetched and parsed once."""

    fetcher: Fetcher
    repos: dict[RepoConfig, Repo] = field(default_factory=dict)


def build_recipe(
    recipe_path: str, options: BuildOptions, shared: Shared | None = None
) -> BuildResult | IndexBuildResult:
    """Build the recipe; for several architectures (`arch: [...]`, or `--arch` more than
    once), one image index with a manifest per platform, each built as it would be alone."""
    recipe = load_recipe(recipe_path)
    arches = options.arches or recipe.architectures
    if len(arches) > 1:
        return build_platforms(recipe, recipe_path, options, arches)
    return build(recipe_path, options, shared)


def build(recipe_path: str, options: BuildOptions, shared: Shared | None = None) -> BuildResult:
    """Build the recipe for one architecture (the recipe's, or the one `--arch`)."""
    recipe = checked_recipe(recipe_path, options)
    base = os.path.dirname(os.path.abspath(recipe_path))
    image = image_package(recipe.package, base)
    if image is not None:
        return build_from_image(recipe, recipe_path, image, options)
    fetcher = shared.fetcher if shared is not None else fetcher_for(options)
    output = output_of(options, recipe)
    # Alone, the repositories this resolution loads (none when the lock fits): what the
    # resolution memo revalidates on the next build.
    loaded = shared.repos if shared is not None else {}
    packages = recipe_packages(recipe, recipe_path, options, fetcher, loaded=loaded)
    reuse = reuse_for(recipe, recipe_path, options, output)
    if reuse is not None and shared is None:
        from smith.resolution_memo import remember

        remember(reuse, recipe, recipe_path, loaded.values(), packages)
    if reuse is not None and (cached := reuse.restore(packages, output)) is not None:
        return cached
    # An earlier build of the same recipe whose unchanged packages need no extracting; the
    # SBOM, provenance and package database read every package, so they build whole.
    reads_packages = (
        options.sbom or recipe.sbom or merged("provenance", options.provenance, recipe)
        or merged("package_db", options.package_db, recipe)
    )  # fmt: skip
    prior = reuse.prior(packages, fetcher.cache_dir) if reuse and not reads_packages else None
    with contextlib.ExitStack() as stack:
        try:
            staged = stage_build(
                recipe, recipe_path, options, fetcher, stack, packages=packages, prior=prior
            )
        except NotReusable as err:
            assert prior is not None  # only a partial build raises it
            log.info("%s: extracting every package (%s)", prior.source, err)
            prior = None
            staged = stage_build(recipe, recipe_path, options, fetcher, stack, packages=packages)
        result = write_staged(staged, output_settings(options, recipe, fetcher.cache_dir))
    built = build_result(staged, output, result)
    if reuse is not None:
        built = reuse.save(packages, built, staged.image.layer_trees(), staged.listing, prior)
    return built


def checked_recipe(recipe_path: str, options: BuildOptions) -> Recipe:
    """The recipe for the one architecture built, its output, format and layering checked
    (a bad output name, format or layer budget fails before any download)."""
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
    choose_format(output_of(options, recipe), merged("format", options.fmt, recipe))
    recipe_layering(recipe, options)
    return recipe


@dataclass(frozen=True)
class StagedRecipe:
    """A recipe's image shrunk and not yet written, with what cuts it into layers: a fleet
    that shares layers between its images cuts them all before writing any."""

    recipe: Recipe
    staged: Staged
    output: Output
    layers: LayerInputs


def stage_recipe(
    recipe_path: str, options: BuildOptions, shared: Shared, stack: contextlib.ExitStack
) -> StagedRecipe | None:
    """None when the recipe's image is not made of packages and layered (`package: IMAGE`,
    `layers: single`, several architectures): it is built alone. A parent image stays
    open on `stack`."""
    if len(options.arches or load_recipe(recipe_path).architectures) > 1:
        return None
    recipe = checked_recipe(recipe_path, options)
    if image_package(recipe.package, os.path.dirname(os.path.abspath(recipe_path))):
        return None
    fetcher = shared.fetcher
    packages = recipe_packages(recipe, recipe_path, options, fetcher, loaded=shared.repos)
    staged = stage_build(recipe, recipe_path, options, fetcher, stack, packages=packages)
    if staged.layering is None:
        return None
    return StagedRecipe(
        recipe, staged, output_settings(options, recipe, fetcher.cache_dir), staged.layering
    )


def write_recipe(
    staged: StagedRecipe, layers: Sequence[FileTree], extra: Sequence[ExtraPath] = ()
) -> BuildResult:
    """Write a staged recipe's image as `layers` (bottom first)."""
    image = replace(staged.staged.image, layers=tuple(layers))
    written = write_staged(replace(staged.staged, image=image), staged.output)
    return replace(build_result(staged.staged, staged.output.path, written), extra=tuple(extra))


def output_settings(
    options: BuildOptions, recipe: Recipe, cache_dir: str | Path | None = None
) -> Output:
    """How the recipe's image is written: the flags, else the recipe's settings."""
    return Output(
        output_of(options, recipe),
        fmt=merged("format", options.fmt, recipe),
        compression=parse_compression(merged("compression", options.compression, recipe)),
        epoch=merged("source_date_epoch", options.epoch, recipe),
        tag=merged("tag", options.tag, recipe) or "",
        cache_dir=str(cache_dir) if cache_dir is not None else None,
    )


def fetcher_for(options: BuildOptions) -> Fetcher:
    # --retries counts for repository downloads as for registries.
    retries = {"retries": options.registry.retries} if options.registry else {}
    return Fetcher(options.cache_dir, offline=options.offline, **retries)


def build_result(staged: Staged, output: str, image: ImageResult) -> BuildResult:
    shrunk = staged.shrunk
    return BuildResult(
        output=output,
        image=image,
        packages=staged.packages,
        kept=tuple(e.path for e in shrunk.tree),
        reasons=dict(shrunk.reasons),
        owners=dict(shrunk.owners),
        program=shrunk.program,
        platform=staged.image.config.platform,
        before=shrunk.before,
        after=shrunk.after,
        source_info=staged.source,
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
    order: tuple[str, ...] = ()  # the packages' NEVRAs, bottom of the requires graph first
    listing: Listing | None = None  # what the packages put in the tree, for a later build


def unpack_recipe(
    recipe: Recipe,
    recipe_path: str,
    options: BuildOptions,
    fetcher: Fetcher,
    lock_path: Path | None = None,
    packages: tuple[ResolvedPackage, ...] | None = None,
    prior: Prior | None = None,
) -> RecipeTree:
    """`packages`: the recipe's, when they are known already (else planned here); `prior`:
    an earlier build whose unchanged packages are not extracted again (smith/partial.py)."""
    base = os.path.dirname(os.path.abspath(recipe_path))
    rootfs = rootfs_of(base)
    if packages is None:
        packages = recipe_packages(recipe, recipe_path, options, fetcher, lock_path)
    store = ContentStore(fetcher.cache_dir / "content")
    full, deps, listing = package_tree(
        packages, fetcher, repo_configs(recipe, recipe_path), store, prior
    )
    if rootfs is not None:
        # The closure runs over the tree the image holds: packages, then rootfs/ over them,
        # so that a program shipped in rootfs/ finds its libraries in the packages.
        overlay_rootfs(full, rootfs)
    user = recipe_user(recipe)
    # A user or group given by name needs NSS to be looked up, as in the original.
    nss = recipe.nss or user_is_named(recipe)
    if nss:
        # The closure's NSS set follows the nsswitch.conf the image will have: smith's own.
        for path, data in nss_documents(user).items():
            full.add_file(path, InlineBytes(data), 0o644, origin="smith (nss)")
    order = dependency_order(deps)
    return RecipeTree(full, tuple(packages), user, nss, rootfs, order, listing)


def recipe_packages(
    recipe: Recipe,
    recipe_path: str,
    options: BuildOptions,
    fetcher: Fetcher,
    lock_path: Path | None = None,
    *,
    loaded: dict[RepoConfig, Repo] | None = None,
) -> tuple[ResolvedPackage, ...]:
    """The packages the recipe installs: the lock's, or resolved now."""
    if not recipe.package_requests and rootfs_of(os.path.dirname(os.path.abspath(recipe_path))):
        return ()  # A recipe with only a rootfs/ (a static binary) needs no package at all.
    log.info("resolving the packages of %s", recipe_path)
    return plan_recipe(
        recipe, recipe_path, fetcher, locked=options.locked, lock_path=lock_path, loaded=loaded
    )


def stage_build(
    recipe: Recipe,
    recipe_path: str,
    options: BuildOptions,
    fetcher: Fetcher,
    stack: contextlib.ExitStack,
    lock_path: Path | None = None,
    packages: tuple[ResolvedPackage, ...] | None = None,
    prior: Prior | None = None,
) -> Staged:
    """Resolve, fetch and shrink the recipe's packages for `recipe.arch`; a parent image
    is opened on `stack` (it must stay open until the image is written). With `prior`,
    NotReusable when the earlier build cannot stand in for the unchanged packages."""
    base = os.path.dirname(os.path.abspath(recipe_path))
    unpacked = unpack_recipe(recipe, recipe_path, options, fetcher, lock_path, packages, prior)
    full, packages = unpacked.tree, unpacked.packages
    package_db = None
    if merged("package_db", options.package_db, recipe):

        def package_db(kept: FileTree, full: FileTree) -> None:
            from smith.sbom.package_db import add_rpm_database  # sqlite only when asked for

            add_rpm_database(kept, full, packages, fetcher, repo_configs(recipe, recipe_path))

    shrunk = shrink(
        full,
        ShrinkSpec(
            SourceKind.PACKAGES,
            argv=(*(recipe.entrypoint or ()), *(recipe.cmd or ())),
            env=tuple(environment(recipe)),
            workdir=recipe.dir or "",
            user=unpacked.user,
            paths=recipe.paths,
            libraries=recipe.libraries,
            excludes=recipe.excludes,
            nss=unpacked.nss or RuntimeSet.NSS in recipe.runtime_libraries,
            gconv=RuntimeSet.GCONV in recipe.runtime_libraries,
            no_runtime=recipe.no_runtime_libraries,
            profile=recipe_profile(recipe, recipe_path),
            keep_going=options.keep_going,
            rootfs=unpacked.rootfs,
            mounts=recipe.mounts,
            package_db=package_db,
        ),
    )
    image_tree = shrunk.tree
    if prior is not None:
        check_kept(image_tree)
    config = image_config(
        # The recipe's env is the whole Env, as written (a key set twice stays twice).
        ImageConfig(platform=platform_for(recipe.arch), env=tuple(environment(recipe))),
        recipe_changes(recipe),
        unpacked.user,
    )
    sbom = options.sbom or ((SbomFormat.SPDX,) if recipe.sbom else ())
    referrers = None
    provenance = merged("provenance", options.provenance, recipe)
    if sbom or provenance:
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
            provenance=provenance,
        )
    parent = None
    if recipe.parent:
        ref = (
            recipe.parent
            if is_registry_reference(recipe.parent)
            else relative_to(recipe.parent, base)
        )
        # Here: the image readers (layouts, archives, registries) serve a parent alone.
        from smith.oci.reading import open_image

        try:
            parent = stack.enter_context(
                open_image(ref, platform=config.platform, registry=options.registry)
            )
        except ImageFormatError as err:  # "no image at PATH" alone does not say which key
            raise ImageFormatError(f"parent: {err}") from None
    annotations = {PACKAGE_FILES_ANNOTATION: package_files_json(dict(shrunk.owners))}
    inputs = layer_inputs(
        recipe_layering(recipe, options),
        LayerInputs(
            unpacked.order,
            shrunk.owners,
            # The program's own package is the application's: on top, with rootfs/.
            tuple(
                o
                for e in (full.get(shrunk.program), full.lookup(shrunk.program))
                if e and (o := e.origin)
            ),
            (unpacked.user.uid, unpacked.user.gid),
        ),
        len(parent.layers) if parent is not None else 0,
    )
    plan = inputs.plan(image_tree) if inputs is not None else None
    return Staged(
        PlatformImage(image_tree, config, parent, annotations, plan.trees() if plan else ()),
        shrunk,
        Source(
            recipe_path,
            packages_resolved=len(packages),
            packages_kept=tuple(sorted({o for o in shrunk.owners.values() if o})),
        ),
        packages,
        referrers,
        unpacked.listing,
        inputs,
    )


def recipe_layering(recipe: Recipe, options: BuildOptions) -> Layering:
    """--layers and --layer-budget over the recipe's `layers:` (a bad budget fails here,
    before any download)."""
    return merged_layering(
        options.layers, options.layer_budget, recipe.layers.layering() if recipe.layers else None
    )


def recipe_changes(recipe: Recipe) -> ConfigChanges:
    """What the recipe sets in the (empty) config of an image built from packages."""
    return ConfigChanges(
        entrypoint=recipe.entrypoint,
        cmd=recipe.cmd,
        labels=tuple(sorted(recipe.labels.items())),
        ports=recipe.ports,
        # `mounts` become volumes (the original crashed on them).
        volumes=recipe.mounts,
        workdir=recipe.dir or "",
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
    recipe_layering(recipe, options)
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
        written = write_staged_index(staged, output_settings(options, recipe, fetcher.cache_dir))
    results = tuple(
        (arch, build_result(s, output, image))
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
    """`package:` names an image (the original's OCI build type): the image source of the
    shrink core (its layers, with rootfs/ laid over them) takes the place of the packages,
    with the recipe's keys read as `smith minimize --recipe` reads them."""
    from smith.minimize import check_patterns, stage_minimize

    settings = image_settings(recipe, recipe_path, options)
    check_patterns(settings)
    output = output_settings(options, recipe)
    log.info("shrinking the image %s", image)
    with contextlib.ExitStack() as stack:
        staged = stage_minimize(image, output.path, settings, stack)
        return image_result(build_result(staged, output.path, write_staged(staged, output)))


def build_platforms_from_image(
    recipe: Recipe, recipe_path: str, image: str, options: BuildOptions, arches: Sequence[str]
) -> IndexBuildResult:
    """An image `package:` for several architectures: each platform of the source index
    shrunk as it would be alone (a source without one of them is refused, naming it), one
    index of them."""
    from smith.minimize import check_patterns, stage_minimize

    settings = image_settings(recipe, recipe_path, options)
    check_patterns(settings)
    output = output_settings(options, recipe)
    log.info("shrinking %d platforms of the image %s", len(arches), image)
    with contextlib.ExitStack() as stack:
        staged = [
            stage_minimize(image, output.path, replace(settings, platform=image_platform(a)), stack)
            for a in arches
        ]
        written = write_staged_index(staged, output)
    platforms = tuple(
        (arch, image_result(build_result(s, output.path, one)))
        for arch, s, one in zip(arches, staged, written.images, strict=True)
    )
    return IndexBuildResult(output.path, written.index, platforms, output_size(output.path))


def image_platform(arch: str) -> Platform:
    """What an image `package:` takes for `arch`: the architecture alone, which matches the
    source index's entry with or without a variant (linux/arm64 and linux/arm64/v8)."""
    return Platform(platform_for(arch).architecture, "linux")


def image_settings(recipe: Recipe, recipe_path: str, options: BuildOptions) -> MinimizeOptions:
    """How an image `package:` is shrunk for `recipe.arch`: the recipe's minimize settings."""
    from smith.minimize import MinimizeOptions
    from smith.minimize_recipe import read_minimize_recipe

    _named, settings = read_minimize_recipe(
        recipe_path,
        MinimizeOptions(
            platform=image_platform(recipe.arch),
            fmt=merged("format", options.fmt, recipe),
            registry=options.registry,
        ),
        compression=options.compression,
        epoch=options.epoch,
        tag=options.tag,
        layers=options.layers,
        layer_budget=options.layer_budget,
    )
    return settings


def image_result(result: BuildResult) -> BuildResult:
    """The image's layers name no package: its files are the image's."""
    return replace(result, owners={path: "image" for path in result.kept})


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


def package_tree(
    packages: Sequence[ResolvedPackage],
    fetcher: Fetcher,
    repos: Sequence[RepoConfig],
    store: ContentStore,
    prior: Prior | None,
) -> tuple[FileTree, tuple[PackageDeps, ...], Listing]:
    """The packages' tree (before rootfs/), their dependencies and the tree's listing:
    from `prior` and the packages that changed since, or every package extracted."""
    pins = pins_of(packages)
    named = tuple(zip((p.nevra for p in packages), pins, strict=True))
    if prior is not None:

        def extract(package: ResolvedPackage) -> tuple[FileTree, PackageDeps]:
            tree, (header,) = extract_packages([package], fetcher, repos, store)
            return tree, rpm_deps(header)

        try:
            done = reassemble(prior, packages, pins, store, extract)
        except NotReusable as err:
            log.info("%s: extracting every package (%s)", prior.source, err)
        else:
            log.info(
                "%d of %d packages extracted (%s)", done.extracted, len(packages), prior.source
            )
            listing = capture(done.tree, named, done.deps, prior.listing.shared, done.extracted)
            return done.tree, done.deps, listing
    log.info("fetching and extracting %d packages", len(packages))
    full, headers = extract_packages(packages, fetcher, repos, store)
    deps = tuple(rpm_deps(h) for h in headers)
    return full, deps, capture(full, named, deps, shared_files(headers), len(packages))


def extract_packages(
    packages: Sequence[ResolvedPackage],
    fetcher: Fetcher,
    repos: Sequence[RepoConfig],
    store: ContentStore,
) -> tuple[FileTree, tuple[RpmPackage, ...]]:
    """Fetch (checksum always, signature when the repository has gpgcheck) and unpack the
    packages into one tree, in resolution order; their headers too (layering orders by
    them)."""
    tree = FileTree()
    headers = [
        add_rpm_to_tree(tree, path, store) for path in fetch_packages(packages, fetcher, repos)
    ]
    return tree, tuple(headers)


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


# -- image -------------------------------------------------------------------------------------


def recipe_user(recipe: Recipe) -> RuntimeUser:
    if recipe.root:
        return ROOT
    return runtime_user(recipe.user or "", default=RuntimeUser(), groups=recipe.groups)


def user_is_named(recipe: Recipe) -> bool:
    """A user or group given by name needs NSS to be looked up, as in the original."""
    if not recipe.user or recipe.root:
        return bool(recipe.groups) and not recipe.root
    return any(part and not part.isdigit() for part in recipe.user.split(":"))


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
