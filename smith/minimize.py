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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from smith.conventions import (
    RuntimeUser,
)
from smith.errors import ImageFormatError, UsageError
from smith.layering import Layering, LayerStrategy, PackageDeps, dependency_order, image_plan
from smith.leftovers import temp_dir
from smith.oci.compress import Compression
from smith.oci.image import EVERY_PLATFORM, ImageConfig, Platform
from smith.oci.layout import choose_format
from smith.oci.output import IndexResult, PlatformImage
from smith.oci.reading import open_image
from smith.oci.registry_options import RegistryOptions
from smith.oci.unpack import PackRule, apply_layers, literal_prefix
from smith.oci.writer import ImageResult
from smith.paths import normalize_path
from smith.profile import ProfileEntry
from smith.result_json import Source, TreeSize, result_document
from smith.rootfs import ORIGIN as ROOTFS_ORIGIN
from smith.rootfs import added_reason, overlay_rootfs
from smith.sbom.formats import SbomFormat
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
from smith.tree import FileTree

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
    layering: Layering = field(default_factory=Layering)  # --layers, --layer-budget, `layers:`


@dataclass(frozen=True)
class MinimizeResult:
    output: str
    platform: Platform
    program: str
    before: TreeSize
    after: TreeSize
    image: ImageResult
    source_info: Source
    kept: Mapping[str, str] = field(repr=False)  # path -> why it is kept

    @classmethod
    def of(cls, staged: Staged, output: str, image: ImageResult) -> MinimizeResult:
        shrunk = staged.shrunk
        return cls(
            output=output,
            platform=staged.image.config.platform,
            program=shrunk.program,
            before=shrunk.before,
            after=shrunk.after,
            image=image,
            source_info=staged.source,
            kept=shrunk.reasons,
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
        result = write_staged(staged, output_of(options, output))
        return MinimizeResult.of(staged, output, result)


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
        written = write_staged_index(staged, output_of(options, output))
    results = tuple(
        MinimizeResult.of(s, output, image) for s, image in zip(staged, written.images, strict=True)
    )
    return written, results


def output_of(options: MinimizeOptions, output: str) -> Output:
    return Output(output, options.fmt, options.compression, options.epoch, options.tag)


def check_patterns(options: MinimizeOptions) -> None:
    for pattern in (*options.paths, *options.excludes):
        normalize_path(pattern, what="--path/--exclude pattern")


def stage_minimize(
    source: str, output: str, options: MinimizeOptions, stack: contextlib.ExitStack
) -> Staged:
    """The image source of the shrink core: `options.platform`'s image of `source`, its
    layers applied (and a recipe's rootfs/ over them), shrunk; the image and the store its
    files are read from stay open on `stack` until it is written."""
    image = stack.enter_context(
        open_image(source, platform=options.platform, registry=options.registry)
    )
    store = stack.enter_context(temp_dir("smith-minimize-"))
    tree, stats = apply_layers(image, store, pack_rule(options))
    if options.rootfs is not None:
        overlay_rootfs(tree, options.rootfs)
    base = image.image_config()
    check_platform(image.source, base.platform, options.platform)
    user = image_user(tree, base, options)
    config = image_config(base, option_changes(options), user)
    package_db = None
    if options.package_db:

        def package_db(kept: FileTree, full: FileTree) -> None:
            from smith.sbom.package_db import add_image_package_db

            add_image_package_db(kept, full)

    shrunk = shrink(tree, image_spec(config, user, options, package_db))
    found = Source(
        source,
        manifest=image.manifest_descriptor.digest,
        compressed_bytes=sum(layer.size for layer in image.layers),
        layers=stats.layers,
    )
    layers = minimize_layers(tree, shrunk.tree, shrunk.program, options, user)
    return Staged(
        PlatformImage(shrunk.tree, config, layers=layers),
        shrunk,
        found,
        referrers=sbom_attacher(tree, shrunk.tree, options),
    )


def pack_rule(options: MinimizeOptions) -> PackRule:
    """Which files' bytes are copied out as the layers are read: with the paths the user
    names (the rule only decides what is copied now or read again later, not the output)."""
    named = (*options.paths, *(entry.path for entry in options.profile))
    return PackRule(tuple(sorted({literal_prefix(p) for p in named})))


def minimize_layers(
    source: FileTree, final: FileTree, program: str, options: MinimizeOptions, user: RuntimeUser
) -> tuple[FileTree, ...]:
    """The layer trees `options.layering` asks for (none: one layer). Files are owned by
    the packages of the image's own database (rpmdb.sqlite, dpkg status), which orders
    them too; an image without one gives one layer of its files, under the top layer
    (rootfs/, what smith adds, and the program's own package)."""
    if options.layering.strategy is LayerStrategy.SINGLE:
        return ()
    from smith.sbom.attach import image_packages  # the database readers only when asked for

    packages = image_packages(source)
    owners: dict[str, str] = {}
    for package in packages:
        for path in package.files:
            owners.setdefault(path, package.info.key)
    order = dependency_order(
        PackageDeps(p.info.key, p.requires, p.provides, p.files) for p in packages
    )
    if not packages:
        owners = {e.path: "image" for e in final}
        order = ("image",)
    for entry in final:  # what rootfs/ and smith put there is the application's
        if entry.origin == ROOTFS_ORIGIN or added_reason(entry):
            owners.pop(entry.path, None)
    real = source.resolve(program)
    top = [owners[p] for p in (program, real) if p in owners and packages]
    plan = image_plan(
        final,
        options.layering,
        order=order,
        owners=owners,
        top=top,
        directory_owner=(0, 0) if options.keep_ownership else (user.uid, user.gid),
    )
    return plan.trees() if plan is not None else ()


def image_spec(
    config: ImageConfig,
    user: RuntimeUser,
    options: MinimizeOptions,
    package_db: Callable[[FileTree, FileTree], None] | None = None,
) -> ShrinkSpec:
    """What the shrink core keeps of an image run as `config` says."""
    return ShrinkSpec(
        SourceKind.IMAGE,
        argv=(*(config.entrypoint or ()), *(config.cmd or ())),
        env=config.env,
        workdir=config.working_dir,
        user=user,
        paths=options.paths,
        excludes=options.excludes,
        nss=options.nss,
        gconv=options.gconv,
        no_runtime=options.no_runtime,
        profile=options.profile,
        rootfs=options.rootfs,
        mounts=options.mounts,
        keep_ownership=options.keep_ownership,
        keep_modes=options.keep_modes,
        package_db=package_db,
    )


def sbom_attacher(source: FileTree, final: FileTree, options: MinimizeOptions) -> Attacher | None:
    """What --sbom attaches to the output (the renderers imported only then)."""
    if not options.sbom:
        return None
    from smith.sbom.attach import minimize_sbom

    return minimize_sbom(source, final, epoch=options.epoch, tag=options.tag, formats=options.sbom)


def option_changes(options: MinimizeOptions) -> ConfigChanges:
    """What the options (or a recipe) replace or add in the image's config."""
    return ConfigChanges(
        entrypoint=options.entrypoint,
        cmd=options.cmd,
        env=options.env,
        labels=options.labels,
        ports=options.ports,
        volumes=options.volumes,
        workdir=options.workdir,
    )


def image_user(tree: FileTree, config: ImageConfig, options: MinimizeOptions) -> RuntimeUser:
    """--user, else the image's own User (names looked up in the image's /etc/passwd and
    /etc/group, so the output needs neither), else root, as the image ran."""
    return runtime_user(options.user or config.user, accounts=tree)


def check_platform(source: str, have: Platform, want: Platform | None) -> None:
    """An index entry without a platform matches any: the config has the last word."""
    if want is None or want == EVERY_PLATFORM:  # the one image there is, any platform
        return
    if (have.os, have.architecture) != (want.os, want.architecture) or (
        want.variant and have.variant != want.variant
    ):
        raise ImageFormatError(f"{source}: no image for platform {want} (it is {have})")
