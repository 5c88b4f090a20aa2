"""The `rootfs/` directory beside a recipe: laid over the tree the image is made from."""

from __future__ import annotations

import os
import posixpath

from smith.errors import UnsafePathError
from smith.paths import climbs_out
from smith.tree import FileTree, Kind

ORIGIN = "rootfs/"


def rootfs_of(recipe_dir: str) -> str | None:
    """The recipe's `rootfs/` directory, if it has one."""
    path = os.path.join(recipe_dir, "rootfs")
    return path if os.path.isdir(path) else None


def rootfs_paths(tree: FileTree) -> set[str]:
    """The paths of `tree` that came from a `rootfs/`: kept whatever the closure says."""
    return {e.path for e in tree if e.origin == ORIGIN}


def overlay_rootfs(tree: FileTree, rootfs: str) -> None:
    """Lay a `rootfs/` directory beside the recipe over the tree, as the original did:
    symlinks kept as they are, `.gitignore` files left out, nothing that climbs out."""
    if not os.path.isdir(rootfs):
        return
    for entry in FileTree.from_directory(rootfs, origin=ORIGIN):
        if posixpath.basename(entry.path) == ".gitignore":
            continue
        if entry.kind is Kind.SYMLINK and climbs_out(entry.path.count("/"), entry.target):
            raise UnsafePathError(
                f"rootfs/{entry.path} is a symlink to {entry.target!r}, outside the image root"
            )
        existing = tree.get(entry.path)
        if entry.kind is Kind.DIR and existing is not None and existing.kind is Kind.DIR:
            continue
        tree.remove(
            entry.path
        ) if existing is not None and existing.kind is not entry.kind else None
        tree.add(entry)
