"""`smith minimize`: shrink an existing image to its program, what that program loads, and
what the user names.

    image -> layers applied (oci/unpack.py) -> FileTree -> closure (resolve/) -> kept tree
          -> microcontainer conventions -> one deterministic layer (oci/output.py)

The same input image and options give the same output bytes: the content store's temporary
names never reach the output (the writer reads the bytes, not the names), the config
carries no time but SOURCE_DATE_EPOCH, and every set is sorted before it is written. The
output names nothing of the input's container format (not even its manifest digest), so the
same image as an OCI layout, oci-archive or docker-archive gives the same output digest.
"""

from __future__ import annotations

import contextlib
import logging
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from smith.conventions import (
    ROOT,
    Conventions,
    RuntimeUser,
    apply_conventions,
    parse_user,
    read_group,
    read_passwd,
)
from smith.errors import ImageFormatError, SmithError, UsageError
from smith.globs import Excludes
from smith.leftovers import temp_dir
from smith.oci.compress import Compression
from smith.oci.image import EVERY_PLATFORM, Descriptor, ImageConfig, Platform
from smith.oci.layout import LoadedImage, choose_format, open_image
from smith.oci.output import IndexResult, PlatformImage, write_image, write_index_image
from smith.oci.registry_options import RegistryOptions
from smith.oci.unpack import UnpackStats, apply_layers
from smith.oci.writer import ImageResult
from smith.paths import normalize_path
from smith.profile import ProfileEntry
from smith.resolve.dependencies import Extras, LoaderEnv, compute_closure
from smith.resolve.loader import glob_root
from smith.resolve.programs import find_program, is_executable, search_path
from smith.resolve.roots import PathWalker, TreeRoot
from smith.resolve.runtime_sets import rules_without
from smith.result_json import Source, TreeSize, result_document
from smith.rootfs import add_mount_points, added_reason, overlay_rootfs, rootfs_paths
from smith.sbom.formats import SbomFormat
from smith.tree import FileTree, Kind

if TYPE_CHECKING:
    from smith.sbom.attach import Attacher

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MinimizeOptions:
    paths: tuple[str, ...] = ()  # globs or directories to keep, with their ELF closure
    excludes: tuple[str, ...] = ()  # globs (or directories) removed from what is kept
    nss: bool = False  # keep the NSS modules and write /etc/passwd, group, nsswitch.conf
    gconv: bool | tuple[str, ...] = False
    no_runtime: tuple[str, ...] = ()  # rule-based run-time sets switched off (runtime_sets.py)
    profile: tuple[ProfileEntry, ...] = ()  # files a `smith probe` saw the program use
    user: str = ""  # run as this user instead of the image's own
    keep_ownership: bool = False
    keep_modes: bool = False
    entrypoint: tuple[str, ...] | None = None  # replace the image's Entrypoint
    cmd: tuple[str, ...] | None = None  # replace the image's Cmd
    env: tuple[str, ...] = ()  # KEY=value added to (or replacing in) the image's Env
    labels: tuple[tuple[str, str], ...] = ()
    ports: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    workdir: str = ""
    platform: Platform | None = None
    compression: Compression = Compression.GZIP
    epoch: int = 0
    fmt: str | None = None
    tag: str = ""
    registry: RegistryOptions | None = None  # when the image is a registry reference
    rootfs: str | None = None  # a recipe's rootfs/, laid over the image's layers
    mounts: tuple[str, ...] = ()  # directories to create (a recipe's `mounts`)
    sbom: tuple[SbomFormat, ...] = ()  # SBOMs to attach as OCI referrers of the output
    package_db: bool = False  # keep the input's package database, for the kept packages


@dataclass(frozen=True)
class MinimizeResult:
    source: str
    output: str
    source_manifest: str
    platform: Platform
    program: str
    before: TreeSize
    before_compressed: int
    after: TreeSize
    image: ImageResult
    unpack: UnpackStats
    kept: Mapping[str, str] = field(repr=False)  # path -> why it is kept

    @property
    def after_compressed(self) -> int:
        return sum(layer.descriptor.size for layer in self.image.layers)

    @property
    def source_info(self) -> Source:
        return Source(
            self.source,
            manifest=self.source_manifest,
            compressed_bytes=self.before_compressed,
            layers=self.unpack.layers,
        )

    def explained(self) -> Mapping[str, str]:
        return self.kept

    def summary(self, explain: bool = False) -> dict[str, Any]:
        return result_document(self, explain)


def minimize_image(source: str, output: str, options: MinimizeOptions) -> MinimizeResult:
    """Read `source`, keep what its program needs, write the microcontainer to `output`."""
    check_patterns(options)
    choose_format(output, options.fmt)  # a bad output name fails before the image is read
    with contextlib.ExitStack() as stack:
        staged = stage_minimize(source, output, options, stack)
        result = write_image(
            staged.image.tree,
            staged.image.config,
            output,
            fmt=options.fmt,
            compression=options.compression,
            epoch=options.epoch,
            tag=options.tag,
            referrers=sbom_attacher(staged.source_tree, staged.image.tree, options),
        )
        return replace(staged.result, image=result)


def minimize_platforms(
    source: str, output: str, options: MinimizeOptions, platforms: Sequence[Platform]
) -> tuple[IndexResult, tuple[MinimizeResult, ...]]:
    """Each platform of a multi-platform `source` minimized as minimize_image would alone,
    written as one image index of them (in the order given) to `output`."""
    check_patterns(options)
    choose_format(output, options.fmt)
    if not platforms:
        raise UsageError(f"{source}: no platform to minimize")
    with contextlib.ExitStack() as stack:
        staged = [
            stage_minimize(source, output, replace(options, platform=p), stack) for p in platforms
        ]
        written = write_index_image(
            # Each platform's SBOM attaches to its own manifest.
            [
                replace(s.image, referrers=sbom_attacher(s.source_tree, s.image.tree, options))
                for s in staged
            ],
            output,
            fmt=options.fmt,
            compression=options.compression,
            epoch=options.epoch,
            tag=options.tag,
        )
    results = tuple(
        replace(s.result, image=image) for s, image in zip(staged, written.images, strict=True)
    )
    return written, results


def check_patterns(options: MinimizeOptions) -> None:
    for pattern in (*options.paths, *options.excludes):
        normalize_path(pattern, what="--path/--exclude pattern")


@dataclass(frozen=True)
class StagedMinimize:
    image: PlatformImage
    result: MinimizeResult  # its `image` is filled in once written
    source_tree: FileTree  # the image's files as read (what an SBOM describes)


NOT_WRITTEN = ImageResult(Descriptor("", "", 0), Descriptor("", "", 0), ())


def stage_minimize(
    source: str, output: str, options: MinimizeOptions, stack: contextlib.ExitStack
) -> StagedMinimize:
    """The minimized tree and config of `options.platform`'s image of `source`; the image
    and the store its files are read from stay open on `stack` until it is written."""
    image = stack.enter_context(
        open_image(source, platform=options.platform, registry=options.registry)
    )
    store = stack.enter_context(temp_dir("smith-minimize-"))
    tree, stats = apply_layers(image, store)
    if options.rootfs is not None:
        overlay_rootfs(tree, options.rootfs)
    config = image_config(image, options)
    check_platform(image.source, config.platform, options.platform)
    program, argv = program_of(tree, config)
    kept = keep_paths(tree, config, program, argv, options)
    for path in sorted(rootfs_paths(tree)):
        kept.setdefault(path, "from rootfs/ beside the recipe")
    small = tree.subtree(kept)
    add_mount_points(small, options.mounts)
    if options.package_db:
        from smith.sbom.package_db import add_image_package_db

        add_image_package_db(small, tree)
    user = runtime_user(tree, config, options)
    conventions = Conventions(
        user=user,
        keep_ownership=options.keep_ownership,
        keep_modes=options.keep_modes,
        nss=options.nss,
    )
    final = apply_conventions(small, conventions)
    # --explain lists exactly what the output holds: the conventions empty the runtime
    # directories and may replace the NSS files, and they add what they add.
    explained: dict[str, str] = {}
    for entry in final:
        explained[entry.path] = added_reason(entry) or kept.get(
            entry.path, "parent directory of a kept path"
        )
    result = MinimizeResult(
        source=source,
        output=output,
        source_manifest=image.manifest_descriptor.digest,
        platform=config.platform,
        program=program,
        before=TreeSize.of(tree),
        before_compressed=sum(layer.size for layer in image.layers),
        after=TreeSize.of(final),
        image=NOT_WRITTEN,
        unpack=stats,
        kept=explained,
    )
    image_out = PlatformImage(final, replace(config, user=user.config_user))
    return StagedMinimize(image_out, result, tree)


def sbom_attacher(source: FileTree, final: FileTree, options: MinimizeOptions) -> Attacher | None:
    """What --sbom attaches to the output (the renderers imported only then)."""
    if not options.sbom:
        return None
    from smith.sbom.attach import minimize_sbom

    return minimize_sbom(source, final, epoch=options.epoch, tag=options.tag, formats=options.sbom)


def image_config(image: LoadedImage, options: MinimizeOptions) -> ImageConfig:
    """The image's config, with what the options (or a recipe) replace or add."""
    config = image.image_config()
    env = list(config.env)
    for item in options.env:
        key = item.split("=", 1)[0]
        env = [e for e in env if e.split("=", 1)[0] != key] + [item]
    return replace(
        config,
        env=tuple(env),
        entrypoint=options.entrypoint if options.entrypoint is not None else config.entrypoint,
        # A new entrypoint drops the image's Cmd, as docker does, unless a cmd is given.
        cmd=options.cmd
        if options.cmd is not None
        else (None if options.entrypoint is not None else config.cmd),
        labels=tuple(sorted({**dict(config.labels), **dict(options.labels)}.items())),
        exposed_ports=tuple(sorted({*config.exposed_ports, *options.ports})),
        volumes=tuple(sorted({*config.volumes, *options.volumes})),
        working_dir=options.workdir or config.working_dir,
    )


def check_platform(source: str, have: Platform, want: Platform | None) -> None:
    """An index entry without a platform matches any: the config has the last word."""
    if want is None or want == EVERY_PLATFORM:  # the one image there is, any platform
        return
    if (have.os, have.architecture) != (want.os, want.architecture) or (
        want.variant and have.variant != want.variant
    ):
        raise ImageFormatError(f"{source}: no image for platform {want} (it is {have})")


def program_of(tree: FileTree, config: ImageConfig) -> tuple[str, tuple[str, ...]]:
    """The file the runtime executes for Entrypoint + Cmd: argv[0] searched through the
    image's PATH (the runtime's rule) when it has no slash, from WorkingDir when relative."""
    argv = (*(config.entrypoint or ()), *(config.cmd or ()))
    if not argv or not argv[0]:
        raise UsageError(
            "the image has no Entrypoint or Cmd, so there is no program to keep "
            "(give one with --entrypoint)"
        )
    name, path, workdir = argv[0], search_path(config.env), config.working_dir or "/"
    found = find_program(name, path, workdir, lambda candidate: is_executable(tree, candidate))
    if found is not None:
        return found, argv
    if "/" in name:
        raise UsageError(f"the image's program {name!r} is not an executable file of the image")
    raise UsageError(f"the image's program {name!r} is not found on its PATH ({':'.join(path)})")


def keep_paths(
    tree: FileTree,
    config: ImageConfig,
    program: str,
    argv: Sequence[str],
    options: MinimizeOptions,
) -> dict[str, str]:
    """Every path to keep, with the reason: the program's closure, files the command line
    names (a script given to an interpreter), --path, symlink targets; minus --exclude."""
    root = TreeRoot(tree)
    walker = PathWalker(root)
    for pattern in options.paths:
        if not glob_root(root, walker, normalize_path(pattern)):
            raise UsageError(f"--path {pattern!r} matches nothing in the image")
    workdir = config.working_dir or "/"
    starts = [program]
    for arg in argv[1:]:
        # `python3 /app/main.py`, `sh run.sh`: a file the command names is part of it.
        if arg.startswith("-") or "\x00" in arg:
            continue
        try:
            candidate = normalize_path(posixpath.join(workdir, arg))
        except SmithError:
            continue  # an argument with `..` is no file of the image to keep
        entry = tree.lookup(candidate) if candidate else None
        if entry is not None and entry.kind is Kind.FILE and candidate not in starts:
            starts.append(candidate)
    env = LoaderEnv.from_env(config.env, workdir)
    rules = rules_without(options.no_runtime, profiled=bool(options.profile))
    extras = Extras(
        nss=options.nss,
        gconv=options.gconv,
        globs=options.paths,
        rules=rules,
        profile=options.profile,
    )
    closure = compute_closure(tree, starts, env=env, extras=extras)
    kept = {path: str(reason) for path, reason in closure.kept.items()}
    for start in starts[1:]:
        kept[tree.resolve(start)] = f"named by the command line {' '.join(argv)!r}"
    keep_link_targets(tree, kept)
    return exclude(kept, options.excludes)


def keep_link_targets(tree: FileTree, kept: dict[str, str]) -> None:
    """A kept symlink keeps what it points to (and the links on the way), when that exists
    in the image: a dangling link in the output would be a file the program cannot open."""
    todo = [p for p in kept if (e := tree.get(p)) is not None and e.kind is Kind.SYMLINK]
    root = TreeRoot(tree)
    walker = PathWalker(root)
    while todo:
        link = todo.pop()
        walk = walker.walk(link)
        if walk.kind is None:
            continue
        for hop in (*walk.links, walk.path):
            if hop and hop not in kept:
                kept[hop] = f"target of the kept symlink /{link}"
                entry = tree.get(hop)
                if entry is not None and entry.kind is Kind.SYMLINK:
                    todo.append(hop)
        entry = tree.get(walk.path)
        if entry is not None and entry.kind is Kind.HARDLINK and entry.target not in kept:
            kept[entry.target] = f"first name of the kept hard link /{walk.path}"


def exclude(kept: dict[str, str], patterns: Sequence[str]) -> dict[str, str]:
    excludes = Excludes.parse(patterns, what="--exclude")
    return {path: why for path, why in kept.items() if not excludes.matching(path)}


def runtime_user(tree: FileTree, config: ImageConfig, options: MinimizeOptions) -> RuntimeUser:
    """--user, else the image's own User (names looked up in the image's /etc/passwd and
    /etc/group, so the output needs neither), else root, as the image ran."""
    spec = options.user or config.user
    if not spec:
        return ROOT
    return parse_user(
        spec,
        passwd=read_passwd(read_small(tree, "etc/passwd")),
        group=read_group(read_small(tree, "etc/group")),
    )


def read_small(tree: FileTree, path: str) -> bytes:
    entry = tree.lookup(path)
    if entry is None or entry.kind is not Kind.FILE or entry.content is None:
        return b""
    with entry.content.open() as f:
        return f.read(1 << 20)
