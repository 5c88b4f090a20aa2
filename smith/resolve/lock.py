"""smith.lock: the exact packages a recipe resolved to, pinned by sha256.

With a lock, a build fetches exactly these files (by URL, checked against the sha256) and
never asks a repository what it serves today: same lock, same packages, byte for byte. The
lock also records what was asked for, so `--locked` can refuse a recipe that asks for more.

The file is JSON with sorted keys and one package per entry, sorted by name and arch, so
that two resolutions of the same inputs write the same bytes and diffs stay readable.

A recipe of several architectures pins each in the same file: the top-level keys are the
section of its first architecture (so a lock of one architecture is the one-section case,
byte for byte what it always was), and `arches` maps every other architecture to a section
of the same keys but `arch`. A lock made before an architecture was added to the recipe
still pins the ones it has; the missing one is named (`smith lock` adds it).
"""

from __future__ import annotations

import json
import os
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from smith.arch import check_arch
from smith.atomic import atomic_path
from smith.errors import PackageError, ResolveError
from smith.limits import json_document
from smith.resolve.fetch import Checksum, Fetcher, file_checksum
from smith.resolve.solver import ResolvedPackage

LOCK_NAME = "smith.lock"
LOCK_VERSION = 1


@dataclass(frozen=True)
class Lock:
    requests: tuple[str, ...]
    arch: str
    excludes: tuple[str, ...]
    weak: bool
    packages: tuple[ResolvedPackage, ...]


@dataclass(frozen=True)
class LockFile:
    """Every section of one smith.lock, one per architecture; the first is the top-level."""

    sections: tuple[Lock, ...]

    def section(self, arch: str) -> Lock | None:
        return next((s for s in self.sections if s.arch == arch), None)

    def with_section(self, lock: Lock) -> LockFile:
        """This file with `lock` in place of its architecture's section (or added last)."""
        if self.section(lock.arch) is None:
            return LockFile((*self.sections, lock))
        return LockFile(tuple(lock if s.arch == lock.arch else s for s in self.sections))


def lock_path_for(recipe: str | os.PathLike[str]) -> Path:
    """Where the lock of a recipe lives: next to it (the directory the recipe's relative
    paths are read from, so that the lock's relative URLs agree with them)."""
    return Path(os.path.abspath(recipe)).parent / LOCK_NAME


def old_arch_lock(lock_path: Path, arch: str) -> Path:
    """Where an older smith wrote one architecture's lock of a several-architecture recipe
    (smith.ARCH.lock); read only to say that `smith lock` now pins it in smith.lock."""
    return lock_path.with_name(LOCK_NAME.replace(".lock", f".{arch}.lock"))


def old_lock_hint(lock_path: Path, arch: str) -> str:
    """` (smith.ARCH.lock is an older smith's: it is not read)` when that file is there."""
    old = old_arch_lock(lock_path, arch)
    return f" ({old.name} is an older smith's: it is not read)" if old.exists() else ""


def missing_section(lock_path: Path, arch: str) -> str:
    """The one line that says which architecture a lock lacks, and how to add it."""
    hint = old_lock_hint(lock_path, arch)
    return f"{lock_path} pins no {arch} packages{hint}: run `smith lock --arch {arch}`"


def located_url(url: str, base: str | os.PathLike[str]) -> str:
    """A lock's URL as a path to read: relative ones (of packages the recipe named by a
    relative path) are relative to the lock's directory, so the lock moves with them."""
    if urllib.parse.urlsplit(url).scheme or os.path.isabs(url):
        return url
    return os.path.normpath(os.path.join(base, url))


def pin_sha256(
    packages: Sequence[ResolvedPackage], fetcher: Fetcher
) -> tuple[ResolvedPackage, ...]:
    """Packages whose repository checksum is not sha256 get one (by fetching them)."""
    out = []
    for pkg in packages:
        if pkg.checksum.algo != "sha256":
            path = fetcher.fetch(pkg.url, pkg.checksum)
            sha = Checksum("sha256", file_checksum(path, "sha256"))
            pkg = replace(pkg, checksum=sha)
        out.append(pkg)
    return tuple(out)


def lock_to_json(lock: Lock | LockFile) -> str:
    sections = lock.sections if isinstance(lock, LockFile) else (lock,)
    body: dict[str, Any] = {"version": LOCK_VERSION, **section_json(sections[0])}
    if len(sections) > 1:
        # Keyed by architecture: sorted keys put them in one order whatever the recipe's.
        body["arches"] = {
            s.arch: {k: v for k, v in section_json(s).items() if k != "arch"} for s in sections[1:]
        }
    return json.dumps(body, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def section_json(lock: Lock) -> dict[str, Any]:
    return {
        "arch": lock.arch,
        "requests": list(lock.requests),
        "excludes": sorted(lock.excludes),
        "weak": lock.weak,
        "packages": [
            {
                "name": p.name,
                "epoch": p.epoch,
                "version": p.version,
                "release": p.release,
                "arch": p.arch,
                "nevra": p.nevra,
                "repo": p.repo_id,
                "url": p.url,
                "sha256": p.checksum.hexdigest,
                "size": p.size,
            }
            for p in sorted(lock.packages, key=lambda p: (p.name, p.arch))
        ],
    }


def write_lock(path: str | os.PathLike[str], lock: Lock | LockFile) -> None:
    """Write atomically: a half-written lock must never be read as a lock."""
    for section in lock.sections if isinstance(lock, LockFile) else (lock,):
        for p in section.packages:
            if p.checksum.algo != "sha256":
                raise PackageError(f"{p.nevra}: a lock pins sha256, not {p.checksum.algo}")
    # A fresh temporary name (O_EXCL), removed on any error or Ctrl-C: a fixed one could be
    # a symlink planted beside the recipe, or another `smith lock`'s half-written file.
    with atomic_path(os.fspath(path)) as tmp:
        Path(tmp).write_text(lock_to_json(lock), encoding="utf-8")


def _field(entry: dict[str, Any], key: str, kind: type, where: str) -> Any:
    value = entry.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise PackageError(f"{where}.{key} is missing or not a {kind.__name__}")
    return value


def _strings(data: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    values = _field(data, key, list, where)
    for i, value in enumerate(values):
        if not isinstance(value, str):
            raise PackageError(f"{where}.{key}[{i}] is not a string: {value!r}")
    return tuple(values)


def read_lock(path: str | os.PathLike[str]) -> Lock:
    """The lock's top-level section (the only one of a one-architecture lock)."""
    return read_lock_file(path).sections[0]


def read_lock_file(path: str | os.PathLike[str]) -> LockFile:
    where = str(path)
    try:
        data = json_document(Path(path).read_text(encoding="utf-8"), where)
    except OSError as err:
        raise PackageError(f"cannot read lock {where}: {err.strerror}") from None
    except UnicodeDecodeError as err:
        raise PackageError(f"{where} is not UTF-8 (byte {err.start}): not a smith.lock") from None
    except json.JSONDecodeError as err:
        raise PackageError(f"{where} is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise PackageError(f"{where} is not a JSON object: not a smith.lock")
    if data.get("version") != LOCK_VERSION:
        raise PackageError(f"{where}: unsupported lock version {data.get('version')!r}")
    base = os.path.dirname(os.path.abspath(path))
    sections = [read_section(data, where, base)]
    more = data.get("arches", {})
    if not isinstance(more, dict):
        raise PackageError(f"{where}.arches is not an object")
    for arch, section in sorted(more.items()):
        w = f"{where}: arches.{arch}"
        if not isinstance(section, dict):
            raise PackageError(f"{w} is not an object")
        try:
            check_arch(arch)
        except ValueError as err:
            raise PackageError(f"{w}: {err}") from None
        if arch == sections[0].arch:
            raise PackageError(f"{w} repeats the top-level architecture")
        sections.append(read_section(section, w, base, arch))
    return LockFile(tuple(sections))


def read_section(data: dict[str, Any], where: str, base: str, arch: str = "") -> Lock:
    """One architecture's section: the top-level one names its `arch`, the others are
    keyed by theirs (`arch`)."""
    packages = []
    raw_packages = _field(data, "packages", list, where)
    for i, e in enumerate(raw_packages):
        w = f"{where}: packages[{i}]"
        if not isinstance(e, dict):
            raise PackageError(f"{w} is not an object")
        sha = _field(e, "sha256", str, w)
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise PackageError(f"{w}.sha256 is not a sha256 digest: {sha!r}")
        packages.append(
            ResolvedPackage(
                name=_field(e, "name", str, w),
                epoch=_field(e, "epoch", int, w),
                version=_field(e, "version", str, w),
                release=_field(e, "release", str, w),
                arch=_field(e, "arch", str, w),
                repo_id=_field(e, "repo", str, w),
                url=located_url(_field(e, "url", str, w), base),
                checksum=Checksum("sha256", sha),
                size=_field(e, "size", int, w),
            )
        )
    return Lock(
        requests=_strings(data, "requests", where),
        arch=arch or _field(data, "arch", str, where),
        excludes=_strings(data, "excludes", where),
        weak=_field(data, "weak", bool, where),
        packages=tuple(packages),
    )


def check_lock_covers(
    lock: Lock, requests: Sequence[str], *, arch: str, excludes: Sequence[str], weak: bool
) -> None:
    """Refuse (for `--locked`) a recipe that asks for anything the lock was not made for."""
    extra = sorted(set(requests) - set(lock.requests))
    if extra:
        raise ResolveError(f"the lock does not cover {extra[0]!r}: run `smith lock` again")
    if arch != lock.arch:
        raise ResolveError(f"the lock was made for arch {lock.arch!r}, not {arch!r}")
    if sorted(excludes) != sorted(lock.excludes) or weak != lock.weak:
        raise ResolveError("the lock was made with other excludes or weak-dependency settings")


def fetch_locked(lock: Lock, fetcher: Fetcher) -> tuple[Path, ...]:
    """Every locked package, fetched and checked against its pinned sha256."""
    return tuple(fetcher.fetch(p.url, p.checksum, p.size) for p in lock.packages)
