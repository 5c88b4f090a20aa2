"""`smith build R1 R2 ... --share-layers`: the planner (every image whole, the budget, the
order of the members), and fleet builds of the example recipes: one glibc blob where the
images keep different files of glibc, the images run, the extra paths named, the golden."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smith.build import BuildResult
from smith.build_options import BuildOptions
from smith.fleet import build_fleet
from smith.layering import TOP, LayerInputs
from smith.sharing import Member, same_entry, share_layers
from smith.tree import Entry, FileTree, InlineBytes, Kind
from tests.containers import configure_bundle, run_bundle, unpack_bundle
from tests.golden_layered import SHARED_FLEET, load_golden, load_shared_golden, shared_records
from tests.golden_recipes import recipe_copy
from tests.rpm_universe import Universe

# -- the planner ---------------------------------------------------------------------------

PACKAGES = tuple(f"p{i}-1-1.x86_64" for i in range(6))
OWNER = (10, 10)


def package_file(i: int, j: int) -> str:
    return f"usr/lib/p{i}/d{j % 2}/f{j}"


def member(
    name: str,
    kept: Mapping[int, Iterable[int]],
    *,
    budget: int = 8,
    link: int | None = None,
    clash: int | None = None,
) -> Member:
    """An image keeping files `kept[i]` of package i (and its own app). `link`: a package
    whose odd files' directory the image has as a symlink of its own (rootfs/); `clash`:
    a package whose file 0 the image has from the next package, with other bytes."""
    tree = FileTree()
    for i, files in kept.items():
        for j in files:
            if (i == link and j % 2) or (i == clash and j == 0):
                continue
            data = f"p{i} file {j}".encode()
            add(tree, package_file(i, j), data, 0o644, PACKAGES[i])
    if link is not None:
        path = package_file(link, 1).rsplit("/", 1)[0]
        tree.add(Entry(path, Kind.SYMLINK, 0o777, *OWNER, target="../app", origin="rootfs/"))
    if clash is not None:
        other = PACKAGES[(clash + 1) % len(PACKAGES)]
        add(tree, package_file(clash, 0), b"other", 0o644, other)
    add(tree, f"app/{name}", name.encode(), 0o755, "rootfs/")
    for path in sorted({p for e in tree for p in parents(e.path)}):
        if path not in tree:
            tree.add(Entry(path, Kind.DIR, 0o755, *OWNER))
    return Member(name, tree, LayerInputs(PACKAGES, directory_owner=OWNER, budget=budget))


def add(tree: FileTree, path: str, data: bytes, mode: int, origin: str) -> None:
    tree.add_file(path, InlineBytes(data), mode, uid=OWNER[0], gid=OWNER[1], origin=origin)


def parents(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def applied(trees: Iterable[FileTree]) -> dict[str, Entry]:
    """The layers applied in order, as a runtime does: a later entry replaces an earlier
    one; a non-directory over a directory removes what was below it."""
    merged: dict[str, Entry] = {}
    for tree in trees:
        for entry in tree:
            for parent in parents(entry.path):
                assert merged[parent].kind is Kind.DIR, (entry.path, parent)
            old = merged.get(entry.path)
            if old is not None and old.kind is Kind.DIR and entry.kind is not Kind.DIR:
                for below in [p for p in merged if p.startswith(entry.path + "/")]:
                    del merged[below]
            merged[entry.path] = entry
    return merged


def check_whole(members: list[Member]) -> None:
    """Each image gets all of its own tree, within its budget; what it gets beyond is
    reported as extra, naming images that keep it."""
    plans = share_layers(members)
    trees = {m.name: m.tree for m in members}
    for m in members:
        plan = plans[m.name]
        assert 1 <= len(plan.plan.layers) <= m.inputs.budget
        assert plan.plan.layers[-1].owners == (TOP,)
        merged = applied(plan.plan.trees())
        for entry in m.tree:
            assert same_entry(merged[entry.path], entry), entry.path
        extra = {x.path: x for x in plan.extra}
        assert set(extra) == {p for p in merged if p not in m.tree}
        for x in extra.values():
            assert x.needed_by and m.name not in x.needed_by
            assert all(x.path in trees[other] for other in x.needed_by)
    # The command line's order decides nothing.
    again = share_layers(list(reversed(members)))
    assert {n: fields(p) for n, p in again.items()} == {n: fields(p) for n, p in plans.items()}


def fields(plan: object) -> list[list[tuple[object, ...]]]:
    return [
        [(e.path, e.kind, e.mode, e.uid, e.gid, e.target, e.content) for e in layer.tree]
        for layer in plan.plan.layers  # type: ignore[attr-defined]
    ]


def test_a_package_two_images_keep_is_one_layer_of_their_union() -> None:
    a = member("a", {0: [0], 1: [0, 1]})
    b = member("b", {0: [0], 1: [1, 2]})
    plans = share_layers([a, b])
    layers = {n: {p.owners: p.tree for p in plans[n].plan.layers} for n in ("a", "b")}
    key = (PACKAGES[1],)
    assert fields(plans["a"])[1] == fields(plans["b"])[1]
    assert {e.path for e in layers["a"][key] if e.kind is Kind.FILE} == {
        package_file(1, j) for j in (0, 1, 2)
    }
    assert [(x.path, x.package, x.needed_by) for x in plans["a"].extra] == [
        ("usr/lib/p1/d0/f2", PACKAGES[1], ("b",))
    ]
    check_whole([a, b])


@pytest.mark.parametrize("odd", ["link", "clash"])
def test_an_image_whose_tree_disagrees_keeps_its_own_layer(odd: str) -> None:
    # c has p1's d1 as a symlink of its own (the union's directory would replace it), or
    # p1's f0 from another package with other bytes: it keeps its own layer of p1.
    a, b = member("a", {1: [0, 1]}), member("b", {1: [1, 2, 3]})
    c = member("c", {1: [0, 2], 2: [0]}, **{odd: 1})
    plans = share_layers([a, b, c])
    shared = {layer.owners: layer.tree for layer in plans["a"].plan.layers}[(PACKAGES[1],)]
    assert package_file(1, 1) in shared and package_file(1, 3) in shared
    assert all(package_file(1, 3) not in layer.tree for layer in plans["c"].plan.layers)
    check_whole([a, b, c])


def test_images_of_other_owners_share_among_themselves() -> None:
    a, b = member("a", {0: [0]}), member("b", {0: [1]})
    root = Member("root", b.tree, LayerInputs(PACKAGES, directory_owner=(0, 0)))
    assert share_layers([a, root])["a"].extra == ()
    plans = share_layers([a, b, root, Member("root2", a.tree, root.inputs)])
    # Each pair shares p0 (b's file 1 and its directory d1: extras of a and of root2).
    assert {x.needed_by for x in plans["a"].extra} == {("b",)}
    assert {x.needed_by for x in plans["root"].extra} == {("root2",)}
    assert [x.path for x in plans["a"].extra] == [x.path for x in plans["root2"].extra]


@pytest.mark.parametrize("budget", [1, 2, 3, 8])
def test_many_shared_packages_stay_within_each_budget(budget: int) -> None:
    members = [
        member("a", {i: [0] for i in range(6)}, budget=budget),
        member("b", {i: [1] for i in range(6)}, budget=budget),
        member("c", {i: [0] for i in range(0, 6, 2)}, budget=budget),
    ]
    check_whole(members)


@st.composite
def fleets(draw: st.DrawFn) -> list[Member]:
    count = draw(st.integers(2, 4))
    out = []
    for n in range(count):
        kept = draw(
            st.dictionaries(st.integers(0, 5), st.sets(st.integers(0, 3), max_size=4), max_size=6)
        )
        link = draw(st.one_of(st.none(), st.integers(0, 5)))
        clash = draw(st.one_of(st.none(), st.integers(0, 5)))
        budget = draw(st.integers(1, 6))
        out.append(member(f"m{n}", kept, budget=budget, link=link, clash=clash))
    return out


@settings(max_examples=60)
@given(members=fleets())
def test_every_image_stays_whole_in_any_fleet(members: list[Member]) -> None:
    check_whole(members)


# -- fleet builds of the example recipes ---------------------------------------------------


@pytest.fixture(scope="module")
def shared_fleet(
    frozen_universe: Universe, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, BuildResult]]:
    """hello, tinyhttpd and curl built with --share-layers from the frozen universe."""
    work = tmp_path_factory.mktemp("shared")
    repo = str(frozen_universe.root / "repos" / "main")
    recipes = [str(recipe_copy(n, work / "recipes", repo)) for n in SHARED_FLEET]
    options = BuildOptions(
        output=str(work / "out"), cache_dir=str(work / "cache"), share_layers=True
    )
    fleet = build_fleet(recipes, options)
    fleet.check()
    results = {Path(r).parent.name: res for r, res in fleet.built}
    assert sorted(results) == sorted(SHARED_FLEET)
    assert all(isinstance(r, BuildResult) for r in results.values())
    return work, results  # type: ignore[return-value]


def layer_names(output: str) -> list[tuple[str, list[str]]]:
    """(digest, names) of each layer of an OCI layout, bottom first."""
    root = Path(output)
    index = json.loads((root / "index.json").read_text())
    blob = root / "blobs" / "sha256"
    manifest = json.loads((blob / index["manifests"][0]["digest"].split(":")[1]).read_text())
    out = []
    for layer in manifest["layers"]:
        with tarfile.open(blob / layer["digest"].split(":")[1]) as tar:
            out.append((layer["digest"], tar.getnames()))
    return out


def test_a_fleet_shares_one_glibc_layer_of_the_union(
    shared_fleet: tuple[Path, dict[str, BuildResult]],
) -> None:
    _, results = shared_fleet
    glibc = {}
    for name, result in results.items():
        layers = layer_names(result.output)
        got = {n for _, names in layers for n in names}
        # Each image holds every path of its own (its closure and conventions).
        assert set(result.kept) <= got | {""}, name
        glibc[name] = next(
            d for d, names in layers if "usr/lib/x86_64-linux-gnu/libc.so.6" in names
        )
        # What it holds beyond is the extra the report names, each with who needed it.
        extra = {x.path: x for x in result.extra}
        assert {n.rstrip("/") for n in got} - set(result.kept) == set(extra), name
    assert len(set(glibc.values())) == 1  # one blob, though the three keep different files
    # curl's libresolv is in hello's image only because curl needs it, and says so.
    hello = {x.path: x for x in results["hello"].extra}
    assert hello["usr/lib/x86_64-linux-gnu/libresolv.so.2"].needed_by == ("curl",)
    assert hello["usr/lib/x86_64-linux-gnu/libresolv.so.2"].package.startswith("glibc-")
    # --json says the same, per image.
    doc = json.loads(json.dumps(results["hello"].summary()))
    assert doc["extra"]["/usr/lib/x86_64-linux-gnu/libresolv.so.2"] == {
        "package": "glibc-1.0-1.x86_64",
        "needed_by": ["curl"],
    }


def test_the_shared_fleet_matches_its_golden_in_any_order(
    shared_fleet: tuple[Path, dict[str, BuildResult]], frozen_universe: Universe
) -> None:
    work, results = shared_fleet
    golden = load_shared_golden()
    assert {n: record(r) for n, r in results.items()} == golden
    # The same recipes the other way round on the command line: the same bytes.
    repo = str(frozen_universe.root / "repos" / "main")
    assert shared_records(work / "reversed", repo, reverse=True) == golden


def test_a_fleet_of_one_is_the_packages_build(
    shared_fleet: tuple[Path, dict[str, BuildResult]], tmp_path: Path
) -> None:
    work, _ = shared_fleet
    options = BuildOptions(
        output=str(tmp_path / "out"), cache_dir=str(work / "cache"), share_layers=True
    )
    [(_, alone)] = build_fleet([str(work / "recipes" / "hello")], options).built
    assert isinstance(alone, BuildResult) and alone.extra == ()
    assert record(alone) == load_golden()["hello"]  # tests/golden/layered.json


def record(result: BuildResult) -> dict[str, object]:
    return {
        "manifest": result.image.manifest.digest,
        "layers": [layer.descriptor.digest for layer in result.image.layers],
    }


@pytest.mark.parametrize(("name", "args", "expect"), [
    ("hello", [], "hello"),
    ("curl", ["/usr/bin/curl", "--version"], "curl"),
])  # fmt: skip
def test_shared_images_run_under_runc(
    shared_fleet: tuple[Path, dict[str, BuildResult]],
    tmp_path: Path,
    name: str,
    args: list[str],
    expect: str,
) -> None:
    _, results = shared_fleet
    bundle = unpack_bundle(f"{results[name].output}:latest", tmp_path / "bundle")
    configure_bundle(bundle, args=args or None, readonly=True)
    result = run_bundle("runc", bundle)
    assert result.returncode == 0, result.stderr
    assert expect in result.stdout.lower()


def test_explain_names_the_image_that_needed_an_extra_path(
    shared_fleet: tuple[Path, dict[str, BuildResult]], tmp_path: Path
) -> None:
    work, _ = shared_fleet
    recipes = [str(work / "recipes" / n) for n in ("hello", "curl")]
    proc = subprocess.run(
        [sys.executable, "-m", "smith", "build", *recipes, "-o", str(tmp_path / "out"),
         "--share-layers", "--explain", "--cache-dir", str(work / "cache")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    line = f"{recipes[0]}/smith.yaml\t/usr/lib/x86_64-linux-gnu/libresolv.so.2\t"
    assert any(
        row.startswith(line) and row.endswith("extra: needed by curl")
        for row in proc.stdout.splitlines()
    ), proc.stdout


@pytest.mark.parametrize(("args", "error"), [
    (["--layers", "single"], "--share-layers shares package layers: it needs --layers packages"),
    (["--cache-to", "127.0.0.1:1/cache:x"], "--share-layers: a registry cache"),
])  # fmt: skip
def test_share_layers_refuses_what_it_cannot_keep(
    shared_fleet: tuple[Path, dict[str, BuildResult]], tmp_path: Path, args: list[str], error: str
) -> None:
    work, _ = shared_fleet
    proc = subprocess.run(
        [sys.executable, "-m", "smith", "build", str(work / "recipes" / "hello"),
         str(work / "recipes" / "curl"), "-o", str(tmp_path / "out"), "--share-layers", *args],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith(f"smith: error: {error}"), proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "out").exists()
