"""Path patterns of recipes (`paths`, `excludes`) and of `smith minimize --exclude`.

One meaning everywhere, the shell's: `*`, `?` and `[...]` match within one path component,
`**` matches any number of components. An exclude that matches a directory leaves out
everything below it too. Paths and patterns are canonical (smith.paths.normalize_path).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass

from smith.paths import normalize_path, parent_paths


def has_magic(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


def glob_match(path: str, pattern: str) -> bool:
    return _match_parts(path.split("/"), pattern.split("/"))


def _match_parts(parts: list[str], pattern: list[str]) -> bool:
    if not pattern:
        return not parts
    if pattern[0] == "**":
        return any(_match_parts(parts[i:], pattern[1:]) for i in range(len(parts) + 1))
    return (
        bool(parts)
        and fnmatch.fnmatchcase(parts[0], pattern[0])
        and _match_parts(parts[1:], pattern[1:])
    )


@dataclass(frozen=True)
class Excludes:
    """Exclude patterns, each kept as written (for messages) and in canonical form."""

    patterns: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, patterns: Iterable[str], *, what: str = "excludes entry") -> Excludes:
        return cls(tuple((p, normalize_path(p, what=what)) for p in patterns))

    def matching(self, path: str) -> str:
        """The first pattern (as written) that leaves `path` out, "" if none does."""
        candidates = [*parent_paths(path), path]
        for written, pattern in self.patterns:
            if any(glob_match(candidate, pattern) for candidate in candidates):
                return written
        return ""
