"""A probe's profile in the closure: each recorded file with what it needs.

An executed file is added like a start (its interpreter, #! line, DT_NEEDED), an opened
one like a dlopen (an ELF file brings its closure; any other file is kept as it is). The
kernel names a file by its final path, so symlinks the program went through are not in the
profile: every symlink of the root that leads to a recorded file, or to a directory on the
way to one, is kept too (a `modules-enabled/*.conf` link to the module's configuration,
`python3` to `python3.11`).
"""

from __future__ import annotations

import posixpath
from typing import TYPE_CHECKING

from smith.errors import SmithError
from smith.paths import normalize_path, parent_paths
from smith.resolve.closure import ClosureWalker, Reason
from smith.resolve.loader import Step
from smith.tree import Kind

if TYPE_CHECKING:
    from smith.profile import ProfileEntry  # a type only: smith.profile writes files


def add_profile_paths(walker: ClosureWalker, entries: tuple[ProfileEntry, ...]) -> None:
    if not entries:
        return
    kept: set[str] = set()
    for entry in entries:
        path = normalize_path(entry.path, what="profile path")
        walk = walker.walker.walk(path)
        if walk.kind not in (Kind.FILE, Kind.HARDLINK):
            walker.warnings.append(f"the profile's {entry.path} is no file of the image")
            continue
        reason = Reason(Step.PROFILE, name=f"{entry.event} by {entry.process}")
        if entry.event == "exec":
            walker.add_start(path, reason)
        else:
            walker.add_module(path, reason)
        kept.add(walk.path)
    add_links_to(walker, kept)


def add_links_to(walker: ClosureWalker, targets: set[str]) -> None:
    """Keep every symlink (and the links on its way) whose final target is in `targets`,
    or is a directory holding one of them (`/usr/share/nginx/modules` ->
    `/usr/lib/nginx/modules`: the program named the file through that link)."""
    directories = {parent for target in targets for parent in parent_paths(target)}
    todo = [""]
    while todo:
        directory = todo.pop()
        for name in walker.root.listdir(directory):
            path = posixpath.join(directory, name) if directory else name
            kind = walker.root.kind(path)
            if kind is Kind.DIR:
                todo.append(path)
            elif kind is Kind.SYMLINK:
                try:
                    walk = walker.walker.walk(path)
                except SmithError:
                    continue  # a loop or a link out of the root leads to no recorded file
                if walk.path in targets or walk.path in directories:
                    walker.keep_walk(walk, Reason(Step.SYMLINK, name=f"/{walk.path}"), path)
