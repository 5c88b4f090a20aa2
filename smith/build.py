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
import posixpath
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from smith.arch import ARCHES, check_arch, parse_arch
from smith.conventions import (
    ORIGIN as CONVENTIONS_ORIGIN,
)
from smith.conventions import (
    ROOT,
    Conventions,
    RuntimeUser,
    apply_conventions,
    check_name,
    nss_documents,
    parse_user,
)
from smith.errors import RecipeError, SmithError, UnsafePathError, UsageError
from smith.globs import Excludes, glob_match, has_magic
from smith.oci.compress import parse_compression
from smith.oci.image import GO_ARCH, Descriptor, ImageConfig, Platform
from smith.oci.layout import open_image
from smith.oci.output import PlatformImage, write_image, write_index_image
from smith.oci.reference import is_registry_reference
from smith.oci.registry_options import RegistryOptions
from smith.oci.writer import ImageResult
from smith.paths import climbs_out, normalize_path, parent_paths
from smith.recipe import Recipe, RuntimeSet, load_recipe
from smith.resolve.dependencies import Closure, Extras, LoaderEnv, compute_closure
from smith.resolve.fetch import Fetcher
from smith.resolve.lock import lock_path_for
from smith.resolve.packages import fetch_packages
from smith.resolve.repo import RepoConfig
from smith.resolve.rpm import add_rpm_to_tree
from smith.resolve.solver import ResolvedPackage
from smith.resolve.store import ContentStore
from smith.sbom.formats import SbomFormat
from smith.sources import plan_recipe, relative_to, repo_configs
from smith.tree import FileTree, InlineBytes, Kind, copy_parents, path_sort_key

if TYPE_CHECKING:
    from smith.sbom.attach import Attacher

log = logging.getLogger(__name__)

DEFAULT_OUTPUT = "image.tar.gz"  # the original smith's default
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PACKAGE_FILES_ANNOTATION = "org.smith.package-files"


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
    arches: tuple[str, ...] = ()  # --arch: instead of the recipe's
    sbom: tuple[SbomFormat, ...] = ()  # SBOMs to attach as OCI referrers of the image
    provenance: bool = False  # and an in-toto SLSA provenance statement
    package_db: bool = False  # write the kept packages' rpm database into the image


@dataclass(frozen=True)
class BuildResult:
    output: str
    image: ImageResult
    packages: tuple[ResolvedPackage, ...]
    kept: tuple[str, ...]  # paths of the image, conventions included
    reasons: dict[str, str] = field(repr=False)
    owners: dict[str, str] = field(repr=False)
    image_bytes: int = 0

    def summary(self) -> dict[str, object]:
        used = sorted({o for o in self.owners.values() if o})
        return {
            "output": self.output,
            "manifest": self.image.manifest.digest,
            "config": self.image.config.digest,
            "layers": [
                {
                    "digest": layer.descriptor.digest,
                    "diff_id": layer.diff_id,
                    "size": layer.descriptor.size,
                }
                for layer in self.image.layers
            ],
            "size": self.image_bytes,
            "files": len(self.kept),
            "packages_resolved": len(self.packages),
            "packages_kept": used,
        }


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
    fetcher = Fetcher(options.cache_dir, offline=options.offline)
    output = options.output or recipe.output or DEFAULT_OUTPUT
    with contextlib.ExitStack() as stack:
        staged = stage_build(recipe, recipe_path, options, fetcher, stack)
        log.info("writing %d paths to %s", len(staged.image.tree), output)
        result = write_image(
            staged.image.tree,
            staged.image.config,
            output,
            fmt=options.fmt or recipe.format,
            compression=parse_compression(options.compression or recipe.compression),
            epoch=choose_epoch(options.epoch, recipe),
            tag=options.tag or recipe.tag or "",
            parent=staged.image.parent,
            annotations=staged.image.annotations,
            cache_dir=str(fetcher.cache_dir),
            referrers=staged.referrers,
        )
    return staged.result(output, result, output_size(output))


@dataclass(frozen=True)
class StagedBuild:
    """One architecture's image, ready to be written, and what its BuildResult reports."""

    image: PlatformImage
    packages: tuple[ResolvedPackage, ...]
    reasons: dict[str, str]
    owners: dict[str, str]
    referrers: Attacher | None = None  # the SBOM and provenance to attach, if asked for

    def result(self, output: str, image: ImageResult, size: int) -> BuildResult:
        return BuildResult(
            output=output,
            image=image,
            packages=self.packages,
            kept=tuple(e.path for e in self.image.tree),
            reasons=self.reasons,
            owners=self.owners,
            image_bytes=size,
        )


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
    log.info("resolving the %s packages of %s", recipe.arch, recipe_path)
    packages = plan_recipe(recipe, recipe_path, fetcher, locked=options.locked, lock_path=lock_path)
    log.info("fetching and extracting %d packages", len(packages))
    store = ContentStore(fetcher.cache_dir / "content")
    full = extract_packages(packages, fetcher, repo_configs(recipe, recipe_path), store)
    user = runtime_user(recipe)
    # A user or group given by name needs NSS to be looked up, as in the original.
    nss = recipe.nss or user_is_named(recipe)
    if nss:
        # The closure's NSS set follows the nsswitch.conf the image will have: smith's own.
        for path, data in nss_documents(user).items():
            full.add_file(path, InlineBytes(data), 0o644, origin="smith (nss)")
    program = find_program(full, recipe)
    paths = expand_paths(full, recipe.paths, what="paths")
    starts = [program, *(p for p in paths if is_regular_file(full, p))]
    log.info("walking the ELF closure of /%s and %d named paths", program, len(paths))
    closure = compute_closure(
        full,
        starts,
        env=LoaderEnv.from_env(environment(recipe), recipe.dir or "/"),
        extras=Extras(
            nss=nss or RuntimeSet.NSS in recipe.runtime_libraries,
            gconv=RuntimeSet.GCONV in recipe.runtime_libraries,
            globs=recipe.libraries,
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
    overlay_rootfs(kept, os.path.join(base, "rootfs"))
    if options.package_db or recipe.package_db:
        from smith.sbom.package_db import add_rpm_database  # sqlite only when asked for

        add_rpm_database(kept, full, packages, fetcher, repo_configs(recipe, recipe_path))
    image_tree = apply_conventions(kept, Conventions(user=user, nss=nss))
    owners = {e.path: e.origin for e in image_tree}
    config = image_config(recipe, user.config_user)
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
            epoch=choose_epoch(options.epoch, recipe),
            tag=options.tag or recipe.tag or "",
            sbom=sbom,
            provenance=options.provenance or recipe.provenance,
        )
    return StagedBuild(
        PlatformImage(image_tree, config, parent, annotations),
        packages,
        explain_all(image_tree, closure, program, paths),
        owners,
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
    lock: smith.ARCH.lock), then one index of their manifests."""
    for arch in arches:
        parse_arch(arch)
    if len(set(arches)) != len(arches):
        raise RecipeError(f"--arch: {', '.join(arches)} names an architecture twice")
    if options.sbom or options.provenance or recipe.sbom or recipe.provenance:
        # Referrers attach to one image manifest; of an index, not done yet.
        raise UsageError("an SBOM or provenance attaches to one image: build one --arch")
    fetcher = Fetcher(options.cache_dir, offline=options.offline)
    output = options.output or recipe.output or DEFAULT_OUTPUT
    with contextlib.ExitStack() as stack:
        staged = [
            stage_build(
                recipe.model_copy(update={"arch": arch, "arches": ()}),
                recipe_path,
                options,
                fetcher,
                stack,
                lock_path=lock_path_for(recipe_path, arch),
            )
            for arch in arches
        ]
        log.info("writing an index of %d platforms to %s", len(staged), output)
        written = write_index_image(
            [s.image for s in staged],
            output,
            fmt=options.fmt or recipe.format,
            compression=parse_compression(options.compression or recipe.compression),
            epoch=choose_epoch(options.epoch, recipe),
            tag=options.tag or recipe.tag or "",
            cache_dir=str(fetcher.cache_dir),
        )
    size = output_size(output)
    results = tuple(
        (arch, s.result(output, image, size))
        for arch, s, image in zip(arches, staged, written.images, strict=True)
    )
    return IndexBuildResult(output, written.index, results, size)


def platform_for(arch: str) -> Platform:
    """The OCI platform of an architecture (linux/arm64/v8 for aarch64)."""
    try:
        info = ARCHES[check_arch(arch)]
    except ValueError:
        return Platform(GO_ARCH.get(arch, arch), "linux")
    return Platform(info.oci_architecture, "linux", info.oci_variant)


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
        env.insert(0, f"PATH={DEFAULT_PATH}")
    if recipe.library_path:
        extra = ":".join(recipe.library_path)
        env = [f"{e}:{extra}" if e.startswith("LD_LIBRARY_PATH=") else e for e in env]
        if not any(e.startswith("LD_LIBRARY_PATH=") for e in env):
            env.append(f"LD_LIBRARY_PATH={extra}")
    return env


def find_program(tree: FileTree, recipe: Recipe) -> str:
    """The program the image runs: the entrypoint's first word, else the cmd's, through
    the recipe's PATH, inside the packages' tree."""
    argv = recipe.entrypoint or recipe.cmd
    if not argv:
        raise RecipeError("the recipe names no program: set `entrypoint` or `cmd`")
    name = argv[0]
    if "/" in name:
        candidates = [posixpath.join(recipe.dir or "/", name)]
    else:
        path = next((e[5:] for e in environment(recipe) if e.startswith("PATH=")), DEFAULT_PATH)
        candidates = [posixpath.join(d or ".", name) for d in path.split(":")]
    for candidate in candidates:
        entry = tree.lookup(candidate)
        if entry is not None and entry.kind is Kind.FILE:
            return normalize_path(candidate)
    where = ", ".join(candidates) if len(candidates) <= 8 else f"{len(candidates)} PATH directories"
    raise SmithError(f"the program {name!r} is in none of the packages (looked at {where})")


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
        elif entry.origin == CONVENTIONS_ORIGIN:
            reasons[entry.path] = "microcontainer conventions"
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
    kept = FileTree()
    for path in sorted(wanted - excluded, key=path_sort_key):
        entry = full.get(path)
        if entry is None:
            continue
        if entry.kind is Kind.HARDLINK and entry.target not in wanted:
            source = full.get(entry.target)
            assert source is not None
            entry = replace(source, path=path)  # the other name is not kept: a plain copy
        kept.add(entry)
        copy_parents(kept, full, path)
    return kept


def overlay_rootfs(tree: FileTree, rootfs: str) -> None:
    """Lay a `rootfs/` directory beside the recipe over the tree, as the original did:
    symlinks kept as they are, `.gitignore` files left out, nothing that climbs out."""
    if os.path.islink(rootfs):
        # Read through, a link to /etc or $HOME would put the host's files into the image.
        raise UnsafePathError(f"{rootfs!r} is a symbolic link: a rootfs/ must be a directory")
    if not os.path.isdir(rootfs):
        return
    for entry in FileTree.from_directory(rootfs, origin="rootfs/"):
        if posixpath.basename(entry.path) == ".gitignore":
            continue
        if entry.kind is Kind.SYMLINK and climbs_out(entry.path.count("/"), entry.target):
            raise UnsafePathError(
                f"rootfs/{entry.path} is a symlink to {entry.target!r}, outside the image root"
            )
        existing = tree.get(entry.path)
        if entry.kind is Kind.DIR and existing is not None and existing.kind is Kind.DIR:
            continue
        tree.remove(
            entry.path
        ) if existing is not None and existing.kind is not entry.kind else None
        tree.add(entry)


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


def choose_epoch(explicit: int | None, recipe: Recipe) -> int:
    if explicit is not None:
        return explicit
    if recipe.source_date_epoch is not None:
        return recipe.source_date_epoch
    value = os.environ.get("SOURCE_DATE_EPOCH", "")
    if not value:
        return 0
    if not value.isdigit():
        raise SmithError(f"SOURCE_DATE_EPOCH must be a whole number of seconds, not {value!r}")
    return int(value)


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


def output_size(output: str) -> int:
    if os.path.isdir(output):
        return sum(f.stat().st_size for f in Path(output).rglob("*") if f.is_file())
    return os.path.getsize(output)
