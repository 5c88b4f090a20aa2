"""Normalisation of paths that come from untrusted archives, packages and images.

Every path inside smith is relative to an image root, in one canonical form: no leading
`/`, no `.` or empty components, no `..`. Anything that would climb out of the root is
refused here, once, so that no writer or extractor has to think about it again.
"""

from __future__ import annotations

import posixpath

from smith.errors import UnsafePathError

# No runtime can use a longer name (the kernel's PATH_MAX), and smith's tree walks go
# (recursively) one or two frames per directory level: a layer (or a rootfs/) deeper than
# this is refused by name, not crashed on.
MAX_NAME_BYTES = 4096
MAX_DEPTH = 256


def normalize_path(path: str, *, what: str = "path") -> str:
    """Return `path` in canonical root-relative form, or raise UnsafePathError.

    A leading `/` is accepted (images and packages name absolute paths inside their root);
    `..` is refused wherever it appears, even when it would stay inside the root, because a
    later symlink could make it leave.
    """
    if "\x00" in path:
        raise UnsafePathError(f"{what} contains a NUL byte: {path!r}")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafePathError(f"{what} climbs out of its root: {path!r}")
    return "/".join(parts)


def parent_paths(path: str) -> list[str]:
    """All ancestors of a canonical path, outermost first ("a/b/c" -> ["a", "a/b"])."""
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def resolve_link_target(link_path: str, target: str) -> str:
    """Where a symlink at `link_path` with `target` points, as a canonical root-relative path.

    An absolute target is re-rooted (it names a path inside the image, never on the host).
    `..` may climb at most to the root, as the kernel does inside a chroot: `/..` is `/`.
    """
    base = "/" if target.startswith("/") else "/" + posixpath.dirname(link_path)
    joined = posixpath.normpath(posixpath.join(base, target))
    # normpath keeps a leading "//"; and "/.." normalises to "/" as in a chroot.
    return joined.lstrip("/")


def climbs_out(directory_depth: int, target: str) -> bool:
    """Whether a relative symlink target, followed from a directory `directory_depth` levels
    below the root, climbs above the root. The kernel clamps `..` at `/` inside a chroot,
    but a package, layer or overlay that does this is hostile or broken: refuse it."""
    depth = directory_depth
    for part in target.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        elif part not in ("", "."):
            depth += 1
    return False
