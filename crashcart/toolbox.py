"""The toolbox: a directory tree of tools that run from crashcart's mount point in any target.

`build_toolbox` builds it with smith from a recipe (recipes/crashcart-toolbox/smith.yaml:
packages, and the tools named in `paths` so that their ELF closures come along), flattens
the image, and relocates it to MOUNT_POINT: every dynamically linked executable gets the
toolbox's own ld.so as its interpreter and the toolbox's library directories as its
DT_RPATH, so it never loads the target's libc or loader, whatever (or nothing) the target
has. `bin/` then holds a link to every program and busybox applet: attach puts it first on
PATH.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from crashcart.prefix import DEFAULT_TOOLBOX as _DEFAULT_TOOLBOX
from crashcart.prefix import MANIFEST, MOUNT_POINT
from smith.errors import CrashcartError, SmithError

DEFAULT_TOOLBOX = Path(_DEFAULT_TOOLBOX)
DEFAULT_RECIPE = (
    Path(__file__).resolve().parent.parent / "recipes" / "crashcart-toolbox" / "smith.yaml"
)
# The toolbox extension (`toolbox build --extra-repo URL`): what incident work reaches for
# beyond the default recipe. A repository of its own provides the package (the default
# recipe's universe is frozen for its golden digests); its programs are added to `paths`.
EXTRA_PACKAGE = "crashcart-toolbox-extra"
EXTRA_PATHS = (
    "/usr/sbin/tcpdump",
    "/usr/bin/ltrace",
    "/usr/bin/bash",
    "/usr/bin/openssl",
    "/usr/bin/readelf",
    "/usr/bin/objdump",
    "/usr/bin/drill",
    "/usr/bin/jq",
)
PROGRAM_DIRS = ("bin", "usr/bin", "usr/sbin", "sbin")  # the first of a name wins
BUSYBOX = "usr/bin/busybox"


def _run(*args: str) -> str:
    try:
        proc = subprocess.run(args, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise CrashcartError(f"{args[0]} is not installed (scripts/setup.sh installs it)") from None
    if proc.returncode != 0:
        raise CrashcartError(f"{' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


# -- smith's part ------------------------------------------------------------------------------


def build_image_tree(recipe_path: Path, dest: Path, work: Path, cache_dir: str | None) -> None:
    """`smith build` the recipe, then write the image's flattened filesystem to dest."""
    from crashcart.image import materialize
    from smith.build import BuildOptions, build
    from smith.oci.reading import open_image
    from smith.oci.unpack import apply_layers

    image = work / "image.oci"
    try:
        build(str(recipe_path), BuildOptions(output=str(image), fmt="oci", cache_dir=cache_dir))
        with open_image(str(image)) as loaded:
            tree, _ = apply_layers(loaded, str(work / "store"))
    except SmithError as err:
        raise CrashcartError(
            f"smith cannot build the toolbox recipe {recipe_path}: {err}",
            hint="the example recipes' repository is out/universe: scripts/demo.sh builds it",
        ) from None
    dest.mkdir()
    materialize(tree, str(dest))


# -- relocation --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Relocation:
    """What one executable becomes: its interpreter and search path under the prefix."""

    path: str  # relative to the toolbox root
    interpreter: str
    rpath: tuple[str, ...]


def find_elf_files(root: Path) -> dict[str, tuple[str, str, bool]]:
    """{relative path: (PT_INTERP, DT_SONAME, has RPATH/RUNPATH)} of every ELF file."""
    from smith.resolve.elf import is_elf, parse_elf

    found = {}
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            path = os.path.join(dirpath, name)
            if os.path.islink(path):
                continue
            with open(path, "rb") as f:
                if not is_elf(f.read(4)):
                    continue
                f.seek(0)
                info = parse_elf(f, path)
            rel = os.path.relpath(path, root)
            found[rel] = (info.interpreter, info.soname, bool(info.rpath or info.runpath))
    return found


def inside(root: Path, path: str) -> str:
    """The real location of a root-relative path, relative to root (symlinks followed)."""
    real = os.path.realpath(root / path)
    if os.path.commonpath([real, str(root)]) != str(root):
        raise CrashcartError(f"/{path} in the toolbox leads outside it, to {real}")
    return os.path.relpath(real, root)


def plan_relocations(root: Path, executables: list[str], prefix: str) -> list[Relocation]:
    """Each executable's interpreter and library directories, as its own ld.so would find
    them inside the tree (smith's closure), moved under prefix."""
    from smith.resolve.dependencies import Step, compute_closure

    root = root.resolve()
    try:
        closure = compute_closure(str(root), executables)
    except SmithError as err:
        raise CrashcartError(f"the toolbox's ELF closure is incomplete: {err}") from None
    plans = []
    for exe in executables:
        interpreter = ""
        dirs: list[str] = []
        for loaded in closure.programs.get(exe, ()):
            if loaded.reason.step is Step.INTERPRETER:
                interpreter = inside(root, loaded.path)
            elif loaded.reason.step not in (Step.START, Step.HWCAPS):
                # The directory the loader found the name in (its links resolved), not the
                # one the file's last symlink leads to: libcurl.so.4 -> ../../usr/lib/...
                # lives where the soname link is, and RPATH is searched for the soname.
                directory = inside(root, os.path.dirname(loaded.path))
                if directory not in dirs:
                    dirs.append(directory)
        if not interpreter:
            raise CrashcartError(f"/{exe} names an interpreter the toolbox does not have")
        if not dirs:
            dirs.append(os.path.dirname(interpreter))
        plans.append(
            Relocation(exe, f"{prefix}/{interpreter}", tuple(f"{prefix}/{d}" for d in dirs))
        )
    return plans


def relocate_tree(root: Path, prefix: str) -> int:
    """Rewrite every dynamic executable under root to load only from root mounted at prefix;
    the number of files rewritten."""
    elves = find_elf_files(root)
    # An executable has a PT_INTERP and no soname (libc.so.6 has a PT_INTERP too).
    executables = sorted(p for p, (interp, soname, _) in elves.items() if interp and not soname)
    plans = plan_relocations(root, executables, prefix)
    for plan in plans:
        # DT_RPATH (not RUNPATH) on the executable applies to every library it loads, so
        # the target's own /lib and ld.so.cache are never consulted first.
        _run(
            "patchelf",
            "--set-interpreter",
            plan.interpreter,
            "--force-rpath",
            "--set-rpath",
            ":".join(plan.rpath),
            str(root / plan.path),
        )
    library_dirs = sorted({d for plan in plans for d in plan.rpath})
    libraries = [p for p, (_, soname, has_path) in elves.items() if soname and has_path]
    for lib in sorted(libraries):
        # A library's own RUNPATH hides the executable's RPATH from what it loads.
        _run("patchelf", "--set-rpath", ":".join(library_dirs), str(root / lib))
    return len(plans) + len(libraries)


# -- bin/ --------------------------------------------------------------------------------------


def link_programs(root: Path, prefix: str) -> list[str]:
    """bin/NAME -> every program of the tree and every busybox applet no program shadows;
    the names busybox's own sh would run as applets instead of the real programs."""
    bin_dir = root / "bin"
    if bin_dir.is_symlink():
        bin_dir.unlink()  # a merged-/usr `bin -> usr/bin`: PATH needs a directory of links
    bin_dir.mkdir(exist_ok=True)
    programs: dict[str, str] = {}  # name -> where bin/name leads ("" when it is there)
    for directory in PROGRAM_DIRS:
        full = root / directory
        if full.is_symlink() or not full.is_dir():
            continue
        for name in sorted(os.listdir(full)):
            program = full / name
            if program.is_file() and os.access(program, os.X_OK):
                programs.setdefault(name, "" if directory == "bin" else f"../{directory}/{name}")
    for name, link in programs.items():
        if link:
            (bin_dir / name).symlink_to(link)
    clashes = []
    if (root / BUSYBOX).is_file():
        busybox = os.path.realpath(root / BUSYBOX)
        # A static busybox (as here) runs on the build host as it will in any target.
        for applet in _run(busybox, "--list").split():
            if applet not in programs:
                (bin_dir / applet).symlink_to("busybox")
            elif os.path.realpath(bin_dir / applet) != busybox:
                clashes.append(applet)
    profile = root / "etc" / "profile"
    profile.parent.mkdir(parents=True, exist_ok=True)
    profile.write_text(
        "# Read by the toolbox's interactive sh ($ENV): busybox's sh would run its own\n"
        "# applets of these names instead of the real tools on PATH.\n"
        + "".join(f"alias {name}={prefix}/bin/{name}\n" for name in sorted(clashes))
    )
    return sorted(programs)


def drop_empty_runtime_dirs(root: Path) -> None:
    """The image's /dev, /proc, /run ... are a container's mount points, not tools."""
    from smith.conventions import RUNTIME_DIRS

    for name in RUNTIME_DIRS:
        path = root / name
        if path.is_dir() and not path.is_symlink() and not any(path.iterdir()):
            path.rmdir()


def tree_size(root: Path) -> int:
    total = 0
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                total += os.path.getsize(path)
    return total


def tree_digest(root: Path) -> str:
    """sha256 of the toolbox tree (paths, kinds, modes, contents, link targets), the marker
    left out: what the marker records, for an engineer to check a toolbox by."""
    import hashlib

    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            if rel == MANIFEST:
                continue
            st = os.lstat(path)
            if os.path.islink(path):
                what = "l " + os.readlink(path)
            elif os.path.isdir(path):
                what = "d"
            else:
                with open(path, "rb") as f:
                    what = "f " + hashlib.file_digest(f, "sha256").hexdigest()
            digest.update(f"{rel}\0{st.st_mode & 0o7777:o}\0{what}\n".encode())
    return f"sha256:{digest.hexdigest()}"


def finish_toolbox(tree: Path, source: str) -> int:
    """What makes a tree of programs a toolbox, for a recipe's build and for an image given
    to attach alike: relocated to MOUNT_POINT, bin/ of links, and the marker (with the
    tree's digest) that attach recognises it by; the tree's size."""
    drop_empty_runtime_dirs(tree)
    relocate_tree(tree, MOUNT_POINT)
    programs = link_programs(tree, MOUNT_POINT)
    size = tree_size(tree)
    manifest = {
        "digest": tree_digest(tree),
        "prefix": MOUNT_POINT,
        "programs": programs,
        "recipe": source,
        "size": size,
    }
    (tree / MANIFEST).write_text(json.dumps(manifest, sort_keys=True, indent=1) + "\n")
    return size


def with_extension(recipe_path: Path, repo: str, work: Path) -> Path:
    """The recipe plus the toolbox extension from repo, written into work (its repositories'
    relative paths made absolute, as they were relative to the recipe's directory)."""
    import yaml

    recipe = yaml.safe_load(recipe_path.read_text())
    repos = []
    for entry in recipe.get("repos", []):
        url = entry["baseurl"]
        if "://" not in url and not os.path.isabs(url):
            url = str((recipe_path.parent / url).resolve())
        repos.append({**entry, "baseurl": url})
    repos.append({"name": "crashcart-extra", "baseurl": repo})
    recipe["repos"] = repos
    recipe["packages"] = [*recipe.get("packages", []), EXTRA_PACKAGE]
    recipe["paths"] = [*recipe.get("paths", []), *EXTRA_PATHS]
    derived = work / "smith.yaml"
    derived.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return derived


def build_toolbox(
    recipe_path: Path, dest: Path, *, cache_dir: str | None = None, extra_repo: str | None = None
) -> int:
    """Build the toolbox of a smith recipe (and the extension from extra_repo) into dest,
    replaced atomically; its size."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        tree = work / "tree"
        if extra_repo:
            recipe_path = with_extension(recipe_path, extra_repo, work)
        build_image_tree(recipe_path, tree, work, cache_dir)
        size = finish_toolbox(tree, str(recipe_path))
        tree.chmod(0o755)
        # Swap directories so that an attach never sees half a toolbox; mounts of the old
        # one keep their files until they are unmounted.
        if dest.exists():
            dest.rename(work / "old")
        tree.rename(dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return size
