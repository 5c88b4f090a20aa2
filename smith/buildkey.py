"""The build-inputs key: one sha256 of everything that decides the bytes of a build.

A build's output is a pure function of: the recipe as written (its bytes: every key,
including the output settings it names), the packages it installs (each pinned by sha256,
in resolution order, which decides what a later package overwrites), the rootfs/ beside
the recipe (names, kinds, modes, link targets, content digests), the output settings given
as flags or by the environment (SOURCE_DATE_EPOCH), the compressors' name, version and
level, and smith itself (the digest of its own source: any change to the writer, the
closure or the conventions is a new key, without a version number to forget to bump).
Nothing of the host or of the Python that runs smith is in it: the same inputs give the
same key on 3.11, 3.12 and 3.13, as they give the same bytes.

Everything here reads raw files (no YAML, no validation), so that a warm build can find
its key before it pays for loading the recipe's schema; the cache only holds builds that
validated, so a recipe that is invalid still fails on its next build.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

BUILDKEY_VERSION = 1
SMITH_DIR = os.path.dirname(os.path.abspath(__file__))
SOURCE_SUFFIXES = (".py", ".json")  # the code, and the schemas it validates with
_smith_digest: list[str] = []  # computed once per process


def canonical(doc: object) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8", "surrogateescape"
    )


def file_sha256(path: str) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            hasher.update(chunk)
    return hasher.hexdigest()


def smith_digest() -> str:
    """The sha256 of smith's own source files (by path relative to the package)."""
    if not _smith_digest:
        hasher = hashlib.sha256()
        for rel in sorted(source_files(SMITH_DIR)):
            hasher.update(rel.encode() + b"\0" + file_sha256(os.path.join(SMITH_DIR, rel)).encode())
        _smith_digest.append(hasher.hexdigest())
    return _smith_digest[0]


def source_files(root: str) -> Iterable[str]:
    for top, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in files:
            if name.endswith(SOURCE_SUFFIXES):
                yield os.path.relpath(os.path.join(top, name), root)


def tree_rows(root: str) -> list[list[object]]:
    """What a directory holds, as rows (path, kind, mode, link target or content digest),
    sorted bytewise: what overlaying it onto an image reads, and nothing of the host (no
    mtimes, owners or inode numbers). Read by the same walker as the overlay
    (FileTree.from_directory, which needs no recursion: a rootfs/ thousands of levels deep
    is refused in one line, not by a RecursionError)."""
    from smith.tree import FileTree, HostFile, Kind

    tree = FileTree.from_directory(root)
    rows: list[list[object]] = []
    for entry in tree:
        if entry.kind is Kind.FILE:
            assert isinstance(entry.content, HostFile)
            rows.append([entry.path, "file", entry.mode, file_sha256(entry.content.path)])
        elif entry.kind is Kind.DIR:
            rows.append([entry.path, "dir", entry.mode, ""])
        else:  # a symlink's target as written; a hard link's first name
            rows.append([entry.path, entry.kind.value, entry.mode, entry.target])
    return rows


@dataclass(frozen=True)
class PackagePin:
    """A package as far as the bytes it brings go: what it is, and its sha256."""

    name: str
    epoch: int
    version: str
    release: str
    arch: str
    sha256: str

    def row(self) -> list[object]:
        return [self.name, self.epoch, self.version, self.release, self.arch, self.sha256]


@dataclass(frozen=True)
class BuildInputs:
    """What a build reads before it knows its packages: all raw, none validated."""

    recipe_sha256: str
    rootfs: tuple[tuple[object, ...], ...] | None
    settings: Mapping[str, object]  # the flags and environment that choose output settings
    lock: bytes | None  # smith.lock's bytes, when there is one
    # Files the validated recipe names (its `profile:`): path -> sha256. A build that reads
    # one is found only once the recipe validated, never by the raw inputs alone.
    named: Mapping[str, str] = field(default_factory=dict)

    def key(self, packages: Sequence[PackagePin]) -> str:
        """The key of a build of these inputs with `packages` (in resolution order)."""
        doc = {
            "version": BUILDKEY_VERSION,
            "smith": smith_digest(),
            "recipe": self.recipe_sha256,
            "rootfs": [list(row) for row in self.rootfs] if self.rootfs is not None else None,
            "settings": dict(self.settings),
            "packages": [p.row() for p in packages],
            **({"named": dict(self.named)} if self.named else {}),
        }
        return hashlib.sha256(canonical(doc)).hexdigest()


def read_inputs(
    recipe_path: str, settings: Mapping[str, object], lock_path: str | None = None
) -> BuildInputs:
    """The raw inputs of building `recipe_path`; `settings` are the option values that
    decide bytes (see build_settings), `lock_path` the lock when not smith.lock beside it."""
    with open(recipe_path, "rb") as f:
        recipe = hashlib.sha256(f.read()).hexdigest()
    base = os.path.dirname(os.path.abspath(recipe_path))
    rootfs = os.path.join(base, "rootfs")
    rows = tree_rows(rootfs) if os.path.isdir(rootfs) else None
    lock_path = lock_path or os.path.join(base, "smith.lock")
    try:
        with open(lock_path, "rb") as f:
            lock: bytes | None = f.read()
    except FileNotFoundError:
        lock = None
    # The recipe's file name is in its provenance statement.
    settings = {**settings, "recipe_name": os.path.basename(recipe_path)}
    return BuildInputs(
        recipe, tuple(tuple(r) for r in rows) if rows is not None else None, settings, lock
    )


def build_settings(
    values: Mapping[str, object], compressors: Mapping[str, object]
) -> dict[str, object]:
    """The settings part of a key: the options that decide bytes (`values`), the
    environment the settings table falls back to, and every compressor's identity (the
    recipe may choose any of them)."""
    return {
        **{k: list(v) if isinstance(v, tuple) else v for k, v in values.items()},
        "SOURCE_DATE_EPOCH": os.environ.get("SOURCE_DATE_EPOCH", ""),
        "compressors": dict(compressors),
    }
