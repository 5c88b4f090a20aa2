"""The probe's profile: which files of an image a run needed, as an input to build/minimize.

A text file, one JSON value per line so that any path (any bytes, tabs, newlines) is
written unambiguously and a diff between two profiles reads line by line:

    {"command":["nginx","-g","daemon off;"],"format":"smith.profile","version":1}
    ["/etc/nginx/nginx.conf","open","nginx"]
    ["/usr/sbin/nginx","exec","runc:[2:INIT]"]

Paths are sorted bytewise and appear once, with one event and the name of one process that
needed the file. When several processes, or both events, touched a file, the one written is
the first in a fixed order (exec before open, then process names bytewise), not the first
in time: events of concurrent processes arrive in any order, and the same run must give
the same bytes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from smith.atomic import atomic_path
from smith.errors import SmithError
from smith.paths import normalize_path

FORMAT = "smith.profile"
VERSION = 1
EVENTS = ("exec", "open")  # their order is the tie-break order
MAX_PROFILE_BYTES = 64 << 20  # a profile lists files of one image: megabytes at most
DEFAULT_NAME = "smith.profile"


class HasProfile(Protocol):
    """A recipe, as far as its `profile:` key goes (smith.recipe imports the resolver)."""

    @property
    def profile(self) -> str | None: ...


class ProfileError(SmithError):
    """A profile file cannot be read."""


@dataclass(frozen=True)
class ProfileEntry:
    path: str  # absolute, as the container saw it
    event: str  # "exec" or "open"
    process: str  # the process name (comm) that opened or executed it

    def sort_key(self) -> tuple[bytes, int, bytes]:
        return (
            _bytes(self.path),
            EVENTS.index(self.event),
            _bytes(self.process),
        )


@dataclass(frozen=True)
class Profile:
    command: tuple[str, ...]
    entries: tuple[ProfileEntry, ...]

    @classmethod
    def of(cls, command: Iterable[str], accesses: Iterable[ProfileEntry]) -> Profile:
        """One entry per path, the first in the fixed order, sorted by path."""
        best: dict[str, ProfileEntry] = {}
        for entry in accesses:
            known = best.get(entry.path)
            if known is None or entry.sort_key() < known.sort_key():
                best[entry.path] = entry
        entries = sorted(best.values(), key=ProfileEntry.sort_key)
        return cls(tuple(command), tuple(entries))

    def paths(self) -> list[str]:
        return [entry.path for entry in self.entries]


def _bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _json(value: object) -> str:
    # ensure_ascii keeps undecodable names (surrogate escapes) writable, and exact.
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def dump_profile(profile: Profile) -> bytes:
    lines = [_json({"command": list(profile.command), "format": FORMAT, "version": VERSION})]
    lines += [_json([e.path, e.event, e.process]) for e in profile.entries]
    return ("\n".join(lines) + "\n").encode("ascii")


def write_profile(profile: Profile, dest: str) -> None:
    with atomic_path(dest) as tmp, open(tmp, "wb") as f:
        f.write(dump_profile(profile))


def read_profile(path: str) -> Profile:
    """Parse a profile; any defect is a ProfileError naming the file and the line."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_PROFILE_BYTES + 1)
    except OSError as err:
        raise ProfileError(f"cannot read the profile {path}: {err.strerror or err}") from None
    if len(data) > MAX_PROFILE_BYTES:
        raise ProfileError(f"the profile {path} is larger than {MAX_PROFILE_BYTES} bytes")
    lines = data.decode("ascii", "replace").splitlines()
    try:
        header = json.loads(lines[0]) if lines else None
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ProfileError(f"{path} is not a smith profile (its first line is no header)")
    if header.get("version") != VERSION:
        raise ProfileError(f"{path}: profile version {header.get('version')!r} is not {VERSION}")
    command = header.get("command", [])
    if not isinstance(command, list) or not all(isinstance(a, str) for a in command):
        raise ProfileError(f"{path}: line 1: `command` is not a list of strings")
    entries = [_entry(path, number, line) for number, line in enumerate(lines[1:], start=2)]
    return Profile.of(command, entries)


def _entry(path: str, number: int, line: str) -> ProfileEntry:
    try:
        value = json.loads(line)
    except ValueError:
        value = None
    if (
        not isinstance(value, list)
        or len(value) != 3
        or not all(isinstance(v, str) for v in value)
        or value[1] not in EVENTS
        or not value[0].startswith("/")
    ):
        raise ProfileError(f'{path}: line {number} is not ["/path", "exec|open", "process"]')
    try:
        normalize_path(value[0], what="profile path")
    except SmithError as err:
        raise ProfileError(f"{path}: line {number}: {err}") from None
    return ProfileEntry(value[0], value[1], value[2])


def profile_beside(recipe_or_dir: str) -> str:
    """Where a profile goes by default: `smith.profile` beside the recipe."""
    base = recipe_or_dir if os.path.isdir(recipe_or_dir) else os.path.dirname(recipe_or_dir)
    return os.path.join(base or ".", DEFAULT_NAME)


def recipe_profile(recipe: HasProfile, recipe_path: str) -> tuple[ProfileEntry, ...]:
    """The entries of the profile a recipe's `profile:` names (relative to the recipe)."""
    if not recipe.profile:
        return ()
    base = os.path.dirname(os.path.abspath(recipe_path))
    return read_profile(os.path.join(base, recipe.profile)).entries
