"""Known run-time loads, kept by rule when the closure holds the library that does them.

No ELF header names what a library dlopens, but some loads are known and follow from what
is already in the closure:

- libgcc_s: glibc's pthread_cancel and pthread_exit unwind the thread's stack with
  libgcc_s.so.1, which libc dlopens on first use ("libgcc_s.so.1 must be installed for
  pthread_exit to work", then abort). The trigger is an object of the closure that
  *imports* one of the two from libc (an undefined dynamic symbol): only code that calls
  them can make libc load it, and every call from another object goes through .dynsym.
  Keeping it for every libc user would add it to every image (and change every digest).
- openssl: libcrypto.so.3 loads its providers (OSSL_PROVIDER_load, e.g. "legacy") from
  the ossl-modules directory and engines from engines-3, both beside it (OpenSSL's
  MODULESDIR and ENGINESDIR are <libdir>/ossl-modules and <libdir>/engines-3 on Debian and
  Fedora alike).
- interpreter: a python3, perl or ruby program imports its standard library at run time;
  the module tree is kept, without site-packages, dist-packages, site_perl, vendor_perl,
  gems, site_ruby or vendor_ruby (a recipe names those with `paths`); of its files only
  the extension modules (*.so) can be loaded, and only they are read and walked. node's
  standard library is compiled into the binary: nothing to keep.

Each rule can be switched off (`no_runtime_libraries:` in a recipe, `--no-runtime` for
minimize). The opt-in NSS and gconv sets are in extras.py.
"""

from __future__ import annotations

import posixpath
import re
import struct
from collections.abc import Hashable
from typing import BinaryIO

from smith.errors import ElfError
from smith.resolve.closure import ClosureWalker, Reason
from smith.resolve.elf import ElfInfo
from smith.resolve.elfsyms import names_any, undefined_imports
from smith.resolve.extras import add_tree
from smith.resolve.loader import Step, glob_root
from smith.resolve.runtime_rules import RuntimeRule as RuntimeRule
from smith.tree import Kind

ALL_RULES = tuple(RuntimeRule)


def rules_without(off: tuple[str, ...], *, profiled: bool = False) -> tuple[str, ...]:
    """All the rules but the ones switched off, in their fixed order. With a probe's
    profile the interpreter rule is off too: the profile names the modules the program
    imported, which is what the rule guesses at by keeping the whole standard library.
    The other rules stay: a probe may not reach the code path that cancels a thread."""
    if profiled:
        off = (*off, RuntimeRule.INTERPRETER)
    return tuple(rule.value for rule in ALL_RULES if rule not in off)


LIBC_SONAME = "libc.so.6"
LIBGCC_S = "libgcc_s.so.1"
# The libc functions that dlopen libgcc_s (nptl/pthread_cancel.c, nptl/pthread_exit.c via
# __libc_unwind_link_get).
UNWIND_USERS = ("pthread_cancel", "pthread_exit")
LIBCRYPTO_SONAME = "libcrypto.so.3"
OPENSSL_DIRS = (("ossl-modules", "its providers"), ("engines-3", "its engines"))

# A program's file name (symlinks resolved) says which interpreter it is.
PYTHON = re.compile(r"python(\d+(?:\.\d+)?)?")
PERL = re.compile(r"perl(\d+(?:\.\d+)*)?")
RUBY = re.compile(r"ruby(\d+(?:\.\d+)*)?")
# Directories of add-on modules inside a standard library tree: not the standard library.
SITE_DIRS = frozenset(
    {
        "site-packages",
        "dist-packages",
        "site_perl",
        "vendor_perl",
        "gems",
        "site_ruby",
        "vendor_ruby",
    }
)
PERL_TREES = (
    "usr/lib/*/perl-base",
    "usr/lib/*/perl/5*",
    "usr/share/perl/5*",
    "usr/share/perl5",
    "usr/lib64/perl5",
)
RUBY_TREES = ("usr/lib/ruby/[0-9]*", "usr/lib/*/ruby/[0-9]*", "usr/lib64/ruby", "usr/share/ruby")
# What the three interpreters dlopen from their standard library: extension modules, named
# with a suffix ending in this one (Python's importlib.machinery.EXTENSION_SUFFIXES on
# Linux: .cpython-311-x86_64-linux-gnu.so, .abi3.so, .so; perl's and ruby's dlext, "so").
# Every other file is source or data to them, never mapped by ld.so: kept unread (reading
# the first bytes of each of ~3,800 files was most of the rule's time; the one ELF file
# among them on Debian, python3.11's config-3.11-*/python.o, is not dynamic).
MODULE_SUFFIX = ".so"


def add_runtime_rules(walker: ClosureWalker, rules: tuple[str, ...]) -> None:
    """Apply the rules in a fixed order: the interpreter's modules can bring libcrypto
    (Python's _ssl), and anything added can import pthread_exit."""
    if RuntimeRule.INTERPRETER in rules:
        add_interpreter_trees(walker)
    if RuntimeRule.OPENSSL in rules:
        add_openssl_modules(walker)
    if RuntimeRule.LIBGCC_S in rules:
        add_libgcc_s(walker)


def add_libgcc_s(walker: ClosureWalker) -> None:
    objects = walker.kept_elf_files()
    libcs = [(path, info) for path, info in objects if info.soname == LIBC_SONAME]
    if not libcs:
        return
    imports = SymbolImports()
    for path, object_info in objects:
        for symbol in imports.of(walker, path, object_info, UNWIND_USERS):
            for libc, info in libcs:
                found = walker.search_default(LIBGCC_S, info.abi)
                if found is None:
                    walker.warnings.append(
                        f"/{path} calls {symbol}, which needs {LIBGCC_S}: not in the root"
                    )
                    continue
                name = f"{symbol} (called by /{path})"
                walker.add_module(found, Reason(Step.RULE, by=libc, name=name))
            return  # one caller is enough: libgcc_s is kept, and named once


def add_openssl_modules(walker: ClosureWalker) -> None:
    for path, info in walker.kept_elf_files():
        if info.soname != LIBCRYPTO_SONAME:
            continue
        for name, what in OPENSSL_DIRS:
            directory = posixpath.join(posixpath.dirname(path), name)
            walk = walker.walker.walk(directory)
            if walk.kind is Kind.DIR:
                add_tree(walker, walk.path, Reason(Step.RULE, by=path, name=what))


def add_interpreter_trees(walker: ClosureWalker) -> None:
    for _, loaded in sorted(walker.programs.items()):
        real = loaded[0].real
        base = posixpath.basename(real)
        for directory in interpreter_trees(walker, base):
            reason = Reason(Step.RULE, by=real, name=f"import: its standard library /{directory}")
            walk = walker.walker.walk(directory)
            for link in walk.links:
                walker.keep(link, Reason(Step.SYMLINK, by=real, name=f"/{directory}"))
            add_tree(walker, walk.path, reason, skip=SITE_DIRS, module_suffix=MODULE_SUFFIX)


def interpreter_trees(walker: ClosureWalker, base: str) -> list[str]:
    """The standard library directories of the interpreter whose file is named `base`."""
    if match := PYTHON.fullmatch(base):
        version = match.group(1) or ""
        if "." not in version:
            # `python3` as a file (no version in the name): every python3.N tree there is.
            patterns = [f"{p}/python{version or '3'}.*" for p in ("usr/lib", "usr/lib64")]
        else:
            patterns = [f"{p}/python{version}" for p in ("usr/lib", "usr/lib64", "usr/local/lib")]
        trees = [t for p in patterns for t in glob_root(walker.root, walker.walker, p)]
        return [t for t in trees if walker.walker.walk(f"{t}/os.py").kind is not None]
    if PERL.fullmatch(base):
        patterns = list(PERL_TREES)
    elif RUBY.fullmatch(base):
        patterns = list(RUBY_TREES)
    else:
        return []
    found = [t for p in patterns for t in glob_root(walker.root, walker.walker, p)]
    return [t for t in found if walker.walker.walk(t).kind is Kind.DIR]


class SymbolImports:
    """Which of some names an ELF file imports (undefined in .dynsym), cached by content."""

    def __init__(self) -> None:
        self._seen: dict[tuple[Hashable, tuple[str, ...]], tuple[str, ...]] = {}

    def of(
        self, walker: ClosureWalker, path: str, info: ElfInfo, names: tuple[str, ...]
    ) -> tuple[str, ...]:
        key = (walker.root.content_key(path), names)
        if key not in self._seen:
            self._seen[key] = self._read(walker, path, info, names)
        return self._seen[key]

    @staticmethod
    def _read(
        walker: ClosureWalker, path: str, info: ElfInfo, names: tuple[str, ...]
    ) -> tuple[str, ...]:
        # An import's name is in the dynamic string table, which the loader's read located:
        # that table alone clears most files (the rule went through ~150 files of a
        # /usr/bin closure, each header, section headers and table, before git).
        try:
            if info.strtab_span[0] >= 0 and not table_names_any(walker, path, info, names):
                return ()
        except ElfError:
            return ()  # the loader read this file; its symbols are only a hint
        with walker.root.open(path) as stream:
            try:
                fast = undefined_imports(stream, names)
            except (struct.error, IndexError, OSError):
                return ()  # the loader read this file; its symbols are only a hint
            return fast if fast is not None else _read_pyelftools(stream, names)


# A dynamic string table is searched in pieces of this size: a Go program's is megabytes,
# and read at once each was a fresh buffer the kernel mapped page by page (~1,700 page
# faults for the tables of a /usr/bin closure); a piece's buffer is reused.
TABLE_PIECE = 1 << 16


def table_names_any(
    walker: ClosureWalker, path: str, info: ElfInfo, names: tuple[str, ...]
) -> bool:
    """Whether the dynamic string table of `path` holds any of `names` (see names_any)."""
    offset, length = info.strtab_span
    overlap = max(len(name) for name in names) - 1  # a name across two pieces is in both
    start = 0
    while start < length:
        piece = walker.root.read_at(path, offset + start, min(TABLE_PIECE, length - start))
        if names_any(piece, names):
            return True
        if len(piece) < TABLE_PIECE:
            return False  # the table's end (or the file's, if it shrank)
        start += TABLE_PIECE - overlap
    return False


def _read_pyelftools(stream: BinaryIO, names: tuple[str, ...]) -> tuple[str, ...]:
    """The imports of a file the struct reader leaves to pyelftools (see elfsyms)."""
    from elftools.common.exceptions import ELFError as PyElfError
    from elftools.elf.elffile import ELFFile
    from elftools.elf.sections import SymbolTableSection

    try:
        elf = ELFFile(stream)
        found: list[str] = []
        for section in elf.iter_sections():
            if section["sh_type"] != "SHT_DYNSYM":
                continue
            if not isinstance(section, SymbolTableSection):
                continue
            for symbol in section.iter_symbols():
                base = symbol.name.split("@", 1)[0]
                if base in names and symbol["st_shndx"] == "SHN_UNDEF":
                    found.append(base)
    except (PyElfError, ValueError, KeyError, IndexError, OSError):
        return ()  # the loader read this file; its symbols are only a hint
    return tuple(n for n in names if n in found)
