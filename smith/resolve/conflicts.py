"""A path two packages both ship: rpm's file-conflict rule, applied while a tree is filled.

rpm refuses a transaction in which two packages put different things at one path
(`file /x from install of A conflicts with file from package B`): smith used to keep the
last package's silently, so which one the image held depended on the resolution order.
As rpm (rpmfilesCompare), two entries agree when both are directories, or when they have
the same kind, owner and (except for symlinks) mode, and the same bytes (regular files)
or the same target (symlinks). %config files are held to the same rule: rpm reports their
conflicts too. Ghosts never reach the tree, so they never conflict.
"""

from __future__ import annotations

from smith.errors import PackageError
from smith.tree import Entry, FileTree, Kind, content_digest


def check_shared_path(tree: FileTree, new: Entry, package: str) -> None:
    """Refuse `new` (from `package`) if the tree holds something else at its path from
    another origin."""
    old = tree.get(new.path)
    if old is None or old.origin == new.origin or same_entry(tree, old, new):
        return
    raise PackageError(
        f"{package}: /{new.path} conflicts with the file from {old.origin or 'the tree'} "
        f"({describe(tree, old)} vs {describe(tree, new)})"
    )


def same_entry(tree: FileTree, old: Entry, new: Entry) -> bool:
    old = _carrier(tree, old)
    new = _carrier(tree, new)
    if old.kind is Kind.DIR and new.kind is Kind.DIR:
        return True
    if old.kind is not new.kind or (old.uid, old.gid) != (new.uid, new.gid):
        return False
    if old.kind is Kind.SYMLINK:
        return old.target == new.target
    if old.mode != new.mode or old.size != new.size:
        return False
    return _digest(old) == _digest(new)


def describe(tree: FileTree, entry: Entry) -> str:
    entry = _carrier(tree, entry)
    if entry.kind is Kind.SYMLINK:
        return f"symlink to {entry.target!r}"
    if entry.kind is Kind.FILE:
        return f"file {entry.mode:04o} {entry.uid}:{entry.gid} sha256:{_digest(entry)[:12]}"
    return f"{entry.kind} {entry.mode:04o}"


def _carrier(tree: FileTree, entry: Entry) -> Entry:
    """A hard link compares as the file that carries its bytes."""
    if entry.kind is Kind.HARDLINK:
        first = tree.get(entry.target)
        if first is not None and first.kind is Kind.FILE:
            return first
    return entry


def _digest(entry: Entry) -> str:
    return content_digest(entry.content) if entry.content is not None else ""
