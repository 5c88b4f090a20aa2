"""What a recipe adds to the tree the image is made from: its `rootfs/` and `mounts`."""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable

from smith.conventions import ORIGIN as CONVENTIONS_ORIGIN
from smith.errors import UnsafePathError
from smith.paths import MAX_DEPTH, MAX_NAME_BYTES, climbs_out, normalize_path, parent_paths
from smith.tree import Entry, FileTree, Kind

ORIGIN = "rootfs/"
MOUNTS_ORIGIN = "mounts (recipe)"


def rootfs_of(recipe_dir: str) -> str | None:
    """The recipe's `rootfs/` directory, if it has one."""
    path = os.path.join(recipe_dir, "rootfs")
    # A symbolic link is returned too, for overlay_rootfs to refuse by name.
    return path if os.path.isdir(path) or os.path.islink(path) else None


def overlay_rootfs(tree: FileTree, rootfs: str) -> None:
    """Lay a `rootfs/` directory beside the recipe over the tree, as the original did:
    symlinks kept as they are, `.gitignore` files left out, nothing that climbs out."""
    if os.path.islink(rootfs):
        # Read through, a link to /etc or $HOME would put the host's files into the image.
        raise UnsafePathError(f"{rootfs!r} is a symbolic link: a rootfs/ must be a directory")
    if not os.path.isdir(rootfs):
        return
    entries = FileTree.from_directory(rootfs, origin=ORIGIN)
    for entry in entries:
        if posixpath.basename(entry.path) == ".gitignore":
            continue
        # The bounds of a layer's names (smith/paths.py): past them, the tree walks after
        # this one slow down with the square of the depth and no runtime could use the path.
        depth = entry.path.count("/") + 1
        if depth > MAX_DEPTH or len(os.fsencode(entry.path)) > MAX_NAME_BYTES:
            raise UnsafePathError(
                f"the rootfs/ entry {entry.path!r} is {depth} levels deep "
                f"(at most {MAX_NAME_BYTES} bytes and {MAX_DEPTH} levels)"
            )
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


def add_mount_points(tree: FileTree, mounts: Iterable[str]) -> None:
    """Each of `mounts` is an empty directory of the image, as the original made it: on a
    read-only root a runtime cannot create the mount point itself."""
    for mount in mounts:
        path = normalize_path(mount, what="mounts entry")
        for directory in (*parent_paths(path), path):
            if directory and directory not in tree:
                tree.add_dir(directory, 0o755, origin=MOUNTS_ORIGIN)


def added_reason(entry: Entry) -> str | None:
    """Why `entry` is in the image when no closure or pattern kept it: the conventions or
    the recipe's `mounts` added it (None: neither did)."""
    if entry.origin == CONVENTIONS_ORIGIN:
        return CONVENTIONS_ORIGIN
    if entry.origin == MOUNTS_ORIGIN:
        return "a mount point named by mounts"
    return None
