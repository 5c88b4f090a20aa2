"""Finding the program a process runs, as execvp does: one rule for `smith build` (in the
packages and rootfs/), `smith minimize` (in the image) and the closure (a script's `#!`
interpreter run through env)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from smith.resolve.loader import to_root_dir
from smith.tree import FileTree, Kind

# What a runtime and execvp use when the environment has no PATH (the OCI runtimes' and
# Docker's default): the one default PATH of smith.
DEFAULT_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
DEFAULT_PATH_VALUE = ":".join(DEFAULT_PATH)


def env_value(env: Sequence[str], key: str) -> str | None:
    """The value of `key` in an OCI `Env` list ("KEY=value"); the last one wins, as in a
    process environment built from it."""
    value = None
    for item in env:
        name, sep, rest = item.partition("=")
        if sep and name == key:
            value = rest
    return value


def search_path(env: Sequence[str]) -> tuple[str, ...]:
    """The PATH directories of an `Env` list, else the default ones."""
    value = env_value(env, "PATH")
    return tuple(value.split(":")) if value is not None else DEFAULT_PATH


def program_candidates(name: str, path: Sequence[str], workdir: str) -> list[str]:
    """The canonical root paths execvp tries for `name`, in order: a name with a slash is
    taken from the working directory; any other name from each PATH directory in turn."""
    if "/" in name:
        found = to_root_dir(name, workdir or "/")
        return [found] if found is not None else []
    out = []
    for directory in path:
        base = to_root_dir(directory, workdir or "/")
        if base is not None:
            out.append(f"{base}/{name}" if base else name)
    return out


def find_program(
    name: str, path: Sequence[str], workdir: str, runnable: Callable[[str], bool]
) -> str | None:
    """The first candidate for `name` that is `runnable` in the root, or None."""
    return next((c for c in program_candidates(name, path, workdir) if runnable(c)), None)


def shown_candidates(name: str, path: Sequence[str], workdir: str) -> str:
    """Where `find_program` looked, for a message (a long PATH is counted, not listed)."""
    candidates = ["/" + c for c in program_candidates(name, path, workdir)]
    return ", ".join(candidates) if len(candidates) <= 8 else f"{len(candidates)} PATH directories"


def is_executable(tree: FileTree, path: str) -> bool:
    """Whether `path` (through symlinks) is a regular file with an executable bit."""
    entry = tree.lookup(path)
    return entry is not None and entry.kind is Kind.FILE and bool(entry.mode & 0o111)
