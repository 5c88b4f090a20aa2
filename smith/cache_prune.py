"""`smith cache prune`: evict build-cache entries and cached layers, least recently used first.

What can go: build entries (CACHE/builds/<key>.json, with the output files and listing they
name in CACHE/builds/blobs, and the family records that lead to them) and cached layers
(CACHE/layers/<key>.json and .blob). The download cache (packages, repository metadata and
the extracted files in CACHE/content) is not touched: it is what a cold build needs again.
An entry's or a layer's age is its record's mtime, which a build that uses it moves to now.

`--older-than DAYS` removes what no build used for that long; `--max-size SIZE` then removes
the least recently used until what can go takes at most SIZE. A blob goes with the last
entry that names it.

Safe beside running builds: every read or write of these caches holds a shared lock on
CACHE/.lock (cache_lock), prune holds it exclusively, so it waits for what is in progress
and nothing starts while it runs. A record goes before what it vouches for (an entry before
its blobs, a layer's record before its blob): a reader finds a whole entry or none.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

from smith.atomic import remove_path
from smith.errors import SmithError, UsageError

LOCK_NAME = ".lock"
SIZE = re.compile(r"(\d+)\s*([kmgt]?)(i?b)?", re.IGNORECASE)
UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
DAY = 86400


@contextlib.contextmanager
def cache_lock(cache_dir: str | os.PathLike[str], *, exclusive: bool = False) -> Iterator[None]:
    """Hold CACHE/.lock: shared while a cache is read or written, exclusive to prune. A
    cache where the lock cannot be made (read-only) is read without it: nothing of ours
    can prune it."""
    try:
        os.makedirs(cache_dir, exist_ok=True)
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC
        fd = os.open(os.path.join(cache_dir, LOCK_NAME), flags, 0o644)
    except OSError as err:
        if exclusive:
            raise SmithError(
                f"cannot lock the cache {os.fspath(cache_dir)!r}: {err.strerror}"
            ) from None
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # releases the lock


def parse_size(text: str) -> int:
    """`500M`, `2G`, `1048576`: bytes (K, M, G, T are powers of 1024)."""
    match = SIZE.fullmatch(text.strip())
    if match is None:
        raise UsageError(f"--max-size: {text!r} is not a size (like 500M or 2G)")
    return int(match.group(1)) * UNITS[match.group(2).lower()]


def parse_days(text: str) -> float:
    try:
        days = float(text)
    except ValueError:
        days = -1.0
    if not days >= 0 or days == float("inf"):
        raise UsageError(f"--older-than: {text!r} is not a number of days")
    return days


@dataclass(frozen=True)
class Unit:
    """What goes together: a record, and the files only it needs (blobs it shares with
    another entry are counted in neither)."""

    record: str
    used: float  # the record's mtime
    files: tuple[str, ...]  # the record's own files (a layer's blob)
    blobs: frozenset[str]  # build-cache blob paths it names


@dataclass(frozen=True)
class PruneReport:
    entries: int
    layers: int
    freed: int  # bytes
    left: int  # bytes of what can go, after

    def to_json(self) -> dict[str, int]:
        return {
            "entries_removed": self.entries,
            "layers_removed": self.layers,
            "bytes_freed": self.freed,
            "bytes_left": self.left,
        }


def prune(
    cache_dir: str, *, max_size: int | None, older_than: float | None, now: float
) -> PruneReport:
    """Remove what `max_size` and `older_than` (days) say, under the exclusive lock."""
    if not os.path.isdir(cache_dir):
        return PruneReport(0, 0, 0, 0)  # nothing to prune, and no cache made for it
    with cache_lock(cache_dir, exclusive=True):
        builds, layers = _build_units(cache_dir), _layer_units(cache_dir)
        units = sorted([*builds, *layers], key=lambda u: (u.used, u.record))
        refs: dict[str, int] = {}
        for unit in units:
            for blob in unit.blobs:
                refs[blob] = refs.get(blob, 0) + 1
        sizes = {p: _size(p) for u in units for p in (u.record, *u.files, *u.blobs)}
        total = sum(sizes.values())
        freed = removed_entries = removed_layers = 0
        for unit in units:
            old = older_than is not None and now - unit.used > older_than * DAY
            if not old and (max_size is None or total - freed <= max_size):
                continue
            gone = [unit.record, *unit.files]
            for blob in unit.blobs:
                refs[blob] -= 1
                if refs[blob] == 0:
                    gone.append(blob)
            for path in gone:  # the record first: it vouches for the rest
                remove_path(path)
                freed += sizes.get(path, 0)
            if unit.files:
                removed_layers += 1
            else:
                removed_entries += 1
        _drop_families(cache_dir)
    return PruneReport(removed_entries, removed_layers, freed, total - freed)


def _size(path: str) -> int:
    try:
        return os.lstat(path).st_size
    except OSError:
        return 0


def _records(directory: str) -> Iterator[tuple[str, str, float]]:
    """(key, record path, mtime) of the `<key>.json` records directly in `directory`."""
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return
    for name in names:
        key, dot, ext = name.partition(".")
        if ext != "json" or not dot or len(key) != 64:
            continue
        path = os.path.join(directory, name)
        with contextlib.suppress(OSError):
            yield key, path, os.lstat(path).st_mtime


def _build_units(cache_dir: str) -> list[Unit]:
    from smith.buildcache import BuildCache, DamagedEntry, checked_digest

    cache = BuildCache(cache_dir)
    units = []
    for _key, path, used in _records(cache.root):
        digests: set[str] = set()
        with contextlib.suppress(OSError, ValueError, TypeError, KeyError, DamagedEntry):
            with open(path, "rb") as f:
                doc = json.loads(f.read())
            digests |= {str(row[3]) for row in doc["files"] if row[1] == "file"}
            if isinstance(doc.get("listing"), str):
                digests.add(doc["listing"])
            digests = {checked_digest(d) for d in digests}
        # A damaged entry names no blob: it goes, and its blobs with the last that names them.
        blobs = frozenset(str(cache.store.path_for(d)) for d in digests)
        units.append(Unit(path, used, (), blobs))
    return units


def _layer_units(cache_dir: str) -> list[Unit]:
    from smith.oci.layer_cache import LayerCache

    root = LayerCache(cache_dir).root
    return [
        Unit(path, used, (os.path.join(root, key + ".blob"),), frozenset())
        for key, path, used in _records(root)
    ]


def _drop_families(cache_dir: str) -> None:
    """Family records whose build entry is gone."""
    from smith.buildcache import BuildCache

    cache = BuildCache(cache_dir)
    families = os.path.dirname(cache.family_path("x"))
    for _family, path, _used in _records(families):
        try:
            with open(path, "rb") as f:
                key = json.loads(f.read(4096))["key"]
        except (OSError, ValueError, KeyError, TypeError):
            key = ""
        if not isinstance(key, str) or not os.path.exists(cache.entry_path(key)):
            remove_path(path)
