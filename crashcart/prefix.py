"""Where toolboxes live on the host and where they appear in a target.

Kept apart from toolbox.py (the builder) so that `attach`, whose start-up time is
benchmarked against `runc exec`, imports nothing heavy.
"""

from __future__ import annotations

import os

from smith.errors import CrashcartError

# The toolbox's binaries have this compiled in as interpreter and RPATH: it is fixed.
MOUNT_POINT = "/dev/crashcart"
DEFAULT_TOOLBOX = os.environ.get("CRASHCART_TOOLBOX", "/var/lib/crashcart/toolbox")


# Written by `crashcart toolbox build` (and by the unpacking of an image toolbox) at the
# top of every toolbox: the mark of a directory that is one, with the tree's digest.
MANIFEST = "crashcart-toolbox.json"


def check_toolbox(path: str) -> str:
    """The real path of the toolbox at path, refusing anything that is not one.

    A directory is not trusted because it was named: the host's root, a mount root of the
    host, a process's /proc/PID/root (and whatever resolves to them) would put the host's
    files in front of the target's processes. Only a directory with crashcart's marker is
    a toolbox."""

    def refuse_root(where: str, shown: str) -> None:
        # /proc/PID/root is a root whatever it resolves to from here (or fails to).
        if where == "/" or where == "/proc" or where.startswith("/proc/"):
            raise CrashcartError(f"--toolbox {shown} is a root filesystem, not a toolbox")

    refuse_root(os.path.abspath(path), path)
    try:
        real = os.path.realpath(path)
    except OSError as err:
        raise CrashcartError(f"no toolbox at {path}: {err.strerror}") from None
    shown = path if real == path else f"{path} (which is {real})"
    refuse_root(real, shown)
    if not os.path.isdir(path):
        raise CrashcartError(
            f"no toolbox at {path}",
            hint="build one with `crashcart toolbox build`, or pass --toolbox DIR",
        )
    if os.path.ismount(real):
        raise CrashcartError(f"--toolbox {shown} is a mount root of the host, not a toolbox")
    marker = os.path.join(real, MANIFEST)
    if not os.path.isfile(marker) or os.path.islink(marker):
        raise CrashcartError(
            f"--toolbox {shown} is not a toolbox: it has no {MANIFEST}",
            hint="`crashcart toolbox build -o DIR` makes one; an image is unpacked into one",
        )
    return real


def is_image(path: str) -> bool:
    """A file (an archive) or an OCI layout / unpacked docker-archive directory.

    Here, not in crashcart/image.py: that module imports smith's tree and image code, which
    an attach with a plain toolbox directory must not pay for."""
    if os.path.isfile(path):
        return True
    return os.path.isdir(path) and any(
        os.path.exists(os.path.join(path, name)) for name in ("oci-layout", "manifest.json")
    )
