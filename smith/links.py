"""The one symlink resolver: how a path inside a root leads to what it names.

Three readers need it (the FileTree, the closure's view of a root, the layer applier) and
used to carry three loops that had to agree; they now differ only in what they ask of the
root (`kind`, `readlink`), what they call an error, and whether a link may be followed at
all (`check`: the applier refuses a relative link that climbs out of the root).

Semantics are the kernel's inside a chroot: absolute targets are re-rooted, `..` stops at
the root, at most MAX_SYMLINK_HOPS links per resolution (ELOOP beyond that), and a
component that does not exist (or is no directory) is kept as written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from smith.errors import SmithError
from smith.paths import resolve_link_target

# Linux follows at most 40 symlinks while resolving one path (ELOOP beyond that).
MAX_SYMLINK_HOPS = 40


@dataclass(frozen=True)
class Walk:
    """Where a path leads: the final path and every symlink passed on the way."""

    path: str
    links: tuple[str, ...]


class LinkResolver:
    """Resolves canonical root-relative paths, memoising each directory prefix.

    `is_link(path)` says whether `path` itself (its parents already resolved) is a
    symlink; `readlink(path)` gives its target as written. `loop(path)` makes the error
    for too many levels of links. `check(link, target)`, if given, may raise to refuse
    following a link. The memo assumes the root does not change; `forget()` drops it when
    a symlink is added or removed.
    """

    def __init__(
        self,
        is_link: Callable[[str], bool],
        readlink: Callable[[str], str],
        loop: Callable[[str], SmithError],
        check: Callable[[str, str], None] | None = None,
    ) -> None:
        self._is_link, self._readlink, self._loop, self._check = is_link, readlink, loop, check
        self._dirs: dict[str, tuple[str, tuple[str, ...]]] = {"": ("", ())}
        self._busy: set[str] = set()  # directories being resolved: seeing one again is a loop

    def forget(self) -> None:
        if len(self._dirs) > 1:
            self._dirs = {"": ("", ())}

    def walk(self, path: str, *, follow_last: bool = True) -> Walk:
        """Follow `path` (canonical) to what it names; the last component too unless
        `follow_last` is false."""
        parent, _, name = path.rpartition("/")
        base, links = self.walk_dir(parent, path, 0) if parent else ("", ())
        # Through no link, `path` itself: one string per path for a million-entry tree.
        current = path if base == parent else f"{base}/{name}" if base else name
        if not follow_last or not path:
            return Walk(current, links)
        seen = list(links)
        while self._is_link(current):
            if len(seen) >= MAX_SYMLINK_HOPS:
                raise self._loop(path)
            target = self._follow(current)
            seen.append(current)
            if not target:
                return Walk("", tuple(seen))
            tparent, _, tname = target.rpartition("/")
            tbase, more = self.walk_dir(tparent, path, len(seen)) if tparent else ("", ())
            seen.extend(more)
            current = f"{tbase}/{tname}" if tbase else tname
        return Walk(current, tuple(seen))

    def walk_dir(self, directory: str, origin: str, hops: int) -> tuple[str, tuple[str, ...]]:
        """The physical path of a directory and the links passed; memoised per prefix."""
        known = self._dirs.get(directory)
        if known is not None:
            return known
        if directory in self._busy or hops > MAX_SYMLINK_HOPS:
            raise self._loop(origin)
        self._busy.add(directory)
        try:
            result = self._resolve_dir(directory, origin, hops)
        finally:
            self._busy.discard(directory)
        self._dirs[directory] = result
        return result

    def _follow(self, link: str) -> str:
        target = self._readlink(link)
        if self._check is not None:
            self._check(link, target)
        return resolve_link_target(link, target)

    def _resolve_dir(self, directory: str, origin: str, hops: int) -> tuple[str, tuple[str, ...]]:
        parent, _, name = directory.rpartition("/")
        base, links = self.walk_dir(parent, origin, hops) if parent else ("", ())
        current = directory if base == parent else f"{base}/{name}" if base else name
        seen = list(links)
        while self._is_link(current):
            if hops + len(seen) >= MAX_SYMLINK_HOPS:
                raise self._loop(origin)
            target = self._follow(current)
            seen.append(current)
            if not target:
                return ("", tuple(seen))
            tparent, _, tname = target.rpartition("/")
            tbase, more = self.walk_dir(tparent, origin, hops + len(seen)) if tparent else ("", ())
            seen.extend(more)
            current = f"{tbase}/{tname}" if tbase else tname
        return (current, tuple(seen))
