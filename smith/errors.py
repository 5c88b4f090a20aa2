"""One error family for the whole library.

Every error smith raises on purpose is a SmithError whose message names the offending value
(a path, a package, a key). Only the CLI turns it into an exit code and one line on stderr.
"""

from __future__ import annotations


class SmithError(Exception):
    """Base of every error smith reports to a user. `hint` is an optional second sentence."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


def as_trouble(err: SmithError) -> SmithError:
    """For the commands whose exit status 1 means "they differ" (diff, verify): an error
    exits 2, as diff(1)'s trouble does, so a script never takes a broken image for a
    different one."""
    err.exit_code = max(err.exit_code, 2)
    return err


class UsageError(SmithError):
    """The command line or a recipe asks for something that cannot be done."""

    exit_code = 2


class UnsafePathError(SmithError):
    """A path from an archive, package or image would land outside its root."""


class ImageFormatError(SmithError):
    """An image, layout or archive is malformed, truncated or does not match its digest."""


class RecipeError(SmithError):
    """A recipe file is not valid."""


class ElfError(SmithError):
    """An ELF file is malformed or its dependency closure cannot be completed."""


class PackageError(SmithError):
    """An RPM package or repository is malformed, unreachable or fails a check."""


class SignatureError(SmithError):
    """A key is unreadable or of the wrong kind, or no signature of an image verifies."""


class ResolveError(SmithError):
    """Package resolution failed (libsolv problems are in the message)."""


class RegistryError(SmithError):
    """A registry refused a request or answered something invalid."""


class CrashcartError(SmithError):
    """crashcart cannot attach to, or detach from, its target."""


class LimitError(SmithError):
    """An input went past one of smith's bounds (smith/limits.py): too large, too deep, too
    slow. The hint names the environment variable that raises the bound."""


class NoSpaceError(SmithError):
    """A directory smith writes to has no room for what a step will write (smith/diskspace.py):
    the message names the directory, the hint what moves the work elsewhere."""


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived (`timeout`, `docker stop`, a CI runner): unwound like Ctrl-C, so every
    cleanup that handles an interrupt runs, but reported as termination (exit 143)."""
