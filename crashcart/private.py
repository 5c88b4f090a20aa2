"""The session's private view of the target: a copy of its mount namespace with the toolbox.

The target's own mount namespace is never changed: the session's first process (the
reaper) joins it, copies it (unshare(CLONE_NEWNS)), cuts the copy off from every peer
(MS_PRIVATE, recursively: with shared propagation a mount would otherwise appear in the
target or on the host), and only then mounts anything.

The toolbox's programs are relocated to MOUNT_POINT, /dev/crashcart, but creating that
directory on the target's /dev would write to the target's filesystem (its tmpfs, or with
`-v /dev:/dev` the host's, or a read-only one that refuses). So the view gets its own
/dev: a fresh tmpfs over /dev in the copy, where each entry of the target's /dev appears
again (symbolic links and device nodes made anew, everything else bind-mounted with its
submounts: pts, shm, mqueue...), next to the toolbox's mount point. The target's /dev, its
listing and its times included, stays as it was; processes of the session opening
/dev/null or /dev/pts/ptmx open the target's own devices.
"""

from __future__ import annotations

import os
import stat

from crashcart.mount import (
    AT_RECURSIVE,
    AT_SYMLINK_NOFOLLOW,
    CLONE_NEWNS,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_REC,
    OPEN_TREE_CLOEXEC,
    OPEN_TREE_CLONE,
    mount,
    move_mount,
    open_tree,
    unshare,
)
from smith.errors import CrashcartError

CLONE = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE | AT_SYMLINK_NOFOLLOW


def enter_private_copy() -> None:
    """Copy the mount namespace the caller is in (with the target's root as its root) and
    make every mount of the copy private."""
    unshare(CLONE_NEWNS)
    try:
        mount("none", "/", "", MS_REC | MS_PRIVATE)
    except OSError as err:
        # EINVAL: the root is a directory, not a mount (a chroot, not a pivot_root):
        # its mount could not be made private, and mounts under it could propagate.
        raise CrashcartError(
            f"the target's root is not a mount point, so crashcart cannot keep its mounts "
            f"private ({err.strerror})"
        ) from None


def _recreate(old_dev: int, name: str, path: str, dev_fs: int) -> None:
    """One entry of the target's /dev at path in the private /dev."""
    st = os.lstat(name, dir_fd=old_dev)
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(name, dir_fd=old_dev), path)
        return
    if (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)) and st.st_dev == dev_fs:
        # A device node of /dev's own filesystem (not a mount): the same node, made here, is
        # the same device to open, and costs no mount (the mount lock is shared by the host).
        os.mknod(path, st.st_mode, st.st_rdev)
        os.chown(path, st.st_uid, st.st_gid, follow_symlinks=False)
        os.chmod(path, stat.S_IMODE(st.st_mode))
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
        return
    if stat.S_ISDIR(st.st_mode):
        os.mkdir(path, 0o700)
    else:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o600))
    entry = open_tree(name, CLONE, old_dev)
    try:
        move_mount(entry, path)  # the mount shows the target's own inode: mode, owner, times
    finally:
        os.close(entry)


def mount_private_dev(tree_fd: int, mount_point: str) -> None:
    """Replace /dev in the private copy by a tmpfs holding the target's /dev entries and the
    toolbox (tree_fd, a detached mount from clone_tree_readonly) at mount_point."""
    dev = os.path.dirname(mount_point)
    try:
        old_dev = open_tree(dev, CLONE)
    except FileNotFoundError:
        raise CrashcartError(f"the target has no {dev} to hold the toolbox") from None
    try:
        st = os.fstat(old_dev)
        options = f"mode={stat.S_IMODE(st.st_mode):o},uid={st.st_uid},gid={st.st_gid},size=1m"
        mount("crashcart", dev, "tmpfs", MS_NOSUID | MS_NOEXEC, options)
        own = os.path.basename(mount_point)
        listing = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=old_dev)
        try:
            names = sorted(os.listdir(listing))  # open_tree's descriptor cannot be read
        finally:
            os.close(listing)
        for name in names:
            if name != own:  # a toolbox left by --mount-only: the session's own goes there
                _recreate(old_dev, name, f"{dev}/{name}", st.st_dev)
        os.mkdir(mount_point, 0o755)
        move_mount(tree_fd, mount_point)
        # `ls -ld /dev` in the session shows the target's times, not the copy's.
        os.utime(dev, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
    finally:
        os.close(old_dev)
