"""Free space: checked before a step writes what it knows it will write, and a full disk
named by its directory.

`No space left on device` alone does not say which disk to clean, nor which setting moves
the work elsewhere; and a step that fills a disk halfway has spent minutes to fail and
starved whatever else writes there. So a step whose size is declared (a download's
metadata, a layer entry's header, a package's file list) checks the free space of the
directory it writes to first, and any write that still meets ENOSPC or EDQUOT becomes the
same one line: the directory, and what to do.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from smith.errors import NoSpaceError
from smith.leftovers import TAG

FULL = (errno.ENOSPC, errno.EDQUOT)


def free_bytes(directory: str | os.PathLike[str]) -> int | None:
    """What an unprivileged writer may still write in `directory` (None: no answer)."""
    try:
        st = os.statvfs(directory)
    except OSError:
        return None  # no answer is no reason to fail: the write itself will say
    return st.f_bavail * st.f_frsize


# Where the download cache is full (its packages, their files): the flag that moves it.
CACHE = "use --cache-dir or XDG_CACHE_HOME on a larger disk"


def named(directory: str | os.PathLike[str], hint: str) -> tuple[str, str]:
    """The directory to name and what to do. A step's own temporary directory in TMPDIR is
    named by TMPDIR: its name means nothing to a user, and it is gone when the line shows."""
    shown = str(directory)
    if hint:
        return shown, hint
    tmp = os.path.realpath(tempfile.gettempdir())
    below = os.path.relpath(os.path.realpath(shown), tmp)
    if below.startswith(".."):
        return shown, "free space there, or write elsewhere"
    if below == "." or TAG.search(below.split(os.sep)[0]):  # TMPDIR, or a run's own there
        shown = tmp
    return shown, "set TMPDIR to a larger disk"


def check_space(directory: str | os.PathLike[str], need: int, what: str, *, hint: str = "") -> None:
    """Refuse `what`, `need` bytes to be written in `directory`, when they cannot fit,
    before a byte of it is written. `hint`: what to do instead (default: see named)."""
    free = free_bytes(directory)
    if free is not None and need > free:
        shown, hint = named(directory, hint)
        raise NoSpaceError(
            f"no space in {shown!r} for {what}: {need} bytes needed, {free} free", hint=hint
        )


def disk_full(err: OSError, directory: str | os.PathLike[str], *, hint: str = "") -> NoSpaceError:
    """A write in `directory` that met a full disk or quota, as the one line."""
    shown, hint = named(directory, hint)
    return NoSpaceError(f"no space left in {shown!r}: {err.strerror or err}", hint=hint)


def full_disk_line(err: OSError) -> str:
    """A full disk that no step named (a write outside writing_in): the file's directory
    when the error has one, else the places smith writes to."""
    if err.filename:
        return str(disk_full(err, os.path.dirname(os.path.abspath(str(err.filename)))))
    return (
        f"{err.strerror or err} in TMPDIR ({tempfile.gettempdir()!r}), the cache or the "
        "output's directory"
    )


@contextmanager
def writing_in(directory: str | os.PathLike[str], *, hint: str = "") -> Iterator[None]:
    """Writes in the block go to `directory`: a full disk there is named by it. What the
    block wrote is the caller's to remove (its `finally`, or an atomic temporary name)."""
    try:
        yield
    except OSError as err:
        if err.errno in FULL:
            raise disk_full(err, directory, hint=hint) from None
        raise


class SpaceBudget:
    """Free space for a stream of writes of declared sizes (a layer's files): statvfs once
    per CHECK_EVERY bytes, not once per file, and a file refused before it is written."""

    CHECK_EVERY = 64 << 20  # a disk others fill too is asked again at least this often

    def __init__(self, directory: str | os.PathLike[str], what: str, most: int) -> None:
        """`most`: what one declared size can really bring (the stream's decompression
        bound): a header that says 2^80 bytes is a broken input, for the reader to name,
        not a disk too small."""
        self.directory = directory
        self.what = what
        self.most = most
        self.written = 0
        self.checked_to = 0  # up to here, the last answer said the bytes fit

    def claim(self, declared: int) -> None:
        """`declared` more bytes are about to be written."""
        size = min(declared, self.most)
        self.written += size
        if self.written <= self.checked_to:
            return
        free = free_bytes(self.directory)
        if free is None:
            self.checked_to = self.written + self.CHECK_EVERY
            return
        if size > free:
            check_space(self.directory, size, self.what)  # asked again: it names the numbers
        self.checked_to = self.written - size + min(free, max(size, self.CHECK_EVERY))
