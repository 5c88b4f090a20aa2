"""The ELF dependency closure: what the target's own ld.so would load, inside the root.

Each start is loaded like ld.so loads a program (elf/dl-deps.c): its interpreter first,
then DT_NEEDED breadth-first, a name that matches an object already loaded (by the name it
was loaded under, its DT_SONAME, or the same file) reusing it, and every other name searched
with the rules of `loader.py` from the object that needs it. The union over all starts,
plus the opt-in run-time modules (extras.py), is the closure; every kept path carries the
Reason it is kept, so `--explain` can answer "why is this file here?".
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from smith.arch import describe_abi, platform_of
from smith.errors import ElfError
from smith.paths import normalize_path
from smith.resolve.elf import ELF_MAGIC, Abi, ElfInfo
from smith.resolve.elfcache import HEAD_BYTES, ElfCache
from smith.resolve.loader import (
    SearchDir,
    Step,
    abi_lib_dir,
    default_dirs,
    expand_tokens,
    interpreter_system_dirs,
    read_ld_so_conf,
    split_path_list,
    to_root_dir,
)
from smith.resolve.programs import DEFAULT_PATH, find_program
from smith.resolve.roots import PathWalker, Root, Walk
from smith.tree import Kind, sorted_bytewise

log = logging.getLogger(__name__)

# Linux follows at most 4 levels of #! interpreters (fs/exec.c, bprm->interp_depth... the
# exact limit moved over the years; 4 is the historical one).
MAX_SCRIPT_DEPTH = 4


@dataclass(frozen=True)
class LoaderEnv:
    """The parts of a process environment that decide what gets loaded."""

    ld_library_path: tuple[str, ...] = ()
    path: tuple[str, ...] = DEFAULT_PATH
    workdir: str = "/"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | Sequence[str], workdir: str = "/") -> LoaderEnv:
        """From a mapping or an OCI config's `Env` list of "KEY=value" strings."""
        items = dict(env) if isinstance(env, Mapping) else dict(_split_env(env))
        lib = items.get("LD_LIBRARY_PATH")
        path = items.get("PATH")
        return cls(
            ld_library_path=tuple(lib.split(":")) if lib else (),
            path=tuple(path.split(":")) if path is not None else DEFAULT_PATH,
            workdir=workdir or "/",
        )


def _split_env(env: Sequence[str]) -> Iterable[tuple[str, str]]:
    for item in env:
        key, sep, value = item.partition("=")
        if sep:
            yield key, value


@dataclass(frozen=True)
class Reason:
    """Why one path is kept: the rule (`step`), the object that asked (`by`, a canonical
    path, empty for starts and extras) and what it asked for (`name`: the DT_NEEDED name,
    the interpreter, the glob, or for a symlink the path that was being looked up)."""

    step: Step
    by: str = ""
    name: str = ""

    def __str__(self) -> str:
        if self.step is Step.START:
            return "start"
        if self.step is Step.SYMLINK:
            via = f" (for /{self.by})" if self.by else ""
            return f"symlink on the way to {self.name}{via}"
        if self.step is Step.HARDLINK:
            return f"first name of hard link /{self.by}"
        if self.step in (Step.INTERPRETER, Step.SCRIPT):
            return f"{self.step} {self.name} of /{self.by}"
        if self.step in (Step.NSS, Step.GCONV, Step.EXTRA, Step.PROFILE):
            by = f" of /{self.by}" if self.by else ""
            return f"{self.step} {self.name}{by}"
        if self.step is Step.RULE:
            return f"dlopened by /{self.by} for {self.name}"
        if self.step is Step.LD_SO_CONF and not self.by:
            return "the loader reads its ld.so.conf directories from this cache"
        if self.step is Step.HWCAPS:
            return f"{self.step} of {self.name} needed by /{self.by}"
        return f"DT_NEEDED {self.name} of /{self.by}, found by {self.step}"


@dataclass(frozen=True)
class Loaded:
    """One object of a program's link map: the name ld.so opened and the file itself."""

    path: str
    real: str
    reason: Reason


@dataclass(frozen=True)
class Missing:
    """A NEEDED (or interpreter, or env NAME) that was not found, and who needed it."""

    name: str
    chain: tuple[str, ...]

    def __str__(self) -> str:
        # A hostile NEEDED may be 10,000 characters: quoted, the command line's one error
        # line cuts it (smith.cli.reporting.shorten cuts quoted values of 160 and more).
        name = repr(self.name) if len(self.name) >= 160 else self.name
        return f"{name} needed by " + " <- ".join(f"/{p}" for p in reversed(self.chain))


@dataclass(frozen=True)
class Closure:
    """Kept paths (canonical, root-relative) with their reasons, in the order found."""

    kept: Mapping[str, Reason]
    programs: Mapping[str, tuple[Loaded, ...]] = field(default_factory=dict)
    missing: tuple[Missing, ...] = ()
    warnings: tuple[str, ...] = ()

    def paths(self) -> list[str]:
        return sorted_bytewise(self.kept)

    def explain(self, path: str) -> list[str]:
        """Why `path` is kept, as lines from the file back to a start."""
        path = normalize_path(path)
        lines: list[str] = []
        seen: set[str] = set()
        while path in self.kept and path not in seen:
            seen.add(path)
            reason = self.kept[path]
            lines.append(f"/{path}: {reason}")
            if not reason.by:
                break
            path = reason.by
        return lines


class Found:
    """Where a search found a library (a plain class with slots, as _Object: a closure makes
    one per search, and a frozen dataclass costs twice as much to make and ~0.5 ms to
    define at every start of the command)."""

    __slots__ = ("info", "opened", "real", "step", "variants", "walk")

    def __init__(
        self,
        opened: str,  # the candidate name ld.so opened (its directory is the library's $ORIGIN)
        walk: Walk,
        real: str,
        info: ElfInfo,
        step: Step,
        variants: tuple[str, ...],  # other glibc-hwcaps builds of the same library
    ) -> None:
        self.opened = opened
        self.walk = walk
        self.real = real
        self.info = info
        self.step = step
        self.variants = variants


class _Object:
    """One object mapped for one program (a closure makes thousands: a plain class with
    slots, made without dataclass machinery, is the cheapest to make)."""

    __slots__ = (
        "info",
        "list_number",
        "loader",
        "path",
        "real",
        "reason",
        "rpath_chain",
        "system_dirs",
    )

    def __init__(
        self, path: str, real: str, info: ElfInfo, loader: _Object | None, reason: Reason
    ) -> None:
        self.path = path
        self.real = real
        self.info = info
        self.loader = loader
        self.reason = reason
        # For a program: the default directories of its interpreter, when they can be read.
        self.system_dirs: tuple[str, ...] = ()
        # Whether this object or one that loaded it has a DT_RPATH (their RPATHs apply).
        self.rpath_chain: bool = bool(info.rpath) or (loader is not None and loader.rpath_chain)
        self.list_number = -1  # of its search list, once known (ClosureWalker._search_list)


class _Hit:
    """A DT_NEEDED resolved from one object: the search's answer and what it keeps (slots,
    as Found)."""

    __slots__ = ("file", "found", "loaded", "reason")

    def __init__(self, found: Found, reason: Reason, file: str, loaded: Loaded) -> None:
        self.found = found
        self.reason = reason
        self.file = file  # the file holding the bytes (hard links followed)
        self.loaded = loaded


class ClosureWalker:
    """Computes closures in one root, with caches shared by all the starts it is given."""

    def __init__(
        self,
        root: Root,
        *,
        env: LoaderEnv | None = None,
        cache: ElfCache | None = None,
        keep_going: bool = False,
    ) -> None:
        self.root = root
        self.env = env or LoaderEnv()
        self.cache = cache or ElfCache()
        self.keep_going = keep_going
        self.walker = PathWalker(root)
        self.kept: dict[str, Reason] = {}
        self.programs: dict[str, tuple[Loaded, ...]] = {}
        self.missing: list[Missing] = []
        self.warnings: list[str] = []
        self._conf: tuple[str, ...] | None = None
        self._searches: dict[tuple[str, int], Found | None] = {}
        # DT_NEEDED resolved per (object, search list or origin, name): every program that
        # loads libc resolves libc's own DT_NEEDED the same way (see _resolve).
        self._hits: dict[tuple[str, str, int, str], _Hit | None] = {}
        # Search lists are numbered and a search is memoised by (name, number): a list is
        # hashed once, not once per DT_NEEDED.
        self._list_numbers: dict[tuple[Abi, tuple[SearchDir, ...]], int] = {}
        self._lists: list[tuple[SearchDir, ...]] = []
        # The search list of an object no DT_RPATH, DT_RUNPATH or LD_LIBRARY_PATH applies
        # to (nearly all of them) depends only on these three facts: its number, by them.
        self._plain_lists: dict[tuple[bool, Abi, tuple[str, ...]], int] = {}
        self._lib_dirs: dict[Abi, str] = {}
        self._modules_done: set[str] = set()
        # Directories kept whole (extras.add_tree), with the names skipped in them and the
        # suffix of the files read: a tree reached again (perl and perl5.36.0 are one file;
        # /usr/share/perl/5.36 links to 5.36.0) would only repeat keeps that are done, at a
        # few syscalls per file.
        self.trees_done: set[tuple[str, frozenset[str], str]] = set()
        # Every dynamic ELF file the walker has read (elf_info), by path: the run-time rules
        # look for libc and libcrypto among the kept ones (kept_elf_files), and the kept
        # paths are mostly data (a standard library), files without an ELF reading.
        self._dynamic: dict[str, ElfInfo] = {}
        self._starts_done: set[str] = set()
        self._scripts_open: list[str] = []  # the #! chain being followed, outermost first
        self._interpreters: dict[Hashable, tuple[str, ...]] = {}
        self._interpreter_of: dict[str, tuple[str, str, ElfInfo, tuple[str, ...]]] = {}

    # -- results ----------------------------------------------------------------------------

    def closure(self) -> Closure:
        # ld.so does not read ld.so.conf: it reads the cache ldconfig built from it. If a
        # library was found through ld.so.conf, the image needs the cache to find it too.
        cache = self.walker.walk("etc/ld.so.cache")
        conf_used = any(r.step is Step.LD_SO_CONF for r in self.kept.values())
        if conf_used and cache.kind in (Kind.FILE, Kind.HARDLINK):
            self.keep_walk(cache, Reason(Step.LD_SO_CONF), "etc/ld.so.cache")
        return Closure(
            kept=MappingProxyType(dict(self.kept)),
            programs=MappingProxyType(dict(self.programs)),
            missing=tuple(self.missing),
            warnings=tuple(self.warnings),
        )

    def elf_info(self, path: str) -> ElfInfo | None:
        """The ELF facts of the regular file `path` (None: not ELF); see ElfCache.info."""
        info = self.cache.info(self.root, path)
        if info is not None and info.dynamic:
            self._dynamic[path] = info
        return info

    def kept_elf_files(self) -> list[tuple[str, ElfInfo]]:
        """The dynamic ELF files of the closure so far, in bytewise path order.

        Every kept ELF file was read through elf_info on its way in (a start, a library,
        an interpreter, a module, a listed file that starts with the ELF magic); what is
        kept without a reading (links, directories, nsswitch.conf, ld.so.cache, a listed
        file without the magic) is no ELF file, or not one the loader maps."""
        kept = self.kept
        found = {
            path: info
            for path, info in self._dynamic.items()
            if path in kept and self.root.kind(path) is Kind.FILE
        }
        return [(path, found[path]) for path in sorted_bytewise(found)]

    def keep(self, path: str, reason: Reason) -> None:
        if path and path not in self.kept:
            self.kept[path] = reason

    def keep_walk(self, walk: Walk, reason: Reason, asked: str) -> str:
        """Keep the links passed and the file reached; return the file holding the bytes."""
        for link in walk.links:
            if link and link not in self.kept:  # (keep(), without a Reason made in vain)
                self.kept[link] = Reason(Step.SYMLINK, by=reason.by, name=f"/{asked}")
        self.keep(walk.path, reason)
        if walk.kind is Kind.HARDLINK:
            target = self.walker.walk(self.root.hardlink_target(walk.path))
            self.keep(target.path, Reason(Step.HARDLINK, by=walk.path))
            return target.path
        return walk.path

    def fail(self, name: str, chain: tuple[str, ...], detail: str = "") -> None:
        missing = Missing(name, chain)
        message = f"{missing} is not in the root{detail}"
        if not self.keep_going:
            raise ElfError(message)
        log.warning("%s", message)
        self.missing.append(missing)
        self.warnings.append(message)

    # -- starts -----------------------------------------------------------------------------

    def add_start(self, path: str, reason: Reason | None = None, depth: int = 0) -> None:
        """Add a file to run (or any file named by a recipe) and everything it loads."""
        path = normalize_path(path)
        reason = reason or Reason(Step.START)
        walk = self.walker.walk(path)
        if walk.kind is None:
            if not reason.by:
                raise ElfError(f"start path /{path} does not exist in the root")
            self.fail(f"/{path}", (reason.by,))
            return
        if walk.kind is Kind.DIR:
            raise ElfError(f"start path /{path} is a directory")
        real = self.keep_walk(walk, reason, path)
        if real in self._scripts_open:
            # The kernel gives up on such a chain (ELOOP): a program that can never start.
            chain = " -> ".join(f"/{p}" for p in (*self._scripts_open, real))
            raise ElfError(f"a loop of #! interpreters: {chain}")
        if real in self._starts_done:
            return
        self._starts_done.add(real)
        head = self.cache.head(self.root, real)
        if head.startswith(b"#!"):
            self._scripts_open.append(real)
            try:
                self._add_script(path, real, head, depth)
            finally:
                self._scripts_open.pop()
            return
        info = self.elf_info(real)
        if info is not None and info.dynamic:
            self.load(walk.path, real, info, reason, program=True)

    def _add_script(self, path: str, real: str, head: bytes, depth: int) -> None:
        if depth >= MAX_SCRIPT_DEPTH:
            raise ElfError(f"too many levels of #! interpreters at /{path}")
        line = head[2:].split(b"\n", 1)[0].decode("utf-8", "surrogateescape").strip(" \t")
        interpreter, _, argument = line.replace("\t", " ").partition(" ")
        cut = b"\n" not in head and len(head) >= HEAD_BYTES and head[-1:] not in b" \t"
        if cut and not argument:
            # The kernel reads HEAD_BYTES; an interpreter name cut there is refused
            # (ENOEXEC, since Linux 5.1), and the cut name is no file to look for.
            raise ElfError(
                f"/{path}: its #! interpreter runs past the {HEAD_BYTES} bytes Linux reads"
            )
        if not interpreter:
            raise ElfError(f"/{path} starts with #! but names no interpreter")
        # The kernel resolves a relative interpreter from the working directory; `..` is
        # taken lexically, and in a root `/..` is `/`.
        interpreter_path = posixpath.normpath(posixpath.join("/", self.env.workdir, interpreter))
        self.add_start(interpreter_path, Reason(Step.SCRIPT, by=real, name=interpreter), depth + 1)
        if posixpath.basename(interpreter) == "env":
            name = _env_program(argument.strip())
            if not name:
                return
            found = self.find_on_path(name)
            if found is None:
                self.fail(f"{name} (on PATH)", (path,))
                return
            self.add_start(found, Reason(Step.SCRIPT, by=real, name=f"env {name}"), depth + 1)

    def find_on_path(self, name: str) -> str | None:
        if "/" in name:
            return posixpath.join(self.env.workdir, name)
        return find_program(
            name,
            self.env.path,
            self.env.workdir,
            lambda candidate: self.walker.walk(candidate).kind in (Kind.FILE, Kind.HARDLINK),
        )

    # -- loading ----------------------------------------------------------------------------

    def load(self, path: str, real: str, info: ElfInfo, reason: Reason, *, program: bool) -> None:
        """Load one object and its DT_NEEDED breadth-first, as ld.so maps a program."""
        if not program and real in self._modules_done:
            return
        self._modules_done.add(real)
        main = _Object(path, real, info, None, reason)
        objects = [main]
        loaded: list[Loaded] = [Loaded(path, real, reason)]
        by_name: dict[str, _Object] = {}
        by_file: dict[str, _Object] = {real: main}
        if info.soname:
            by_name[info.soname] = main
        if info.interpreter and program:
            self._load_interpreter(main, by_name, by_file, loaded)
        resolve = self._resolve
        index = 0
        while index < len(objects):
            obj = objects[index]
            index += 1
            for name in obj.info.needed:
                if name in by_name:
                    continue
                hit = resolve(name, obj, main)
                if hit is None:
                    self.fail(name, _chain(obj))
                    continue
                found, file = hit.found, hit.file
                same = by_file.get(file)
                if same is not None:
                    by_name[name] = same
                    continue
                new = _Object(found.opened, file, found.info, obj, hit.reason)
                objects.append(new)
                loaded.append(hit.loaded)
                by_name[name] = new
                by_file[file] = new
                if found.info.soname:
                    by_name.setdefault(found.info.soname, new)
                for variant in found.variants:
                    self.add_module(variant, Reason(Step.HWCAPS, by=obj.real, name=name))
        if program:
            self.programs[path] = tuple(loaded)

    def _resolve(self, name: str, obj: _Object, main: _Object) -> _Hit | None:
        """Search `name` for `obj` and keep what the search passed, once per key: keeping
        is idempotent, so a second program loading the same object repeats nothing."""
        if "/" in name:
            # Searched as a path from $ORIGIN, which is obj.real for a program (no loader).
            key = (obj.real, obj.path, int(obj.loader is None), name)
        else:
            if obj.list_number < 0:
                obj.list_number = self._search_list(obj, main)
            key = (obj.real, "", -1 - obj.list_number, name)
        if key in self._hits:
            return self._hits[key]
        hit = None
        found = self.search(name, obj, main)
        if found is not None:
            reason = Reason(found.step, by=obj.real, name=name)
            file = self.keep_walk(found.walk, reason, found.opened)
            hit = _Hit(found, reason, file, Loaded(found.opened, file, reason))
        self._hits[key] = hit
        return hit

    def _load_interpreter(
        self,
        main: _Object,
        by_name: dict[str, _Object],
        by_file: dict[str, _Object],
        loaded: list[Loaded],
    ) -> None:
        name = main.info.interpreter
        reason = Reason(Step.INTERPRETER, by=main.real, name=name)
        known = self._interpreter_of.get(name)
        if known is None:
            opened = normalize_path(posixpath.normpath(posixpath.join("/", name)))
            walk = self.walker.walk(opened)
            if walk.kind not in (Kind.FILE, Kind.HARDLINK):
                self.fail(name, (main.path,))
                return
            file = self.keep_walk(walk, reason, opened)
            info = self.elf_info(file)
            if info is None:
                raise ElfError(f"the interpreter {name} of /{main.path} is not an ELF file")
            if info.abi != main.info.abi:
                # The kernel refuses to start a program whose ld.so is for another machine
                # (or class): a closure through it would mix architectures.
                raise ElfError(
                    f"the interpreter {name} of /{main.path} is {describe_abi(info.abi)}, "
                    f"the program {describe_abi(main.info.abi)}"
                )
            dirs = self._interpreter_dirs(file, info)
            # Every program names one of a few interpreters: found and kept once (keeping
            # is idempotent, so the next program's keep_walk would add nothing).
            known = self._interpreter_of[name] = (opened, file, info, dirs)
        opened, file, info, main.system_dirs = known
        obj = _Object(opened, file, info, None, reason)
        by_name[name] = obj
        by_file[file] = obj
        if info.soname:
            by_name[info.soname] = obj
        loaded.append(Loaded(opened, file, reason))

    def _interpreter_dirs(self, path: str, info: ElfInfo) -> tuple[str, ...]:
        key = self.root.content_key(path)
        dirs = self._interpreters.get(key)
        if dirs is None:
            with self.root.open(path) as stream:
                data = stream.read(16 << 20)  # ld.so is a few hundred kilobytes
            dirs = self._interpreters[key] = interpreter_system_dirs(data, info.abi)
        return dirs

    def add_module(self, path: str, reason: Reason) -> None:
        """A library loaded at run time (dlopen): itself and what it needs."""
        walk = self.walker.walk(normalize_path(path))
        if walk.kind not in (Kind.FILE, Kind.HARDLINK):
            return
        real = self.keep_walk(walk, reason, walk.path)
        info = self.elf_info(real)
        if info is not None and info.dynamic:
            self.load(walk.path, real, info, reason, program=False)

    def add_listed_file(self, path: str, reason: Reason) -> None:
        """add_module of a regular file found by listing a resolved directory: the path is
        canonical and passes no link, so there is nothing to walk (a tree kept whole, such
        as an interpreter's standard library, lists thousands)."""
        self.keep(path, reason)
        # Most of such a tree is not ELF: four bytes say so without a content key (a stat)
        # or a cache entry.
        if self.root.read_at(path, 0, 4) != ELF_MAGIC:
            return
        info = self.elf_info(path)
        if info is not None and info.dynamic:
            self.load(path, path, info, reason, program=False)

    # -- searching --------------------------------------------------------------------------

    def search(self, name: str, obj: _Object, main: _Object) -> Found | None:
        """Find the file a DT_NEEDED `name` of `obj` resolves to (elf/dl-load.c order)."""
        abi = obj.info.abi
        if "/" in name:
            # A name with a slash is opened as a path (relative: from the working directory).
            expanded = self._expand(name, obj)
            directory, _, base = expanded.rpartition("/")
            where = to_root_dir(directory or "/", self.env.workdir)
            if where is None or not base:
                return None
            number = self._list_number(abi, (SearchDir(where, Step.NEEDED_PATH),))
            name = base
        else:
            if obj.list_number < 0:
                obj.list_number = self._search_list(obj, main)
            number = obj.list_number
        return self._search_memo(name, abi, number)

    def _list_number(self, abi: Abi, dirs: tuple[SearchDir, ...]) -> int:
        number = self._list_numbers.get((abi, dirs))
        if number is None:
            number = self._list_numbers[abi, dirs] = len(self._lists)
            self._lists.append(dirs)
        return number

    def _search_memo(self, name: str, abi: Abi, number: int) -> Found | None:
        key = (name, number)
        if key in self._searches:
            return self._searches[key]
        found = self._searches[key] = self._search_dirs_for(name, abi, self._lists[number])
        return found

    def search_default(self, name: str, abi: Abi) -> str | None:
        """Where dlopen(name) from libc would find a library: LD_LIBRARY_PATH, ld.so.conf,
        default directories (libc has neither DT_RPATH nor DT_RUNPATH)."""
        dirs: list[SearchDir] = []
        for entry in split_path_list(self.env.ld_library_path):
            directory = to_root_dir(entry, self.env.workdir)
            if directory is not None and "$" not in entry:
                dirs.append(SearchDir(directory, Step.LD_LIBRARY_PATH))
        dirs += [SearchDir(d, Step.LD_SO_CONF) for d in self.conf_dirs()]
        dirs += [SearchDir(d, Step.DEFAULT) for d in default_dirs(abi)]
        found = self._search_memo(name, abi, self._list_number(abi, tuple(dirs)))
        return found.opened if found is not None else None

    def _search_list(self, obj: _Object, main: _Object) -> int:
        """The number of the search list for the DT_NEEDED of `obj` (see _build_search_dirs)."""
        abi = obj.info.abi
        if obj.rpath_chain or main.info.rpath or obj.info.runpath or self.env.ld_library_path:
            return self._list_number(abi, self._build_search_dirs(obj, main))
        defaults = main.system_dirs if main.info.abi == abi else ()
        key = (obj.info.nodeflib, abi, defaults)
        number = self._plain_lists.get(key)
        if number is None:
            number = self._plain_lists[key] = self._list_number(
                abi, self._build_search_dirs(obj, main)
            )
        return number

    def _build_search_dirs(self, obj: _Object, main: _Object) -> tuple[SearchDir, ...]:
        dirs: list[SearchDir] = []
        if not obj.info.runpath:
            # DT_RPATH of the object, then of the object that loaded it, and up the chain;
            # then the executable's own. Objects with DT_RUNPATH carry no DT_RPATH (elf.py).
            current: _Object | None = obj
            did_main = False
            while current is not None:
                dirs += self._path_list(current.info.rpath, current, Step.RPATH)
                did_main = did_main or current is main
                current = current.loader
            if not did_main:
                dirs += self._path_list(main.info.rpath, main, Step.RPATH)
        dirs += self._path_list(self.env.ld_library_path, main, Step.LD_LIBRARY_PATH)
        dirs += self._path_list(obj.info.runpath, obj, Step.RUNPATH)
        if not obj.info.nodeflib:
            dirs += [SearchDir(d, Step.LD_SO_CONF) for d in self.conf_dirs()]
            defaults = main.system_dirs if main.info.abi == obj.info.abi else ()
            defaults = defaults or default_dirs(obj.info.abi)
            dirs += [SearchDir(d, Step.DEFAULT) for d in defaults]
        seen: set[str] = set()
        unique: list[SearchDir] = []
        for d in dirs:
            if d.path not in seen:
                seen.add(d.path)
                unique.append(d)
        return tuple(unique)

    def _path_list(self, entries: tuple[str, ...], obj: _Object, step: Step) -> list[SearchDir]:
        out: list[SearchDir] = []
        for entry in split_path_list(entries):
            directory = to_root_dir(self._expand(entry, obj), self.env.workdir)
            if directory is not None:
                out.append(SearchDir(directory, step))
        return out

    def _expand(self, text: str, obj: _Object) -> str:
        if "$" not in text:
            return text
        abi = obj.info.abi
        lib = self._lib_dirs.get(abi)
        if lib is None:
            lib = self._lib_dirs[abi] = abi_lib_dir(self.walker, abi)
        # $ORIGIN of a program is where the kernel found it (/proc/self/exe, all links
        # resolved); of a library, the directory of the name it was opened under.
        where = obj.real if obj.loader is None else obj.path
        origin = "/" + posixpath.dirname(where)
        return expand_tokens(text, origin, "/" + lib, platform_of(abi.machine))

    def conf_dirs(self) -> tuple[str, ...]:
        if self._conf is None:
            self._conf = read_ld_so_conf(self.root, self.walker)
        return self._conf

    def _search_dirs_for(self, name: str, abi: Abi, dirs: tuple[SearchDir, ...]) -> Found | None:
        for directory in dirs:
            base = f"{directory.path}/{name}" if directory.path else name
            # glibc-hwcaps subdirectories apply to search lists, not to a path in DT_NEEDED.
            variants = (
                ()
                if directory.step is Step.NEEDED_PATH
                else self._hwcaps_variants(directory.path, name, abi)
            )
            walk = self.walker.walk(base)
            if walk.kind in (Kind.FILE, Kind.HARDLINK):
                real = self._file_of(walk)
                info = self.elf_info(real)
                if info is None:
                    self.warnings.append(f"/{base} is not an ELF file: skipped")
                elif info.abi == abi:
                    return Found(base, walk, real, info, directory.step, variants)
                # Another class or machine: ld.so skips it and keeps searching.
            if variants:
                first = self.walker.walk(variants[0])
                real = self._file_of(first)
                info = self.elf_info(real)
                if info is not None:
                    return Found(variants[0], first, real, info, directory.step, variants[1:])
        return None

    def _hwcaps_variants(self, directory: str, name: str, abi: Abi) -> tuple[str, ...]:
        """Builds of `name` in `directory`/glibc-hwcaps/*: the CPU picks one at run time."""
        hwcaps = f"{directory}/glibc-hwcaps" if directory else "glibc-hwcaps"
        walk = self.walker.walk(hwcaps)
        if walk.kind is not Kind.DIR:
            return ()
        found: list[str] = []
        for sub in self.root.listdir(walk.path):
            candidate = f"{hwcaps}/{sub}/{name}"
            cwalk = self.walker.walk(candidate)
            if cwalk.kind in (Kind.FILE, Kind.HARDLINK):
                info = self.elf_info(self._file_of(cwalk))
                if info is not None and info.abi == abi:
                    found.append(candidate)
        # ld.so tries the highest level first; listdir order is bytewise, levels ascend.
        return tuple(reversed(found))

    def _file_of(self, walk: Walk) -> str:
        if walk.kind is Kind.HARDLINK:
            return self.walker.walk(self.root.hardlink_target(walk.path)).path
        return walk.path


def _chain(obj: _Object) -> tuple[str, ...]:
    chain: list[str] = []
    current: _Object | None = obj
    while current is not None:
        chain.append(current.path)
        current = current.loader
    return tuple(reversed(chain))


def _env_program(argument: str) -> str:
    """The program `#!/usr/bin/env ARGS` runs: the first word that is no option or VAR=x."""
    words = argument.split()
    skip_next = False
    for word in words:
        if skip_next:
            skip_next = False
            continue
        if word in ("-u", "--unset", "-C", "--chdir"):
            skip_next = True
            continue
        if word.startswith("-S") and len(word) > 2:
            word = word[2:]
        elif word.startswith("-") or "=" in word:
            continue
        return word
    return ""
