"""fanotify(7) through ctypes: which files of one filesystem the processes of one mount
namespace open or execute.

The probe's root filesystem is a tmpfs of its own, marked with FAN_MARK_FILESYSTEM: events
come only for files of that superblock, so the host's files and other containers' roots
(other filesystems) can never appear. Within it, only processes of the container's mount
namespace count (the probe itself writing the tree, or anything else on the host that
looks in, lives in another one).

Permission events (FAN_OPEN_PERM, FAN_OPEN_EXEC_PERM) rather than FAN_OPEN/FAN_OPEN_EXEC:
the opening process waits until we answer, so its /proc entry (name, namespace) can still
be read when the event is handled; with plain notifications a short-lived process may be
gone by then, and what is recorded would depend on timing. Every mmap and every read of a
file starts with an open, so open and exec are the events that see every file used.
"""

from __future__ import annotations

import ctypes
import logging
import os
import select
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from smith.errors import SmithError
from smith.stopsignals import stop_signals_held

log = logging.getLogger(__name__)

FAN_CLOEXEC = 0x01
FAN_CLASS_CONTENT = 0x04
FAN_UNLIMITED_QUEUE = 0x10
FAN_UNLIMITED_MARKS = 0x20
FAN_OPEN_PERM = 0x00010000
FAN_OPEN_EXEC_PERM = 0x00040000
FAN_MARK_ADD = 0x01
FAN_MARK_FILESYSTEM = 0x00000100
FAN_ALLOW = 0x01
FAN_NOFD = -1
# struct fanotify_event_metadata: event_len, vers, reserved, metadata_len, mask, fd, pid.
METADATA = struct.Struct("=IBBHQii")
RESPONSE = struct.Struct("=iI")  # struct fanotify_response: fd, response


class Event(StrEnum):
    EXEC = "exec"
    OPEN = "open"


@dataclass(frozen=True)
class Access:
    """One open or exec: the file (path inside the root), the event, the process name."""

    path: str
    event: Event
    process: str


_libc = ctypes.CDLL(None, use_errno=True)
_libc.fanotify_init.argtypes = [ctypes.c_uint, ctypes.c_uint]
_libc.fanotify_mark.argtypes = [
    ctypes.c_int,
    ctypes.c_uint,
    ctypes.c_uint64,
    ctypes.c_int,
    ctypes.c_char_p,
]


def _check(result: int, what: str) -> int:
    if result < 0:
        errno = ctypes.get_errno()
        raise SmithError(f"{what}: {os.strerror(errno)}")
    return result


def mount_ns(pid: int) -> int:
    """The inode of a process's mount namespace (0 if it is gone)."""
    try:
        return os.stat(f"/proc/{pid}/ns/mnt").st_ino
    except OSError:
        return 0


def process_name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm", "rb") as f:
            return f.read().rstrip(b"\n").decode("utf-8", "surrogateescape")
    except OSError:
        return "?"


class Watch:
    """Records the accesses to files under `root` (a mount point of its own filesystem)
    by processes whose mount namespace is `namespace`, in a thread, until stopped."""

    def __init__(self, root: str, namespace: int, record: Callable[[Access], None]) -> None:
        self.root = os.path.realpath(root)
        self.namespace = namespace
        self.record = record
        flags = FAN_CLOEXEC | FAN_CLASS_CONTENT | FAN_UNLIMITED_QUEUE | FAN_UNLIMITED_MARKS
        event_flags = os.O_RDONLY | os.O_CLOEXEC | os.O_LARGEFILE
        self.fd = _check(_libc.fanotify_init(flags, event_flags), "fanotify_init")
        mask = FAN_OPEN_PERM | FAN_OPEN_EXEC_PERM
        how = FAN_MARK_ADD | FAN_MARK_FILESYSTEM
        result = _libc.fanotify_mark(self.fd, how, mask, -1, self.root.encode())
        _check(result, f"fanotify_mark {self.root}")
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._loop, name="fanotify", daemon=True)
        with stop_signals_held():  # the thread inherits the mask: see smith/stopsignals.py
            self._thread.start()

    def stop(self) -> None:
        os.write(self._stop_w, b"x")
        self._thread.join()
        for fd in (self.fd, self._stop_r, self._stop_w):
            os.close(fd)

    def _loop(self) -> None:
        while True:
            ready, _, _ = select.select([self.fd, self._stop_r], [], [])
            if self._stop_r in ready:
                return
            try:
                data = os.read(self.fd, 64 * METADATA.size)
            except OSError as err:
                log.warning("fanotify: reading events failed: %s", err)
                return
            offset = 0
            while offset + METADATA.size <= len(data):
                length, _, _, _, mask, fd, pid = METADATA.unpack_from(data, offset)
                offset += max(length, METADATA.size)
                if fd == FAN_NOFD:
                    continue
                try:
                    self._handle(mask, fd, pid)
                finally:
                    # Always answer: the process waits for it.
                    os.write(self.fd, RESPONSE.pack(fd, FAN_ALLOW))
                    os.close(fd)

    def _handle(self, mask: int, fd: int, pid: int) -> None:
        if mount_ns(pid) != self.namespace:
            return
        try:
            where = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return
        event = Event.EXEC if mask & FAN_OPEN_EXEC_PERM else Event.OPEN
        self.record(Access(self.inside(where), event, process_name(pid)))

    def inside(self, where: str) -> str:
        """The path in the container's root of a file the kernel names as the container
        sees it ("/usr/lib/x") or, through our mount, under the root ("ROOT/usr/lib/x")."""
        if where == self.root or where.startswith(self.root + "/"):
            return where[len(self.root) :] or "/"
        return where
