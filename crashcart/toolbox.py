"""The toolbox: a directory tree of tools that run from crashcart's mount point in any target.

Every dynamic tool's interpreter and RPATH point into MOUNT_POINT, so a tool finds the
toolbox's own ld.so and libraries there whatever libc (or none) the target has.

`build_toolbox` reads recipes/crashcart-toolbox.yaml and hands it to an *assembler*. Today the
only assembler is `assemble_from_host`, which copies host Debian binaries and their ELF
closure and rewrites them with patchelf. When `smith build` exists (issue 5), an assembler
that runs it on the same recipe replaces this one: that is the seam.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from crashcart.prefix import DEFAULT_TOOLBOX as _DEFAULT_TOOLBOX
from crashcart.prefix import MOUNT_POINT
from smith.errors import CrashcartError, RecipeError, SmithError

DEFAULT_TOOLBOX = Path(_DEFAULT_TOOLBOX)
DEFAULT_RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "crashcart-toolbox.yaml"
MANIFEST = "crashcart-toolbox.json"
DEB_CACHE = Path("/var/cache/crashcart/debs")


@dataclass(frozen=True)
class Tool:
    name: str
    path: str  # where the binary is on the host (or inside `package` when one is named)
    package: str = ""  # a Debian package to unpack instead of using the installed file
    applets: bool = False  # busybox: link every applet name to it


@dataclass(frozen=True)
class ExtraFile:
    source: str
    dest: str


@dataclass(frozen=True)
class ToolboxRecipe:
    prefix: str
    tools: tuple[Tool, ...]
    files: tuple[ExtraFile, ...]


def load_recipe(path: Path) -> ToolboxRecipe:
    import yaml  # only the build needs it; attach's start-up time is part of its benchmark

    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise RecipeError(f"cannot read toolbox recipe {path}: {err}") from None
    try:
        prefix = data["prefix"]
        tools = tuple(
            Tool(t["name"], t["path"], t.get("package", ""), bool(t.get("applets", False)))
            for t in data["tools"]
        )
        files = tuple(ExtraFile(f["source"], f["dest"]) for f in data.get("files", ()))
    except (KeyError, TypeError) as err:
        raise RecipeError(f"toolbox recipe {path} lacks {err}") from None
    if prefix != MOUNT_POINT:
        raise RecipeError(f"toolbox recipe {path}: .prefix {prefix!r} is not {MOUNT_POINT}")
    return ToolboxRecipe(prefix, tools, files)


def _run(*args: str) -> str:
    try:
        proc = subprocess.run(args, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise CrashcartError(f"{args[0]} is not installed (scripts/setup.sh installs it)") from None
    if proc.returncode != 0:
        raise CrashcartError(f"{' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def host_elf_closure(binary: Path) -> tuple[Path | None, tuple[Path, ...]]:
    """(interpreter, libraries) of a host binary as the host's ld.so would load them, or
    (None, ()) when it is static: smith's own closure, with the host's `/` as the root."""
    from smith.resolve.dependencies import Step, compute_closure

    start = str(binary.resolve()).lstrip("/")
    try:
        closure = compute_closure("/", [start])
    except SmithError as err:
        raise CrashcartError(f"cannot take {binary} into the toolbox: {err}") from None
    interpreter = None
    libraries = []
    for loaded in closure.programs.get(start, ()):
        if loaded.reason.step is Step.START:
            continue
        if loaded.reason.step is Step.INTERPRETER:
            interpreter = Path("/" + loaded.path)
        elif loaded.reason.step is not Step.HWCAPS:
            libraries.append(Path("/" + loaded.path))
    return interpreter, tuple(libraries)


def _unpack_package(package: str) -> Path:
    """A Debian package's files, unpacked under the cache (fetched with apt-get download)."""
    root = DEB_CACHE / f"{package}.root"
    if root.is_dir():
        return root
    DEB_CACHE.mkdir(parents=True, exist_ok=True)
    debs = sorted(DEB_CACHE.glob(f"{package}_*.deb"))
    if not debs:
        subprocess.run(
            ["apt-get", "download", package], cwd=DEB_CACHE, capture_output=True, check=False
        )
        debs = sorted(DEB_CACHE.glob(f"{package}_*.deb"))
    if not debs:
        raise CrashcartError(f"cannot fetch the Debian package {package} (apt-get download)")
    partial = Path(tempfile.mkdtemp(dir=DEB_CACHE))
    _run("dpkg-deb", "-x", str(debs[-1]), str(partial))
    partial.rename(root)
    return root


def assemble_from_host(recipe: ToolboxRecipe, dest: Path) -> None:
    """Copy each tool and its ELF closure into dest, rewritten to run from recipe.prefix."""
    bin_dir, lib_dir = dest / "bin", dest / "lib"
    bin_dir.mkdir(parents=True)
    lib_dir.mkdir()
    interpreter_name = ""
    copied_libs: set[str] = set()
    for tool in recipe.tools:
        source = Path(tool.path)
        if tool.package:
            source = _unpack_package(tool.package) / tool.path.lstrip("/")
        if not source.is_file():
            raise CrashcartError(f"the tool {tool.name} is not at {source}")
        binary = bin_dir / tool.name
        shutil.copyfile(source, binary)
        binary.chmod(0o755)
        interpreter, libraries = host_elf_closure(source)
        for lib in libraries:
            if lib.name not in copied_libs:
                shutil.copyfile(lib.resolve(), lib_dir / lib.name)
                (lib_dir / lib.name).chmod(0o755)
                copied_libs.add(lib.name)
        if interpreter is not None:
            interpreter_name = interpreter.name
            if interpreter.name not in copied_libs:
                shutil.copyfile(interpreter.resolve(), lib_dir / interpreter.name)
                (lib_dir / interpreter.name).chmod(0o755)
                copied_libs.add(interpreter.name)
            # DT_RPATH (not RUNPATH) on the executable applies to every library it loads, so
            # the target's own /lib and ld.so.cache are never consulted first.
            _run(
                "patchelf",
                "--set-interpreter",
                f"{recipe.prefix}/lib/{interpreter.name}",
                "--force-rpath",
                "--set-rpath",
                f"{recipe.prefix}/lib",
                str(binary),
            )
        if tool.applets:
            for applet in _run(str(source), "--list").split():
                link = bin_dir / applet
                if not link.exists() and not any(t.name == applet for t in recipe.tools):
                    link.symlink_to(tool.name)
    applet_clashes = []
    for tool in recipe.tools:
        for other in recipe.tools:
            if (
                other is not tool
                and other.applets
                and tool.name in _run(other.path, "--list").split()
            ):
                applet_clashes.append(tool.name)
    profile = dest / "etc" / "profile"
    profile.parent.mkdir(parents=True, exist_ok=True)
    profile.write_text(
        "# Read by the toolbox's interactive sh ($ENV): busybox's sh would run its own\n"
        "# applets of these names instead of the real tools on PATH.\n"
        + "".join(f"alias {name}={recipe.prefix}/bin/{name}\n" for name in applet_clashes)
    )
    for lib_name in sorted(copied_libs - {interpreter_name}):
        # A library with its own RUNPATH would search it before the executable's RPATH.
        if _run("patchelf", "--print-rpath", str(lib_dir / lib_name)).strip():
            _run("patchelf", "--set-rpath", f"{recipe.prefix}/lib", str(lib_dir / lib_name))
    for extra in recipe.files:
        copy_to = dest / extra.dest.lstrip("/")
        copy_to.parent.mkdir(parents=True, exist_ok=True)
        if Path(extra.source).is_dir():
            shutil.copytree(extra.source, copy_to, symlinks=True)
        elif Path(extra.source).exists():
            shutil.copyfile(extra.source, copy_to)


def tree_size(root: Path) -> int:
    total = 0
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                total += os.path.getsize(path)
    return total


Assembler = Callable[[ToolboxRecipe, Path], None]


def build_toolbox(recipe_path: Path, dest: Path, assembler: Assembler = assemble_from_host) -> int:
    """Build the toolbox described by a recipe into dest (replaced atomically); its size."""
    recipe = load_recipe(recipe_path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        tree = work / "tree"
        assembler(recipe, tree)
        size = tree_size(tree)
        manifest = {
            "prefix": recipe.prefix,
            "tools": sorted(t.name for t in recipe.tools),
            "size": size,
            "assembler": getattr(assembler, "__name__", "assembler"),
        }
        (tree / MANIFEST).write_text(json.dumps(manifest, sort_keys=True, indent=1) + "\n")
        tree.chmod(0o755)
        # Swap directories so that an attach never sees half a toolbox; mounts of the old
        # one keep their files until they are unmounted.
        if dest.exists():
            dest.rename(work / "old")
        tree.rename(dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return size
