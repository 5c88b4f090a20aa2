"""The few mount and namespace syscalls crashcart needs, as thin ctypes wrappers.

One small function per system call (mkosi's sandbox.py style); each raises OSError with the
errno and the path it was given, and callers turn that into a CrashcartError with context.
The numbers of open_tree, move_mount and mount_setattr are the same on every architecture
(they were allocated after the syscall tables were unified at 424).
"""

from __future__ import annotations

import ctypes
import os

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long

NR_OPEN_TREE = 428
NR_MOVE_MOUNT = 429
NR_MOUNT_SETATTR = 442

OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = os.O_CLOEXEC
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
AT_FDCWD = -100
MOVE_MOUNT_F_EMPTY_PATH = 0x4

MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MS_RDONLY = 1
MS_NODEV = 4
MS_NOSUID = 2
MS_NOEXEC = 8
MS_REC = 1 << 14
MS_PRIVATE = 1 << 18
AT_SYMLINK_NOFOLLOW = 0x100
MNT_DETACH = 2

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000


class MountAttr(ctypes.Structure):
    _fields_ = (
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    )


def check_result(result: int, what: str, path: str = "") -> int:
    """result, or the OSError of errno when the call failed (result < 0)."""
    if result < 0:
        err = ctypes.get_errno() or -result  # libseccomp returns -errno, leaves errno alone
        raise OSError(err, f"{what}: {os.strerror(err)}", path or None)
    return result


def open_tree(path: str, flags: int, dir_fd: int = AT_FDCWD) -> int:
    result = _libc.syscall(NR_OPEN_TREE, dir_fd, path.encode(), flags)
    return check_result(result, "open_tree", path)


def mount(source: str, target: str, fstype: str, flags: int, data: str = "") -> None:
    result = _libc.mount(source.encode(), target.encode(), fstype.encode(), flags, data.encode())
    check_result(result, "mount", target)


def unshare(flags: int) -> None:
    check_result(_libc.unshare(flags), "unshare")


def mount_setattr(fd: int, attr: MountAttr, flags: int) -> None:
    size = ctypes.sizeof(attr)
    result = _libc.syscall(NR_MOUNT_SETATTR, fd, b"", flags, ctypes.byref(attr), size)
    check_result(result, "mount_setattr")


def move_mount(fd: int, to_path: str) -> None:
    flags = MOVE_MOUNT_F_EMPTY_PATH
    result = _libc.syscall(NR_MOVE_MOUNT, fd, b"", AT_FDCWD, to_path.encode(), flags)
    check_result(result, "move_mount", to_path)


# pivot_root has no glibc wrapper and, unlike the calls above, one number per architecture.
NR_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "ppc64le": 203, "s390x": 217}


def pivot_root(new_root: str, put_old: str) -> None:
    nr = NR_PIVOT_ROOT.get(os.uname().machine)
    if nr is None:
        raise OSError(38, f"pivot_root: unknown on {os.uname().machine}", new_root)
    result = _libc.syscall(nr, new_root.encode(), put_old.encode())
    check_result(result, "pivot_root", new_root)


def umount2(path: str, flags: int) -> None:
    check_result(_libc.umount2(path.encode(), flags), "umount2", path)


def setns(fd: int, nstype: int) -> None:
    check_result(_libc.setns(fd, nstype), "setns")


def sethostname(name: str) -> None:
    raw = name.encode()
    check_result(_libc.sethostname(raw, len(raw)), "sethostname")


def setfsuid(uid: int) -> None:
    _libc.setfsuid(uid)  # returns the previous fsuid, never an error


def setfsgid(gid: int) -> None:
    _libc.setfsgid(gid)


def clone_tree_readonly(path: str) -> int:
    """A detached, read-only nosuid nodev private copy of the directory at path.

    The clone lives in an anonymous mount namespace until move_mount attaches it, so it can
    be carried (as a file descriptor) into a namespace where the host path is invisible.
    Not recursive: what is mounted below the toolbox (the host's / bound there, say) is not
    the toolbox and stays behind.
    """
    fd = open_tree(path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC)
    try:
        attr = MountAttr(
            attr_set=MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
            propagation=MS_PRIVATE,
        )
        mount_setattr(fd, attr, AT_EMPTY_PATH | AT_RECURSIVE)
    except BaseException:
        os.close(fd)
        raise
    return fd
