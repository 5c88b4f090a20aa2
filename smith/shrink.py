"""The one shrink core of `smith build` and `smith minimize`: a FileTree and a spec in, the
microcontainer's tree out.

    source adapter (packages + rootfs/, an image's layers) -> FileTree
        -> program (execvp's rule) -> ELF closure -> kept paths (minus excludes)
        -> rootfs/ and mounts -> conventions -> one result: tree, reason and owner per path

Both commands shrink the same way; where a recipe's packages and an image's layers keep
their own long-standing rules (which files count as the program, what `paths` means, how a
path is explained), the source's `Rules` say so, rather than two pipelines drifting apart.
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TYPE_CHECKING

from smith.conventions import (
    ROOT,
    Conventions,
    RuntimeUser,
    apply_conventions,
    check_name,
    parse_user,
    read_group,
    read_passwd,
)
from smith.errors import RecipeError, SmithError, UsageError
from smith.globs import Excludes, glob_match, has_magic
from smith.oci.compress import Compression
from smith.oci.image import ImageConfig
from smith.oci.output import IndexResult, PlatformImage, write_image, write_index_image
from smith.oci.writer import ImageResult
from smith.paths import normalize_path, parent_paths
from smith.profile import ProfileEntry
from smith.resolve.dependencies import Closure, Extras, LoaderEnv, compute_closure
from smith.resolve.loader import glob_root
from smith.resolve.programs import find_program, is_executable, search_path, shown_candidates
from smith.resolve.roots import PathWalker, TreeRoot
from smith.resolve.runtime_sets import rules_without
from smith.result_json import Source, TreeSize
from smith.rootfs import ORIGIN as ROOTFS_ORIGIN
from smith.rootfs import add_mount_points, added_reason, overlay_rootfs
from smith.tree import FileTree, Kind, path_sort_key

if TYPE_CHECKING:
    from smith.layering import LayerInputs
    from smith.partial import Listing
    from smith.resolve.solver import ResolvedPackage
    from smith.sbom.attach import Attacher

log = logging.getLogger(__name__)


class SourceKind(StrEnum):
    PACKAGES = "packages"  # a recipe's packages, rootfs/ laid over them
    IMAGE = "image"  # an image's layers (a recipe's rootfs/ laid over them)


def is_regular_file(tree: FileTree, path: str) -> bool:
    entry = tree.lookup(path)
    return entry is not None and entry.kind is Kind.FILE


@dataclass(frozen=True)
class Rules:
    """What a source keeps of its own: each rule is as the command had it before the core
    was shared, so that no image changes by a byte."""

    # A recipe's program may be any regular file (recipes rely on it); an image's must be
    # executable, as its runtime requires.
    runnable: Callable[[FileTree, str], bool]
    # A recipe's `paths` are kept whole (a directory with all below it) and their ELF files
    # closed over; --path patterns are globs the closure keeps with what they load.
    named_paths: bool
    # `python3 /app/main.py`: a file an image's command line names is part of the program.
    command_files: bool
    # A kept symlink keeps its target (an image's links often lead out of the closure).
    link_targets: bool
    # A recipe's --explain shows the chain back to the program; an image's the last step.
    chains: bool


RULES = {
    SourceKind.PACKAGES: Rules(
        is_regular_file, named_paths=True, command_files=False, link_targets=False, chains=True
    ),
    SourceKind.IMAGE: Rules(
        is_executable, named_paths=False, command_files=True, link_targets=True, chains=False
    ),
}


@dataclass(frozen=True)
class ShrinkSpec:
    """What to keep of a tree, and how the result runs."""

    kind: SourceKind
    argv: tuple[str, ...]  # Entrypoint + Cmd, as the runtime joins them
    env: tuple[str, ...]  # the Env the program runs with (its PATH finds the program)
    workdir: str = ""
    user: RuntimeUser = ROOT
    paths: tuple[str, ...] = ()  # what the user names (recipe `paths`, --path)
    libraries: tuple[str, ...] = ()  # globs of libraries to keep with their closure
    excludes: tuple[str, ...] = ()
    nss: bool = False  # keep the NSS modules and write /etc/passwd, group, nsswitch.conf
    gconv: bool | tuple[str, ...] = False
    no_runtime: tuple[str, ...] = ()  # rule-based run-time sets switched off
    profile: tuple[ProfileEntry, ...] = ()  # files a `smith probe` saw the program use
    keep_going: bool = False  # a missing library is a warning, not an error
    rootfs: str | None = None  # shipped whole, over what is kept
    mounts: tuple[str, ...] = ()  # directories to create
    keep_ownership: bool = False
    keep_modes: bool = False
    # Adds the package database of the kept packages to the kept tree (from the full one).
    package_db: Callable[[FileTree, FileTree], None] | None = None

    @property
    def rules(self) -> Rules:
        return RULES[self.kind]


@dataclass(frozen=True)
class Shrunk:
    """What the core made of a tree: the image's files, why each is there and, where the
    source knows it, the package it came from."""

    tree: FileTree  # the image's files, conventions applied
    program: str  # the program's path in the tree (root-relative)
    reasons: Mapping[str, str]  # path -> why it is in the image, for every path of `tree`
    owners: Mapping[str, str]  # path -> the package (or smith's part) it came from
    before: TreeSize  # the whole tree the source gave
    after: TreeSize

    @property
    def kept(self) -> tuple[str, ...]:
        return tuple(self.reasons)

    def explained(self) -> dict[str, str]:
        return dict(self.reasons)


@dataclass(frozen=True)
class Staged:
    """One platform's image, shrunk and ready to be written, and where it came from."""

    image: PlatformImage
    shrunk: Shrunk
    source: Source
    packages: tuple[ResolvedPackage, ...] = ()  # a recipe's, resolved
    referrers: Attacher | None = None  # the SBOM and provenance to attach, if asked for
    listing: Listing | None = None  # what a recipe's packages put in the tree (partial.py)
    # What cut the image into layers (None: one layer): a fleet's --share-layers cuts the
    # images again, together.
    layering: LayerInputs | None = None


@dataclass(frozen=True)
class Output:
    """How a staged image is written (the settings both commands share)."""

    path: str
    fmt: str | None = None
    compression: Compression = Compression.GZIP
    epoch: int = 0
    tag: str = ""
    cache_dir: str | None = None  # where a parent's layers are kept


def write_staged(staged: Staged, output: Output) -> ImageResult:
    """Write one platform's staged image to `output.path`."""
    log.info("writing %d paths to %s", len(staged.image.tree), output.path)
    return write_image(
        staged.image.tree,
        staged.image.config,
        output.path,
        fmt=output.fmt,
        compression=output.compression,
        epoch=output.epoch,
        tag=output.tag,
        parent=staged.image.parent,
        annotations=staged.image.annotations,
        cache_dir=output.cache_dir,
        referrers=staged.referrers,
        layers=staged.image.layers,
    )


def write_staged_index(staged: Sequence[Staged], output: Output) -> IndexResult:
    """Write each platform's staged image, and one image index of them (in the order
    given), to `output.path`; each platform's SBOM and provenance attach to its own
    manifest."""
    log.info("writing an index of %d platforms to %s", len(staged), output.path)
    return write_index_image(
        [replace(s.image, referrers=s.referrers) for s in staged],
        output.path,
        fmt=output.fmt,
        compression=output.compression,
        epoch=output.epoch,
        tag=output.tag,
        cache_dir=output.cache_dir,
    )


def shrink(full: FileTree, spec: ShrinkSpec) -> Shrunk:
    """Keep of `full` what `spec`'s program needs and what it names, as a microcontainer."""
    rules = spec.rules
    program = program_of(full, spec)
    named: dict[str, str] = {}
    starts = [program]
    if rules.named_paths:
        named = expand_paths(full, spec.paths, what="paths")
        starts += [p for p in named if is_regular_file(full, p)]
    else:
        check_globs(full, spec.paths)
    if rules.command_files:
        starts = list(dict.fromkeys([*starts, *command_files(full, spec)]))
    log.info("walking the ELF closure of /%s and %d named paths", program, len(starts) - 1)
    closure = compute_closure(
        full,
        starts,
        env=LoaderEnv.from_env(spec.env, spec.workdir or "/"),
        extras=Extras(
            nss=spec.nss,
            gconv=spec.gconv,
            globs=(*spec.libraries, *(() if rules.named_paths else spec.paths)),
            rules=rules_without(spec.no_runtime, profiled=bool(spec.profile)),
            profile=spec.profile,
        ),
        keep_going=spec.keep_going,
    )
    for missing in closure.missing:
        log.warning("%s", missing)
    why = keep_reasons(full, closure, program, named, starts, spec)
    excludes = Excludes.parse(
        spec.excludes, what="excludes entry" if rules.named_paths else "--exclude"
    )
    kept = select_kept(full, why, excludes)
    if rules.named_paths and program not in kept:
        # An image whose entrypoint is gone cannot run: say which pattern did it.
        raise RecipeError(
            f"excludes: {excludes.matching(program)!r} leaves out the program /{program}"
        )
    if spec.rootfs is not None:
        # All of rootfs/ is shipped, excludes or not; laid over what is kept as before the
        # closure saw it, a directory the kept files do not need is rootfs/'s own.
        overlay_rootfs(kept, spec.rootfs)
    add_mount_points(kept, spec.mounts)
    if spec.package_db is not None:
        spec.package_db(kept, full)
    final = apply_conventions(
        kept,
        Conventions(
            user=spec.user,
            keep_ownership=spec.keep_ownership,
            keep_modes=spec.keep_modes,
            nss=spec.nss,
        ),
    )
    return Shrunk(
        final,
        program,
        explain(final, why),
        {e.path: e.origin for e in final},
        TreeSize.of(full),
        TreeSize.of(final),
    )


# -- the program -----------------------------------------------------------------------------


def program_of(tree: FileTree, spec: ShrinkSpec) -> str:
    """The file the runtime executes for `spec.argv`: argv[0] searched through the PATH of
    `spec.env` (execvp's rule) when it has no slash, from the working directory when
    relative."""
    if not spec.argv or not spec.argv[0]:
        if spec.kind is SourceKind.PACKAGES:
            raise RecipeError("the recipe names no program: set `entrypoint` or `cmd`")
        raise UsageError(
            "the image has no Entrypoint or Cmd, so there is no program to keep "
            "(give one with --entrypoint)"
        )
    name, path, workdir = spec.argv[0], search_path(spec.env), spec.workdir or "/"
    found = find_program(name, path, workdir, lambda c: spec.rules.runnable(tree, c))
    if found is not None:
        return found
    if spec.kind is SourceKind.PACKAGES:
        where = shown_candidates(name, path, workdir)
        raise SmithError(
            f"the program {name!r} is in none of the packages or rootfs/ (looked at {where})"
        )
    if "/" in name:
        raise UsageError(f"the image's program {name!r} is not an executable file of the image")
    raise UsageError(f"the image's program {name!r} is not found on its PATH ({':'.join(path)})")


def command_files(tree: FileTree, spec: ShrinkSpec) -> list[str]:
    """Files of the tree the command line names (`python3 /app/main.py`, `sh run.sh`)."""
    workdir = spec.workdir or "/"
    found = []
    for arg in spec.argv[1:]:
        if arg.startswith("-") or "\x00" in arg:
            continue
        try:
            candidate = normalize_path(posixpath.join(workdir, arg))
        except SmithError:
            continue  # an argument with `..` is no file of the image to keep
        entry = tree.lookup(candidate) if candidate else None
        if entry is not None and entry.kind is Kind.FILE:
            found.append(candidate)
    return found


# -- what is kept ----------------------------------------------------------------------------


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


def check_globs(tree: FileTree, patterns: Iterable[str]) -> None:
    root = TreeRoot(tree)
    walker = PathWalker(root)
    for pattern in patterns:
        if not glob_root(root, walker, normalize_path(pattern)):
            raise UsageError(f"--path {pattern!r} matches nothing in the image")


def keep_reasons(
    tree: FileTree,
    closure: Closure,
    program: str,
    named: Mapping[str, str],
    starts: Sequence[str],
    spec: ShrinkSpec,
) -> dict[str, str]:
    """Every path to keep (before the excludes), with why: the closure, what `paths`
    names, files the command line names and symlink targets (rootfs/ is shipped whole)."""
    why: dict[str, str] = {}
    for path in closure.kept:
        if spec.rules.chains:
            why[path] = explain_chain(closure, path, program, named)
        else:
            why[path] = str(closure.kept[path])
    for path, pattern in named.items():
        why.setdefault(path, f"named by paths: {pattern}")
    if spec.rules.command_files:
        for start in starts[1:]:
            why[tree.resolve(start)] = f"named by the command line {' '.join(spec.argv)!r}"
    if spec.rules.link_targets:
        keep_link_targets(tree, why)
    return why


def explain_chain(closure: Closure, path: str, program: str, named: Mapping[str, str]) -> str:
    """Why the closure keeps `path`, as the steps back to the start that needed it."""
    chain = [line.split(": ", 1) for line in closure.explain(path)]
    words = [why for _path, why in chain]
    if words and words[-1] == "start":
        start = chain[-1][0].lstrip("/")
        if start == program:
            words[-1] = "the program (entrypoint/cmd)"
        elif start in named:
            words[-1] = f"named by paths: {named[start]}"
    return " <- ".join(words)


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


def select_kept(full: FileTree, wanted: Iterable[str], excludes: Excludes) -> FileTree:
    """The kept part of `full`: the wanted paths minus the excludes, with every parent
    directory as the source had it."""
    kept = {p for p in wanted if not excludes.matching(p)}
    return full.subtree(sorted(kept, key=path_sort_key))


def explain(final: FileTree, why: Mapping[str, str]) -> dict[str, str]:
    """Why each path of the image is there, in one line: --explain lists exactly what the
    output holds (the conventions empty the runtime directories, may replace the NSS files,
    and add what they add)."""
    reasons = {}
    for entry in final:
        reasons[entry.path] = (
            added_reason(entry)
            or why.get(entry.path)
            or ("from rootfs/ beside the recipe" if entry.origin == ROOTFS_ORIGIN else None)
            or ("parent directory of kept files" if entry.kind is Kind.DIR else None)
            or entry.origin
            or "smith"
        )
    return reasons


# -- how the image runs ----------------------------------------------------------------------


def runtime_user(
    spec: str,
    *,
    default: RuntimeUser = ROOT,
    groups: tuple[str, ...] = (),
    accounts: FileTree | None = None,
) -> RuntimeUser:
    """Who the image runs as: `spec` (USER[:GROUP]; names looked up in the /etc/passwd and
    /etc/group of `accounts`, an image's own, so the output needs neither), else `default`;
    with `groups` as its supplementary groups."""
    for name in groups:
        check_name(name, name)
    if not spec:
        return replace(default, groups=groups)
    if accounts is None:
        return replace(parse_user(spec), groups=groups)
    passwd = read_passwd(read_small(accounts, "etc/passwd"))
    group = read_group(read_small(accounts, "etc/group"))
    return replace(parse_user(spec, passwd=passwd, group=group), groups=groups)


def read_small(tree: FileTree, path: str) -> bytes:
    entry = tree.lookup(path)
    if entry is None or entry.kind is not Kind.FILE or entry.content is None:
        return b""
    with entry.content.open() as f:
        return f.read(1 << 20)


@dataclass(frozen=True)
class ConfigChanges:
    """What a recipe or the command line sets in the image config."""

    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    env: tuple[str, ...] = ()  # KEY=value added to (or replacing in) the Env
    labels: tuple[tuple[str, str], ...] = ()
    ports: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    workdir: str = ""


def image_config(base: ImageConfig, changes: ConfigChanges, user: RuntimeUser) -> ImageConfig:
    """`base` (an image's config, or an empty one for packages) with `changes`, run as
    `user`."""
    env = list(base.env)
    for item in changes.env:
        key = item.split("=", 1)[0]
        env = [e for e in env if e.split("=", 1)[0] != key] + [item]
    return replace(
        base,
        user=user.config_user,
        env=tuple(env),
        entrypoint=changes.entrypoint if changes.entrypoint is not None else base.entrypoint,
        # A new entrypoint drops the image's Cmd, as docker does, unless a cmd is given.
        cmd=changes.cmd
        if changes.cmd is not None
        else (None if changes.entrypoint is not None else base.cmd),
        labels=tuple(sorted({**dict(base.labels), **dict(changes.labels)}.items())),
        exposed_ports=tuple(sorted({*base.exposed_ports, *changes.ports})),
        volumes=tuple(sorted({*base.volumes, *changes.volumes})),
        working_dir=changes.workdir or base.working_dir,
    )
