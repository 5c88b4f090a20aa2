"""Libraries loaded at run time that no DT_NEEDED names, as opt-in sets.

glibc dlopens NSS modules named by /etc/nsswitch.conf and gconv modules named by
gconv-modules; programs dlopen plugins. No ELF header says so, so a recipe asks for them:
`Extras(nss=True, gconv=True or ("UTF-16", ...), globs=("/usr/lib64/myapp/plugins/*.so",))`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from smith.arch import triplet_of
from smith.paths import normalize_path
from smith.resolve.closure import ClosureWalker, Reason
from smith.resolve.elf import Abi
from smith.resolve.loader import Step, glob_root
from smith.tree import Kind

if TYPE_CHECKING:
    from smith.profile import (
        ProfileEntry,
    )  # a type only: smith.profile writes files (shutil, tempfile)

# Since glibc 2.34 these services are built into libc.so.6; an image without their
# libnss_*.so.2 still resolves them. Any other missing module is skipped by glibc.
BUILTIN_NSS_SERVICES = frozenset({"files", "dns"})


@dataclass(frozen=True)
class Extras:
    """Run-time loaded files a recipe opts into.

    `gconv` is True for every gconv module, or the module names (file stems, e.g.
    "UTF-16", "ISO8859-1") to keep. `globs` are absolute paths or globs in the image; a
    matching directory is kept whole, a matching ELF file is walked like a dlopen.
    """

    nss: bool = False
    gconv: bool | tuple[str, ...] = False
    globs: tuple[str, ...] = ()
    # The rule-based sets to apply (runtime_sets.RuntimeRule values; build and minimize
    # pass all of them unless switched off). Strings here, so that runtime_sets can build
    # on this module without an import cycle.
    rules: tuple[str, ...] = ()
    profile: tuple[ProfileEntry, ...] = ()  # what `smith probe` saw the program use


def program_abis(walker: ClosureWalker) -> list[Abi]:
    """The ABIs of the dynamically linked programs: run-time modules must match one."""
    abis: list[Abi] = []
    for loaded in walker.programs.values():
        info = walker.cache.info(walker.root, loaded[0].real)
        if info is not None and info.abi not in abis:
            abis.append(info.abi)
    return abis


def nss_services(text: str) -> list[str]:
    """Service names of an nsswitch.conf, in order of appearance, without duplicates."""
    services: list[str] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0]
        database, sep, rest = line.partition(":")
        if not sep or not database.strip():
            continue
        depth = 0
        for word in rest.replace("[", " [ ").replace("]", " ] ").split():
            if word == "[":
                depth += 1
            elif word == "]":
                depth = max(0, depth - 1)
            elif depth == 0 and word not in services:
                services.append(word)
    return services


def add_nss_modules(walker: ClosureWalker) -> None:
    conf = walker.walker.walk("etc/nsswitch.conf")
    if conf.kind not in (Kind.FILE, Kind.HARDLINK):
        return  # glibc's defaults are "files" and "dns": built in
    real = walker.keep_walk(conf, Reason(Step.NSS, name="/etc/nsswitch.conf"), conf.path)
    with walker.root.open(real) as stream:
        text = stream.read(1 << 20).decode("utf-8", "surrogateescape")
    for service in nss_services(text):
        module = f"libnss_{service}.so.2"
        found_any = False
        for abi in program_abis(walker):
            found = walker.search_default(module, abi)
            if found is not None:
                found_any = True
                reason = Reason(Step.NSS, name=f"{service} (/etc/nsswitch.conf)")
                walker.add_module(found, reason)
        if not found_any and service not in BUILTIN_NSS_SERVICES:
            walker.warnings.append(f"NSS service {service!r} has no {module} in the root")


def gconv_dirs(walker: ClosureWalker) -> list[str]:
    dirs: list[str] = []
    for abi in program_abis(walker):
        triplet = triplet_of(abi)
        candidates = [f"usr/lib/{triplet}/gconv"] if triplet else []
        candidates += ["usr/lib64/gconv", "usr/lib/gconv"]
        for candidate in candidates:
            walk = walker.walker.walk(candidate)
            if walk.kind is Kind.DIR and candidate not in dirs:
                dirs.append(candidate)
    return dirs


def add_gconv_modules(walker: ClosureWalker, which: bool | tuple[str, ...]) -> None:
    wanted = None if which is True else {name.upper() for name in which or ()}
    for directory in gconv_dirs(walker):
        physical = walker.walker.walk(directory).path
        for name in walker.root.listdir(physical):
            path = f"{directory}/{name}"
            if name.startswith("gconv-modules"):
                kind = walker.walker.walk(path).kind
                if kind is Kind.DIR:  # gconv-modules.d/*.conf
                    for sub in walker.root.listdir(walker.walker.walk(path).path):
                        walker.add_module(f"{path}/{sub}", Reason(Step.GCONV, name=name))
                else:
                    walker.add_module(path, Reason(Step.GCONV, name=name))
            elif name.endswith(".so") and (wanted is None or name[:-3].upper() in wanted):
                walker.add_module(path, Reason(Step.GCONV, name=name[:-3]))


def add_glob(walker: ClosureWalker, pattern: str) -> None:
    normalized = normalize_path(pattern, what="extra path")
    for match in glob_root(walker.root, walker.walker, normalized):
        reason = Reason(Step.EXTRA, name=pattern)
        walk = walker.walker.walk(match)
        if walk.kind is Kind.DIR:
            for link in walk.links:
                walker.keep(link, Reason(Step.SYMLINK, name=f"/{match}"))
            add_tree(walker, walk.path, reason)
        else:
            walker.add_module(match, reason)


def add_tree(
    walker: ClosureWalker,
    directory: str,
    reason: Reason,
    skip: frozenset[str] = frozenset(),
    module_suffix: str = "",
) -> None:
    """A whole directory, kept as it is (links inside it are kept, not followed out),
    without the subdirectories named in `skip`. A regular file whose name ends with
    `module_suffix` (every name ends with "") may be loaded, and is walked if it is ELF;
    any other is kept unread. Each (directory, skip, module_suffix) is listed once per
    walker: keeping is first-come, so a second listing could add nothing."""
    walker.keep(directory, reason)
    done = (directory, skip, module_suffix)
    if done in walker.trees_done:
        return
    walker.trees_done.add(done)
    prefix = f"{directory}/" if directory else ""
    for name, kind in walker.root.list_kinds(directory):
        path = prefix + name
        if kind is Kind.DIR:
            if name not in skip:
                add_tree(walker, path, reason, skip, module_suffix)
        elif kind is Kind.SYMLINK:
            walker.keep(path, reason)
        elif kind is Kind.FILE:
            if name.endswith(module_suffix):
                walker.add_listed_file(path, reason)
            else:
                walker.keep(path, reason)
        elif kind is not None:
            walker.add_module(path, reason)
