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


def check_toolbox(path: str) -> None:
    if not os.path.isdir(path):
        raise CrashcartError(
            f"no toolbox at {path}",
            hint="build one with `crashcart toolbox build`, or pass --toolbox DIR",
        )


def is_image(path: str) -> bool:
    """A file (an archive) or an OCI layout / unpacked docker-archive directory.

    Here, not in crashcart/image.py: that module imports smith's tree and image code, which
    an attach with a plain toolbox directory must not pay for."""
    if os.path.isfile(path):
        return True
    return os.path.isdir(path) and any(
        os.path.exists(os.path.join(path, name)) for name in ("oci-layout", "manifest.json")
    )
