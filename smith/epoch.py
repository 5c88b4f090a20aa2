"""SOURCE_DATE_EPOCH: the one time that reaches an image (layer mtimes, `created`)."""

from __future__ import annotations

import os

from smith.errors import UsageError


def environment_epoch() -> int:
    """SOURCE_DATE_EPOCH from the environment; 0 (1970) when unset or empty, as the
    reproducible-builds convention says. Anything but a whole number of seconds is refused:
    a guess would put a time no one chose into every digest."""
    value = os.environ.get("SOURCE_DATE_EPOCH", "")
    if not value:
        return 0
    if not value.isdigit():
        raise UsageError(f"SOURCE_DATE_EPOCH must be a whole number of seconds, not {value!r}")
    return int(value)
