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
