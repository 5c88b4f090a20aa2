"""The entry point for `smith build` and `smith minimize`: compute_closure.

from smith.resolve.dependencies import Extras, LoaderEnv, compute_closure
closure = compute_closure(tree, ["/usr/bin/app"], env=LoaderEnv.from_env(config_env),
                          extras=Extras(nss=True))
for path in closure.paths(): ...          # canonical root-relative paths to keep
closure.kept[path]                        # its Reason; closure.explain(path) for --explain
"""

from __future__ import annotations

from collections.abc import Iterable

from smith.resolve.closure import Closure, ClosureWalker, LoaderEnv, Missing, Reason
from smith.resolve.elfcache import ElfCache
from smith.resolve.extras import Extras, add_gconv_modules, add_glob, add_nss_modules
from smith.resolve.loader import Step
from smith.resolve.profile_paths import add_profile_paths
from smith.resolve.roots import DirectoryRoot, Root, TreeRoot
from smith.resolve.runtime_sets import add_runtime_rules
from smith.tree import FileTree

__all__ = [
    "Closure",
    "ElfCache",
    "Extras",
    "LoaderEnv",
    "Missing",
    "Reason",
    "Step",
    "compute_closure",
]


def compute_closure(
    root: FileTree | Root | str,
    starts: Iterable[str],
    *,
    env: LoaderEnv | None = None,
    extras: Extras | None = None,
    keep_going: bool = False,
    cache: ElfCache | None = None,
) -> Closure:
    """The closure of `starts` (absolute or root-relative paths) inside `root`.

    `root` is a FileTree, a host directory used as a root, or any Root. Raises ElfError
    for a missing library (unless `keep_going`, which records it in `Closure.missing`), a
    malformed ELF file or a symlink loop.
    """
    view: Root
    if isinstance(root, FileTree):
        view = TreeRoot(root)
    elif isinstance(root, str):
        view = DirectoryRoot(root)
    else:
        view = root
    walker = ClosureWalker(view, env=env, cache=cache, keep_going=keep_going)
    for start in starts:
        walker.add_start(start)
    extras = extras or Extras()
    if extras.nss:
        add_nss_modules(walker)
    if extras.gconv:
        add_gconv_modules(walker, extras.gconv)
    for pattern in extras.globs:
        add_glob(walker, pattern)
    add_profile_paths(walker, extras.profile)
    add_runtime_rules(walker, extras.rules)
    return walker.closure()
