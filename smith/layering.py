"""Layer planning: from the kept tree to an ordered list of layer trees.

`single` (the default) writes the image as one layer, as smith always did. `packages`
writes one layer per package, bottom of the dependency graph first (filesystem, glibc, ...),
and everything that is the application's own on top: rootfs/, the program's own package,
what smith adds (mount points, NSS files). An application change then touches only the top
layer, and a registry that has the lower layers is not sent them again.

A layer is a pure function of its content: it holds its owners' kept entries (and empty
directories) and, for each, the parent directories, written with fixed metadata (0755,
owned by the directory owner the conventions give every directory, the epoch's mtime as
every entry). Its bytes therefore depend on neither what else the image holds nor where
in the stack it sits,
so the glibc layer of two images is one blob. A hard-link group always sits in one layer
(the layer of its first name, the file that carries the bytes): a tar hard link names a
path of its own layer. Whiteouts are never needed: smith writes fresh images.

Past the budget (default 8 layers in all, at most 127: containerd's limit), the packages
highest in the order are merged into one layer below the top, so that the most shared
packages (the bottom of the graph) keep a layer of their own in every image.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from smith.errors import UsageError
from smith.layer_strategy import DEFAULT_BUDGET as DEFAULT_BUDGET
from smith.layer_strategy import MAX_LAYERS as MAX_LAYERS
from smith.layer_strategy import LayerStrategy as LayerStrategy
from smith.paths import parent_paths
from smith.tree import Entry, FileTree, Kind, path_sort_key

if TYPE_CHECKING:
    from smith.resolve.rpm import RpmPackage

TOP = "top"  # the name of the application's layer in a plan


@dataclass(frozen=True)
class Layering:
    """How an image is cut into layers: the strategy and the most layers it may have."""

    strategy: LayerStrategy = LayerStrategy.SINGLE
    budget: int = DEFAULT_BUDGET


def check_budget(budget: int, what: str = "--layer-budget") -> int:
    if budget < 1 or budget > MAX_LAYERS:
        raise UsageError(
            f"{what}: {budget} layers is out of range: 1 to {MAX_LAYERS} (containerd's limit)"
        )
    return budget


def parse_strategy(value: str, what: str = "--layers") -> LayerStrategy:
    try:
        return LayerStrategy(value)
    except ValueError:
        known = ", ".join(s.value for s in LayerStrategy)
        raise UsageError(f"{what}: {value!r} is no layering strategy ({known})") from None


def merged_layering(
    strategy: str | None, budget: int | None, recipe: Layering | None = None
) -> Layering:
    """The flags over the recipe's `layers:` over the default."""
    base = recipe or Layering()
    return Layering(
        parse_strategy(strategy) if strategy is not None else base.strategy,
        check_budget(budget) if budget is not None else base.budget,
    )


# -- the dependency order ------------------------------------------------------------------


@dataclass(frozen=True)
class PackageDeps:
    """What ordering needs of a package: its owner key (the `origin` its entries carry),
    the capabilities it requires and provides (its own name among them, as rpm adds it),
    and its files, root-relative (a requires of /bin/sh is met by the file)."""

    key: str
    requires: tuple[str, ...]
    provides: tuple[str, ...]
    files: tuple[str, ...] = ()


def dependency_order(packages: Iterable[PackageDeps]) -> tuple[str, ...]:
    """Package keys, bottom of the requires graph first.

    A package's level is one more than the highest level of what it requires (cycles, as
    glibc and glibc-common, share one level); keys are ordered by (level, key), so the order
    depends only on the packages and their headers, never on the resolution's order.
    """
    pkgs = sorted(packages, key=lambda p: p.key)
    providers: dict[str, set[str]] = {}
    for p in pkgs:
        for cap in (*p.provides, *("/" + f for f in p.files)):
            providers.setdefault(cap, set()).add(p.key)
    needs = {
        p.key: sorted({k for req in p.requires for k in providers.get(req, ()) if k != p.key})
        for p in pkgs
    }
    component = _components(needs)
    levels: dict[int, int] = {}

    def level(c: int) -> int:
        if c not in levels:
            levels[c] = 0  # a cycle's members only reach here through themselves
            below = {component[k] for m in members[c] for k in needs[m]} - {c}
            levels[c] = 1 + max((level(b) for b in sorted(below)), default=-1)
        return levels[c]

    members: dict[int, list[str]] = {}
    for key, c in component.items():
        members.setdefault(c, []).append(key)
    return tuple(sorted(needs, key=lambda k: (level(component[k]), k)))


def _components(graph: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """Strongly connected components (Tarjan, iterative): node -> component number."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: dict[str, int] = {}
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(graph[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            advanced = False
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(graph[nxt])))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                number = len(set(out.values()))
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    out[member] = number
                    if member == node:
                        break
    return out


# -- the plan ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedLayer:
    """One layer of a plan: the owners whose kept entries it holds (package keys, bottom
    first; `(TOP,)` for the application's layer) and its tree."""

    owners: tuple[str, ...]
    tree: FileTree = field(compare=False, repr=False)

    @property
    def top(self) -> bool:
        return self.owners == (TOP,)


@dataclass(frozen=True)
class LayerPlan:
    layers: tuple[PlannedLayer, ...]  # bottom first, the top layer last

    def trees(self) -> tuple[FileTree, ...]:
        return tuple(layer.tree for layer in self.layers)


def plan_layers(
    tree: FileTree,
    *,
    order: Sequence[str],
    owners: Mapping[str, str] | None = None,
    top: Collection[str] = (),
    budget: int = DEFAULT_BUDGET,
    directory_owner: tuple[int, int] = (0, 0),
) -> LayerPlan:
    """Cut `tree` into at most `budget` layers.

    `owners` maps a path to its package key (default: each entry's `origin`); `order` is
    the package keys bottom-up (dependency_order). A path whose owner is not in `order`, or
    is in `top` (the program's own package), goes to the top layer, which always exists.
    `directory_owner` is the (uid, gid) of parent directories the layer's packages do not
    ship themselves.
    """
    return LayerInputs(tuple(order), owners, tuple(top), directory_owner, budget).plan(tree)


@dataclass(frozen=True)
class Owned:
    """A tree's entries by the layer owner they go with: a package key, or TOP."""

    entries: Mapping[str, Sequence[Entry]]
    rank: Mapping[str, int]  # package key -> its place in the order, bottom first

    def packages(self) -> list[str]:
        """The packages with entries of their own, bottom first."""
        return sorted((k for k in self.entries if k != TOP), key=lambda k: self.rank[k])


def owned_entries(tree: FileTree, inputs: LayerInputs) -> Owned:
    """Which layer owner each entry of `tree` goes with (a package key, or TOP)."""
    owners, uid, gid = inputs.owners, *inputs.directory_owner
    top_set = set(inputs.top)
    ranked = [key for key in dict.fromkeys(inputs.order) if key not in top_set]
    rank = {key: i for i, key in enumerate(ranked)}

    def owner(entry: Entry) -> str:
        if entry.kind is Kind.HARDLINK:  # the group stays with the file carrying its bytes
            first = tree.get(entry.target)
            if first is not None:
                entry = first
        key = owners.get(entry.path, "") if owners is not None else entry.origin
        return key if key in rank else TOP

    by_owner: dict[str, list[Entry]] = {}
    for entry in tree:
        key = owner(entry)
        if entry.kind is Kind.DIR and tree.child_paths(entry.path):
            # A directory with kept entries below is written, with the fixed metadata, by
            # every layer that needs it: which package shipped it last must not decide a
            # layer's bytes. One whose metadata differs goes on top, applied last, so the
            # image's filesystem is the one a single layer gives.
            if (entry.mode, entry.uid, entry.gid) == (0o755, uid, gid):
                continue
            key = TOP
        by_owner.setdefault(key, []).append(entry)
    return Owned(by_owner, rank)


def budget_groups(packaged: Sequence[str], budget: int) -> list[tuple[str, ...]]:
    """The package layers under the top one: one each while the budget allows, then the
    highest packages merged into the last layer below the top."""
    room = budget - 1
    if room <= 0:
        return []  # budget 1: everything in the top layer
    if len(packaged) <= room:
        return [(key,) for key in packaged]
    return [*((key,) for key in packaged[: room - 1]), tuple(packaged[room - 1 :])]


def layer_tree(
    by_owner: Mapping[str, Sequence[Entry]],
    group: Sequence[str],
    directory_owner: tuple[int, int],
) -> FileTree:
    """The layer of `group`'s entries, with every parent directory written (0755, owned by
    `directory_owner`) where no entry of the group is that directory."""
    out = FileTree()
    entries = [e for key in group for e in by_owner.get(key, ())]
    for entry in sorted(entries, key=lambda e: path_sort_key(e.path)):
        out.add(entry)
    uid, gid = directory_owner
    for entry in list(out):
        for parent in parent_paths(entry.path):
            if parent not in out:
                out.add(Entry(parent, Kind.DIR, 0o755, uid, gid))
    return out


@dataclass(frozen=True)
class LayerInputs:
    """What cuts one image's tree into layers, apart from the tree (plan_layers')."""

    order: tuple[str, ...]
    owners: Mapping[str, str] | None = None
    top: tuple[str, ...] = ()
    directory_owner: tuple[int, int] = (0, 0)
    budget: int = DEFAULT_BUDGET

    def owned(self, tree: FileTree) -> Owned:
        return owned_entries(tree, self)

    def plan(self, tree: FileTree) -> LayerPlan:
        """Cut `tree` into at most `budget` layers (plan_layers)."""
        check_budget(self.budget, "layers: budget")
        owned = self.owned(tree)
        packaged = owned.packages()
        groups = budget_groups(packaged, self.budget)
        layers = [
            PlannedLayer(group, layer_tree(owned.entries, group, self.directory_owner))
            for group in groups
        ]
        # With a budget of 1 no package has a layer of its own: all is the top layer.
        rest = (TOP, *(k for k in packaged if not any(k in g for g in groups)))
        layers.append(PlannedLayer((TOP,), layer_tree(owned.entries, rest, self.directory_owner)))
        return LayerPlan(tuple(layers))


def layer_inputs(
    layering: Layering, inputs: LayerInputs, parent_layers: int = 0
) -> LayerInputs | None:
    """`inputs` with the budget `layering` gives, or None for one layer (`single`: the
    writer's own). Over a parent image, the budget shrinks so that the whole stays within
    127 layers."""
    if layering.strategy is LayerStrategy.SINGLE:
        return None
    budget = min(layering.budget, MAX_LAYERS - parent_layers)
    if budget < 1:
        raise UsageError(
            f"the parent image has {parent_layers} layers: no room for one more "
            f"({MAX_LAYERS} is containerd's limit)"
        )
    return replace(inputs, budget=budget)


def image_plan(
    tree: FileTree,
    layering: Layering,
    *,
    order: Sequence[str],
    owners: Mapping[str, str] | None = None,
    top: Collection[str] = (),
    directory_owner: tuple[int, int] = (0, 0),
    parent_layers: int = 0,
) -> LayerPlan | None:
    """The plan `layering` asks for, or None for one layer (`single`: the writer's own)."""
    where = LayerInputs(tuple(order), owners, tuple(top), directory_owner)
    inputs = layer_inputs(layering, where, parent_layers)
    return None if inputs is None else inputs.plan(tree)


def rpm_deps(package: RpmPackage) -> PackageDeps:
    """An RPM's dependencies as ordering sees them (its name is among its provides)."""
    return PackageDeps(
        package.nevra,
        tuple(d.name for d in package.requires),
        (package.name, *(d.name for d in package.provides)),
        tuple(f.path.lstrip("/") for f in package.files),
    )
