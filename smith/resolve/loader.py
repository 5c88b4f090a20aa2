"""The search rules of glibc's ld.so, applied to a root that is not the host.

Where the real loader reads /etc/ld.so.cache (built by ldconfig from /etc/ld.so.conf), we
read the root's ld.so.conf itself: a minimised image has no reason to trust a cache built
for a fuller tree, and ldconfig gives earlier ld.so.conf directories precedence, which a
search in conf order reproduces. Everything else follows elf/dl-load.c: the order of the
search lists, which lists apply to which object, dynamic string tokens and the ABI check.
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
import struct
from dataclasses import dataclass
from enum import StrEnum

from smith.arch import triplet_of
from smith.errors import UnsafePathError
from smith.paths import normalize_path
from smith.resolve.elf import Abi, ElfClass
from smith.resolve.roots import PathWalker, Root
from smith.tree import Kind

MAX_CONF_INCLUDE_DEPTH = 16


class Step(StrEnum):
    """Why a file is in the closure: the search step or rule that brought it in."""

    START = "start"
    INTERPRETER = "PT_INTERP"
    SCRIPT = "#! interpreter"
    NEEDED_PATH = "DT_NEEDED path"
    RPATH = "DT_RPATH"
    LD_LIBRARY_PATH = "LD_LIBRARY_PATH"
    RUNPATH = "DT_RUNPATH"
    LD_SO_CONF = "ld.so.conf"
    DEFAULT = "default directory"
    HWCAPS = "glibc-hwcaps variant"
    SYMLINK = "symlink"
    HARDLINK = "hard link target"
    NSS = "NSS module"
    GCONV = "gconv module"
    PROFILE = "profile"  # recorded by `smith probe` (smith/profile.py)
    RULE = "run-time rule"  # a known dlopen of a library in the closure (runtime_sets.py)
    EXTRA = "extra"


@dataclass(frozen=True)
class SearchDir:
    """One directory of a search list, canonical and root-relative, with its origin."""

    path: str
    step: Step


def abi_lib_dir(walker: PathWalker, abi: Abi) -> str:
    """What $LIB expands to for this ABI in this root (Debian multiarch, lib64 or lib)."""
    triplet = triplet_of(abi)
    if triplet and walker.walk(f"usr/lib/{triplet}").kind is Kind.DIR:
        return f"lib/{triplet}"
    if abi.elf_class is ElfClass.ELF64 and walker.walk("usr/lib64").kind is Kind.DIR:
        return "lib64"
    return "lib"


def default_dirs(abi: Abi) -> tuple[str, ...]:
    """The loader's built-in directories for an object's class and machine.

    Debian's glibc searches its multiarch directories, Fedora's lib64 (for ELF64) or lib;
    listing all of them is safe because a candidate of the wrong class or machine is skipped.
    """
    dirs: list[str] = []
    triplet = triplet_of(abi)
    if triplet:
        dirs += [f"lib/{triplet}", f"usr/lib/{triplet}"]
    if abi.elf_class is ElfClass.ELF64:
        dirs += ["lib64", "usr/lib64"]
    else:
        dirs += ["lib32", "usr/lib32"] if abi.machine == "EM_386" else []
    dirs += ["lib", "usr/lib"]
    return tuple(dirs)


# glibc's ld.so carries its built-in directories as `system_dirs`, NUL-terminated names
# ending in "/", beside `system_dirs_len`, the array of their lengths: right in front of the
# names on x86_64 and i686, after them (aligned, past a few NUL bytes of padding) on aarch64.
# The first name is spelled out: a pattern that starts with a literal "/" is searched for
# that byte first, where a group at the start was tried at every offset (~9 ms for
# Debian's ld.so, once per closure command; 0.1 ms this way, the same matches).
SYSTEM_DIRS_RUN = re.compile(rb"/[\x21-\x7e]*/\x00(?:/[\x21-\x7e]*/\x00){0,15}")
# How far past the names an array after them may start: the padding to its alignment.
MAX_LENGTHS_PADDING = 32


def interpreter_system_dirs(data: bytes, abi: Abi) -> tuple[str, ...]:
    """The default directories an ld.so binary was built with, or () if not recognised.

    These decide where the target's loader looks last, and differ between distributions
    (Debian: /lib/<triplet>, /usr/lib/<triplet>, /lib, /usr/lib; Fedora: /lib64,
    /usr/lib64). A run of directory names only counts when a lengths array next to it
    matches it exactly, so a stray string cannot be mistaken for it.
    """
    word = 8 if abi.elf_class is ElfClass.ELF64 else 4
    fmt = ("<" if abi.little_endian else ">") + ("Q" if word == 8 else "I")

    def lengths_at(array: int, count: int) -> list[int]:
        if array < 0 or array + word * count > len(data):
            return []
        return [struct.unpack_from(fmt, data, array + word * i)[0] for i in range(count)]

    for match in SYSTEM_DIRS_RUN.finditer(data):
        names = match.group().split(b"\0")[:-1]
        offset = match.start()
        for skip in range(len(names)):
            run = names[skip:]
            start = offset + sum(len(n) + 1 for n in names[:skip])
            expected = [len(n) for n in run]
            # Before the names: the array ends where they start.
            found = lengths_at(start - word * len(run), len(run)) == expected
            # After them: at the first aligned offset past the NUL padding.
            end = match.end()
            for array in range(end + (-end) % word, end + MAX_LENGTHS_PADDING + 1, word):
                if found or any(data[end:array]):
                    break
                found = lengths_at(array, len(run)) == expected
            if found:
                dirs = [n.decode("ascii").strip("/") for n in run]
                return tuple(normalize_path(d) for d in dirs)
    return ()


def expand_tokens(text: str, origin: str, lib: str, platform: str) -> str:
    """Expand $ORIGIN, $LIB and $PLATFORM (also in ${...} form) as _dl_dst_substitute does."""
    for name, value in (("ORIGIN", origin), ("LIB", lib), ("PLATFORM", platform)):
        text = text.replace("${" + name + "}", value)
        # $ORIGINAL is not $ORIGIN: a token ends where a name character would continue it.
        out: list[str] = []
        rest = text
        token = "$" + name
        while token in rest:
            before, _, after = rest.partition(token)
            out.append(before)
            if after[:1].isalnum() or after[:1] == "_":
                out.append(token)
            else:
                out.append(value)
            rest = after
        out.append(rest)
        text = "".join(out)
    return text


def split_path_list(entries: tuple[str, ...] | list[str]) -> list[str]:
    """Colon-separated lists (DT_RPATH, DT_RUNPATH, LD_LIBRARY_PATH) to their elements."""
    return [part for entry in entries for part in entry.split(":")]


def to_root_dir(path: str, workdir: str) -> str | None:
    """A search directory as a canonical root path; None if it cannot be one.

    Relative entries are relative to the process's working directory, as for ld.so. `..`
    is resolved lexically: the loader joins strings, and in a root `/..` is `/`.
    """
    if not path:
        path = "."  # an empty element means the current directory to ld.so
    joined = posixpath.normpath(posixpath.join("/", workdir, path))
    try:
        return normalize_path(joined.lstrip("/"))
    except UnsafePathError:
        return None


def read_ld_so_conf(root: Root, walker: PathWalker) -> tuple[str, ...]:
    """The directories of the root's /etc/ld.so.conf, following `include` globs in order."""
    dirs: list[str] = []
    _read_conf(root, walker, "etc/ld.so.conf", dirs, set(), 0)
    seen: set[str] = set()
    unique: list[str] = []
    for d in dirs:
        if d not in seen:
            seen.add(d)
            unique.append(d)
    return tuple(unique)


def _read_conf(
    root: Root, walker: PathWalker, path: str, out: list[str], seen: set[str], depth: int
) -> None:
    # Files that include themselves (directly, or several through one glob) would never
    # end: each file is read once. Reading it again could only repeat directories that are
    # already listed, earlier, so the search order is the same.
    found = walker.walk(path)
    if found.path in seen or depth > MAX_CONF_INCLUDE_DEPTH:
        return
    seen.add(found.path)
    if found.kind not in (Kind.FILE, Kind.HARDLINK):
        return
    if found.kind is Kind.HARDLINK:
        found = walker.walk(root.hardlink_target(found.path))
    with root.open(found.path) as stream:
        text = stream.read(1 << 20).decode("utf-8", "surrogateescape")
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        words = line.split()
        if words[0] == "include":
            for pattern in words[1:]:
                base = "/" if pattern.startswith("/") else "/" + posixpath.dirname(path)
                full = posixpath.normpath(posixpath.join(base, pattern)).lstrip("/")
                # glob() sorts its matches; ldconfig reads them in that order.
                for match in glob_root(root, walker, full):
                    _read_conf(root, walker, match, out, seen, depth + 1)
        elif words[0] == "hwcap":
            continue  # obsolete syntax that ldconfig ignores
        else:
            # "dir=type" is an old libc5 annotation; the directory is before the "=".
            for entry in line.replace(",", " ").split():
                directory = to_root_dir(entry.split("=", 1)[0], "/")
                if directory is not None:
                    out.append(directory)


def glob_root(root: Root, walker: PathWalker, pattern: str) -> list[str]:
    """Paths of the root matching a glob (`*`, `?`, `[...]` within one component)."""
    matches = [""]
    for part in [p for p in pattern.split("/") if p]:
        following: list[str] = []
        for base in matches:
            if not any(c in part for c in "*?["):
                following.append(f"{base}/{part}" if base else part)
                continue
            physical = walker.walk(base).path if base else ""
            for name in root.listdir(physical):
                if name.startswith(".") and not part.startswith("."):
                    continue
                if fnmatch.fnmatchcase(name, part):
                    following.append(f"{base}/{name}" if base else name)
        matches = following
    return sorted(m for m in matches if walker.walk(m).kind is not None)
