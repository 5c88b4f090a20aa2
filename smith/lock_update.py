"""`smith lock --update [PKG...]`: move named pins to their newest versions, and no others.

The recipe is resolved again with every pin of the current lock favored (libsolv keeps a
favored package wherever the request allows, as dnf keeps an installed one), except the
named packages, which go to the newest version the repositories offer; what those now
require comes along. A pin that does not move keeps its lock entry byte for byte (its URL
and sha256), even if its repository now serves other bytes under the same name.

A recipe of several architectures updates each architecture's section of the lock from
its own repositories; a named package moves in every section that pins it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from smith.build import BuildResult
from smith.errors import ResolveError, UsageError
from smith.oci.writer import Layer
from smith.recipe import Recipe, load_recipe
from smith.resolve.fetch import Fetcher
from smith.resolve.lock import Lock, LockFile, lock_path_for, missing_section, read_lock_file
from smith.resolve.solver import ResolvedPackage, resolve_update
from smith.resolve.updateinfo import Advisory, advisories_fixed, repo_advisories
from smith.sources import pin_recipe, recipe_repos


@dataclass(frozen=True)
class Change:
    """One package whose pin moved: old or new is None when it was added or dropped."""

    name: str
    arch: str
    old: ResolvedPackage | None
    new: ResolvedPackage | None
    advisories: tuple[Advisory, ...]
    section: str = ""  # the lock section's architecture, named when the lock has several

    def describe(self) -> str:
        old = self.old.nevra if self.old else "(none)"
        new = self.new.nevra if self.new else "(dropped)"
        fixed = "".join(f"\n  fixes {a.describe()}" for a in self.advisories)
        where = f"{self.section}: " if self.section else ""
        return f"{where}{old} -> {new}{fixed}"


@dataclass(frozen=True)
class LockUpdate:
    path: Path
    old: LockFile
    new: LockFile
    changes: tuple[Change, ...]
    unoffered: tuple[str, ...]  # NEVRAs of pins kept for which no repository has the file


def update_lock(recipe_path: str, fetcher: Fetcher, names: Sequence[str]) -> LockUpdate:
    """The recipe's lock with `names` (all packages when empty) moved to their newest
    versions in each architecture's section; not written (the caller writes it)."""
    recipe = load_recipe(recipe_path)
    lock_path = lock_path_for(recipe_path)
    if not lock_path.exists():
        raise ResolveError(f"{recipe_path}: there is no smith.lock beside it (run `smith lock`)")
    old = read_lock_file(lock_path)
    sections = []
    for arch in recipe.architectures:
        section = old.section(arch)
        if section is None:
            raise ResolveError(missing_section(lock_path, arch))
        sections.append(section)
    locked_names = {p.name for s in sections for p in s.packages}
    unknown = sorted(set(names) - locked_names)
    if unknown:
        raise UsageError(f"{unknown[0]!r} is not a package of {lock_path}")
    new, changes, unoffered = old, list[Change](), list[str]()
    for section in sections:
        pinned = {p.name for p in section.packages}
        update = set(names) & pinned if names else pinned
        if not update:
            continue  # nothing named is pinned for this architecture: its section stays
        one = recipe
        if recipe.arches:
            one = recipe.model_copy(update={"arch": section.arch, "arches": ()})
        moved = update_section(one, recipe_path, fetcher, section, update)
        tag = section.arch if recipe.arches else ""
        changes += [replace(c, section=tag) for c in moved.changes]
        unoffered += moved.unoffered
        new = new.with_section(moved.new.sections[0])
    return LockUpdate(lock_path, old, new, tuple(changes), tuple(sorted(unoffered)))


def update_section(
    recipe: Recipe, recipe_path: str, fetcher: Fetcher, old: Lock, update: set[str]
) -> LockUpdate:
    """One architecture's section with the `update` pins moved (`path` is the lock's)."""
    requests, repos = recipe_repos(recipe, recipe_path, fetcher, updateinfo=True)
    resolution = resolve_update(
        requests,
        repos,
        old.packages,
        update,
        arch=recipe.arch,
        excludes=recipe.excludes,
        weak=recipe.weak,
    )
    before = {(p.name, p.arch): p for p in old.packages}
    kept = tuple(_unmoved(p, before) for p in resolution.packages)
    path, new = pin_recipe(recipe, recipe_path, fetcher, kept)
    changes = lock_changes(old, new, repo_advisories(repos))
    unoffered = tuple(sorted(p.nevra for p in resolution.unoffered))
    return LockUpdate(path, LockFile((old,)), LockFile((new,)), changes, unoffered)


def _unmoved(
    pkg: ResolvedPackage, before: dict[tuple[str, str], ResolvedPackage]
) -> ResolvedPackage:
    """The old lock entry when the package did not move, so its pin (URL, sha256) stays as
    it was, even when the same version now comes from another repository."""
    old = before.get((pkg.name, pkg.arch))
    return old if old is not None and old.evr == pkg.evr else pkg


def lock_changes(old: Lock, new: Lock, advisories: Sequence[Advisory]) -> tuple[Change, ...]:
    was = {(p.name, p.arch): p for p in old.packages}
    now = {(p.name, p.arch): p for p in new.packages}
    out = []
    for key in sorted(set(was) | set(now)):
        a, b = was.get(key), now.get(key)
        if a is not None and b is not None and (a.evr, a.repo_id) == (b.evr, b.repo_id):
            continue
        fixed = advisories_fixed(key[0], key[1], a.evr, b.evr, advisories) if a and b else ()
        out.append(Change(key[0], key[1], a, b, fixed))
    return tuple(out)


# -- what the next build changes -----------------------------------------------------------------


@dataclass(frozen=True)
class BuildChange:
    """How the image of the updated lock differs from the image of the old one.

    With `layers: single` the packages' files are one layer (over a parent's layers, which
    do not change), so any moved package that contributes a kept file changes it; with
    `layers: packages` only the layers of the moved packages change (smith.layering)."""

    layers: tuple[tuple[str, str], ...]  # (old digest, new digest) of every layer
    push_bytes: int  # the blobs of the new image that the old one does not have
    push_blobs: int

    def lines(self) -> list[str]:
        changed = [(a, b) for a, b in self.layers if a != b]
        out = [f"next build: {len(changed)} of {len(self.layers)} layers change"]
        out += [f"  layer {a[:19]}… -> {b[:19]}…" for a, b in changed]
        out.append(
            f"  a push to a registry that holds the old image sends {self.push_bytes} bytes "
            f"({self.push_blobs} blobs)"
        )
        return out


def compare_builds(before: BuildResult, after: BuildResult) -> BuildChange:
    old, new = before.image, after.image
    pairs = tuple(
        (a.descriptor.digest if a else "", b.descriptor.digest)
        for a, b in zip_longest_left(old.layers, new.layers)
    )
    had = {d.digest for d in (old.manifest, old.config, *(x.descriptor for x in old.layers))}
    blobs = {
        d.digest: d.size for d in (new.manifest, new.config, *(x.descriptor for x in new.layers))
    }
    sent = {d: size for d, size in blobs.items() if d not in had}
    return BuildChange(pairs, sum(sent.values()), len(sent))


def zip_longest_left(
    old: Sequence[Layer], new: Sequence[Layer]
) -> list[tuple[Layer | None, Layer]]:
    """Each new layer with the old layer at its place (None past the old image's end)."""
    return [(old[i] if i < len(old) else None, layer) for i, layer in enumerate(new)]
