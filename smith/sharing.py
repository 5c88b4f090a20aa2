"""`smith build R1 R2 ... --share-layers`: one layer per package that images of a fleet share.

With `--layers packages` alone, the glibc layer of two images is one blob only when both
keep the same files of glibc. Sharing makes it one blob whenever they keep any: a package
kept by two or more images of the run (the members of its layer) gets one layer holding
the *union* of what each member keeps of it, so each member's registry stores and pulls it
once. What a member did not need but gets because another did is the cost; it is reported
per path, with the images that needed it (`ExtraPath`, `--explain`, `--json`).

A shared layer is still a pure function of its content (the same union of kept files of
the same package gives the same bytes: `layering.layer_tree`), and the plan depends only
on the set of images, never on their order on the command line: members are taken in
name order, packages in a fleet-wide order made from each image's own dependency order.

What keeps each image whole: a package is shared only by images whose layers would have
the same bytes (the same directory owner, epoch and compressor: `Member.context`; images
of another context share a layer of their own) and that keep its files with the same
metadata; a member whose own tree is at odds with a path of
the union (a symlink where the union has a directory below it, a file of another package
that differs, a directory where the union has a file) does not take the shared layer and
keeps its own files of the package in a layer of its own. Every other overlap between an
image's layers is an identical entry, so the order of the layers under the top changes
nothing of the filesystem the image's own tree describes; the top layer (the
application's files, applied last) wins where it differs.

The budget (every layer counted, as `packages` does) is kept per image: when an image has
too many layers, the two smallest shared layers with the same members become one (no new
extra files; a change to one of their packages sends little, and glibc keeps a layer of
its own); when no two have the same members, the image leaves its smallest shared layer
and keeps those files itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from smith.layering import (
    TOP,
    LayerInputs,
    LayerPlan,
    Owned,
    PlannedLayer,
    budget_groups,
    layer_tree,
)
from smith.paths import parent_paths
from smith.tree import Entry, FileTree, Kind, content_digest


@dataclass(frozen=True)
class Member:
    """One image of the fleet, as sharing sees it."""

    name: str  # the recipe's name: what the report says needed an extra path
    tree: FileTree = field(repr=False)  # the image's kept tree, conventions applied
    inputs: LayerInputs = field(repr=False)
    # What else decides a layer's bytes beside its tree (the epoch, the compressor): only
    # images that agree on it can share a blob.
    context: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExtraPath:
    """A path an image holds only because another image of the fleet needed it."""

    path: str
    package: str  # the package of the shared layer that brings it ("" for a directory)
    needed_by: tuple[str, ...]  # the members that keep it, by name


@dataclass(frozen=True)
class SharedImage:
    plan: LayerPlan
    extra: tuple[ExtraPath, ...]


@dataclass
class _Unit:
    """A shared layer being planned: its packages (fleet order) and members (by name)."""

    packages: list[str]
    members: list[str]


def share_layers(members: Sequence[Member]) -> dict[str, SharedImage]:
    """Every member's layer plan, packages two or more members keep shared between them."""
    by_name = {m.name: m for m in members}
    if len(by_name) != len(members):
        raise ValueError("members of a fleet need distinct names")
    names = sorted(by_name)
    owned = {n: by_name[n].inputs.owned(by_name[n].tree) for n in names}
    order = fleet_order(names, owned)
    units = [
        _Unit([package], group)
        for package in order
        for group in sharers(package, names, by_name, owned)
    ]
    fit_budgets(names, by_name, owned, units, order)
    return {n: image_plan_of(by_name[n], owned, by_name, units) for n in names}


def fleet_order(names: Sequence[str], owned: Mapping[str, Owned]) -> list[str]:
    """Every package of the fleet, bottom first: by the lowest place any image's own order
    gives it (as a fraction of that order), then by key."""
    place: dict[str, float] = {}
    for name in names:
        packages = owned[name].packages()
        for i, key in enumerate(packages):
            place[key] = min(place.get(key, 1.0), i / len(packages))
    return sorted(place, key=lambda key: (place[key], key))


def sharers(
    package: str,
    names: Sequence[str],
    by_name: Mapping[str, Member],
    owned: Mapping[str, Owned],
) -> list[list[str]]:
    """The groups of members that can share one layer of `package` each: the images
    keeping it, by context (one layer's bytes), of those the ones whose trees agree with
    the union; groups of two or more, by their first name."""
    contexts: dict[tuple[object, ...], list[str]] = {}
    for n in names:
        if package in owned[n].entries:
            member = by_name[n]
            contexts.setdefault((member.inputs.directory_owner, member.context), []).append(n)
    groups = []
    for group in sorted(contexts.values()):
        union = union_entries([package], group, owned) if len(group) >= 2 else None
        if union is None:
            continue  # alone, or keeping different files at one path: no one layer holds both
        fits = [n for n in group if fits_member(by_name[n], owned[n], union)]
        if len(fits) >= 2:
            groups.append(fits)
    return groups


def union_entries(
    packages: Sequence[str], members: Sequence[str], owned: Mapping[str, Owned]
) -> dict[str, tuple[Entry, str]] | None:
    """path -> (entry, package) of what `members` keep of `packages`; None if two members
    keep one path differently."""
    union: dict[str, tuple[Entry, str]] = {}
    for package in packages:
        for name in members:
            for entry in owned[name].entries.get(package, ()):
                seen = union.get(entry.path)
                if seen is None:
                    union[entry.path] = (entry, package)
                elif not same_entry(seen[0], entry):
                    return None
    return union


def same_entry(a: Entry, b: Entry) -> bool:
    """The same file in a layer, whichever package or image it came from."""
    if (a.kind, a.mode, a.uid, a.gid, a.size, a.target) != (
        b.kind,
        b.mode,
        b.uid,
        b.gid,
        b.size,
        b.target,
    ):
        return False
    if a.kind is not Kind.FILE or a.content is b.content:
        return True
    if a.content is None or b.content is None:
        return False
    return content_digest(a.content) == content_digest(b.content)


def fits_member(member: Member, owned: Owned, union: Mapping[str, tuple[Entry, str]]) -> bool:
    """Whether the member's image stays whole with every path of the union laid in it."""
    tree = member.tree
    top = {e.path for e in owned.entries.get(TOP, ())}
    for path, (entry, _) in union.items():
        for parent in parent_paths(path):
            mine = tree.get(parent)
            if mine is not None and mine.kind is not Kind.DIR:
                return False  # the union would put a directory where the image has none
        mine = tree.get(path)
        if mine is None:
            if tree.is_directory(path) and entry.kind is not Kind.DIR:
                return False  # an implicit directory of the image, a file in the union
            continue
        if same_entry(mine, entry):
            continue
        # Only the top layer, applied after every shared one, may differ; and not from a
        # directory to a file or back (a file over a directory removes what is below it).
        if path not in top or (mine.kind is Kind.DIR) != (entry.kind is Kind.DIR):
            return False
    return True


# -- the budget ----------------------------------------------------------------------------


def layer_count(member: Member, owned: Owned, units: Sequence[_Unit]) -> int:
    """The layers `member` has with these shared layers: theirs, one for its own packages
    (merged if need be; in the top one with a budget of 1), the top."""
    shared = [u for u in units if member.name in u.members]
    in_shared = {p for u in shared for p in u.packages}
    private = any(p not in in_shared for p in owned.packages())
    return len(shared) + (1 if private and member.inputs.budget > 1 else 0) + 1


def fit_budgets(
    names: Sequence[str],
    by_name: Mapping[str, Member],
    owned: Mapping[str, Owned],
    units: list[_Unit],
    order: Sequence[str],
) -> None:
    """Merge or leave shared layers until every member is within its budget."""
    place = {key: i for i, key in enumerate(order)}

    def size(unit: _Unit) -> int:
        """The bytes of the unit's files: what a change to one of its packages sends."""
        union = union_entries(unit.packages, unit.members, owned)
        return sum(entry.size for entry, _ in (union or {}).values())

    while True:
        over = [
            n for n in names if layer_count(by_name[n], owned[n], units) > by_name[n].inputs.budget
        ]
        if not over:
            return
        name = over[0]
        mine = sorted((u for u in units if name in u.members), key=lambda u: place[u.packages[0]])
        if by_name[name].inputs.budget == 1:
            leave = mine  # a budget of 1: everything is the top layer
        else:
            same: dict[tuple[str, ...], list[_Unit]] = {}
            for unit in sorted(mine, key=lambda u: (size(u), place[u.packages[0]])):
                same.setdefault(tuple(unit.members), []).append(unit)
            pairs = [g[:2] for g in same.values() if len(g) >= 2]
            if pairs:
                # The two smallest layers of one set of members become one (no new extra
                # paths): a change to one of their packages then sends little, and the big
                # ones (glibc) keep a layer of their own. Ties: bottom first.
                low, high = min(
                    pairs, key=lambda p: (size(p[0]) + size(p[1]), place[p[0].packages[0]])
                )
                low.packages = sorted({*low.packages, *high.packages}, key=place.__getitem__)
                units.remove(high)
                continue
            # Else the image keeps the smallest of its shared layers' packages itself.
            leave = [min(mine, key=lambda u: (size(u), place[u.packages[0]]))]
        for unit in leave:
            unit.members.remove(name)
            if len(unit.members) < 2:
                units.remove(unit)


# -- each image's plan ---------------------------------------------------------------------


def image_plan_of(
    member: Member,
    owned: Mapping[str, Owned],
    by_name: Mapping[str, Member],
    units: Sequence[_Unit],
) -> SharedImage:
    """The member's layers: its shared ones and its own packages' (by its own order,
    within its budget), then the top; and the paths it has only for the others."""
    inputs, tree, mine = member.inputs, member.tree, owned[member.name]
    shared = [u for u in units if member.name in u.members]
    in_shared = {p for u in shared for p in u.packages}
    private = [p for p in mine.packages() if p not in in_shared]
    room = inputs.budget - 1 - len(shared)
    groups = budget_groups(private, room + 1) if private else []
    lower: list[tuple[int, PlannedLayer]] = []
    extra: dict[str, ExtraPath] = {}
    for unit in shared:
        union = union_entries(unit.packages, unit.members, owned)
        assert union is not None  # checked when the layer was made shared
        entries = {p: [e for e, k in union.values() if k == p] for p in unit.packages}
        layer = layer_tree(entries, unit.packages, inputs.directory_owner)
        bottom = min(mine.rank[p] for p in unit.packages)
        lower.append((bottom, PlannedLayer(tuple(unit.packages), layer)))
        for entry in layer:
            if not has_path(tree, entry.path):
                needing = tuple(
                    m
                    for m in unit.members
                    if m != member.name and has_path(by_name[m].tree, entry.path)
                )
                package = union[entry.path][1] if entry.path in union else ""
                extra[entry.path] = ExtraPath(entry.path, package, needing)
    for group in groups:
        layer = layer_tree(mine.entries, group, inputs.directory_owner)
        lower.append((mine.rank[group[0]], PlannedLayer(group, layer)))
    lower.sort(key=lambda item: item[0])
    placed = {p for g in groups for p in g}
    rest = (TOP, *(p for p in private if p not in placed))
    top = PlannedLayer((TOP,), layer_tree(mine.entries, rest, inputs.directory_owner))
    plan = LayerPlan((*(layer for _, layer in lower), top))
    return SharedImage(plan, tuple(extra[p] for p in sorted(extra)))


def has_path(tree: FileTree, path: str) -> bool:
    return path in tree or tree.is_directory(path)
