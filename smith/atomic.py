"""Outputs appear whole or not at all.

Everything is written under a temporary name beside the destination (same filesystem, so
the final rename is atomic) and renamed into place only when complete. An error, or Ctrl-C,
removes the temporary name: no partial image, no half-written cache entry.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from smith.diskspace import writing_in
from smith.errors import SmithError
from smith.leftovers import remove_path, sweep, tagged
from smith.stopsignals import stop_signals_held

__all__ = [
    "atomic_path",
    "check_output",
    "remove_path",
    "replace_path",
    "temp_beside",
    "temp_sibling",
]


def check_output(dest: str, *, directory: bool | None = None) -> None:
    """An output may replace an earlier output, never what else the user keeps there: a
    directory is replaced only when it is empty or an OCI layout, and a layout (a
    directory, when `directory` is True) never replaces a file or a symlink."""
    name = os.path.basename(os.path.normpath(dest)) if dest else ""
    if name in ("", ".", "..", "/"):
        raise SmithError(f"the output {dest!r} names no file or directory of its own")
    try:
        mode = os.lstat(dest).st_mode
    except OSError:
        mode = 0
    if mode and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode)):
        # A FIFO, a socket or a device (`-o /dev/sda`) is never replaced by a file.
        raise SmithError(f"the output {dest!r} is a device, FIFO or socket: refusing to replace it")
    if os.path.islink(dest):
        if directory:
            raise SmithError(
                f"the output {dest!r} is a symbolic link: name its target, or remove it"
            )
        return
    if os.path.isdir(dest):
        entries = os.listdir(dest)
        if entries and "oci-layout" not in entries:
            raise SmithError(
                f"the output {dest!r} is a directory that is not an OCI layout: "
                "refusing to replace it"
            )
    elif directory and os.path.lexists(dest):
        raise SmithError(f"the output {dest!r} exists and is not a directory (an OCI layout)")


def temp_sibling(dest: str, *, directory: bool) -> str:
    parent = os.path.dirname(os.path.abspath(dest)) or "."
    if not os.path.isdir(parent):
        raise SmithError(f"the output's directory does not exist: {parent!r}")
    if not os.access(parent, os.W_OK):
        raise SmithError(f"the output's directory is not writable: {parent!r}")
    # Named by the run: what a killed run left beside this output goes now.
    sweep(parent)
    prefix = tagged(f".{os.path.basename(dest)}.smith-tmp-")
    try:
        if directory:
            return tempfile.mkdtemp(prefix=prefix, dir=parent)
        fd, path = tempfile.mkstemp(prefix=prefix, dir=parent)
    except OSError as err:  # e.g. /proc or /sys: a directory that holds no new files
        raise SmithError(
            f"cannot write the output {dest!r} in {parent!r}: {err.strerror}"
        ) from None
    os.close(fd)
    return path


def replace_path(tmp: str, dest: str) -> None:
    """Move `tmp` to `dest`, replacing whatever `dest` was."""
    if os.path.isdir(dest) and not os.path.islink(dest):
        # rename() cannot replace a non-empty directory: move the old one aside first.
        old = temp_sibling(dest, directory=True)
        os.rmdir(old)
        os.rename(dest, old)
        os.rename(tmp, dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, dest)


@contextmanager
def temp_beside(dest: str, *, directory: bool) -> Iterator[str]:
    """A temporary name beside `dest` (a file or a directory), removed when the block ends
    unless it was renamed away; a write in the block that meets a full disk is one line
    naming the directory (smith.diskspace). The name is made with the stop signals held: a Ctrl-C
    between mkstemp and the `try` would leave it behind."""
    tmp = ""
    try:
        with stop_signals_held():
            tmp = temp_sibling(dest, directory=directory)
        # A full disk is named by the output's directory; the temporary name goes below.
        with writing_in(os.path.dirname(tmp)):
            yield tmp
    finally:
        if tmp:
            remove_path(tmp)


@contextmanager
def atomic_path(dest: str, *, directory: bool = False, mode: int = 0o644) -> Iterator[str]:
    """Yield a temporary path to fill; on success it becomes `dest`."""
    check_output(dest, directory=directory)
    with temp_beside(dest, directory=directory) as tmp:
        yield tmp
        # Held: cut inside replace_path, after an old directory output moved aside, a
        # signal would leave no output at all.
        with stop_signals_held():
            # mkstemp/mkdtemp create 0600/0700; give the output ordinary permissions.
            os.chmod(tmp, 0o755 if directory else mode)
            replace_path(tmp, dest)
