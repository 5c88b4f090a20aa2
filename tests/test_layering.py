"""`--layers packages`: the plan (order, budget, hard links, purity), layered builds of the
example recipes against tests/golden/layered.json, and the tools that read the result."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smith.build import BuildOptions, build
from smith.errors import UsageError
from smith.layering import (
    MAX_LAYERS,
    Layering,
    LayerStrategy,
    PackageDeps,
    check_budget,
    dependency_order,
    image_plan,
    plan_layers,
)
from smith.minimize import MinimizeOptions, minimize_image
from smith.oci.blobs import BlobStore
from smith.oci.compress import Compression
from smith.oci.writer import write_layer
from smith.paths import parent_paths
from smith.tree import FileTree, InlineBytes, Kind
from tests.containers import DockerDaemon, configure_bundle, run_bundle, unpack_bundle
from tests.golden_layered import layered_record, load_golden
from tests.rpm_universe import Universe
from tests.tools import require_tool

# -- the plan ------------------------------------------------------------------------------


def test_dependency_order_is_bottom_up_and_ignores_input_order() -> None:
    packages = [
        PackageDeps("app-1-1.x86_64", ("libfoo.so.1", "/bin/sh"), ("app",)),
        PackageDeps("bash-5-1.x86_64", ("libc.so.6",), ("bash",), ("usr/bin/bash", "bin/sh")),
        PackageDeps("glibc-2-1.x86_64", ("filesystem", "glibc-common"), ("glibc", "libc.so.6")),
        PackageDeps("glibc-common-2-1.x86_64", ("glibc",), ("glibc-common",)),  # a cycle
        PackageDeps("filesystem-3-1.x86_64", (), ("filesystem",)),
        PackageDeps("foo-1-1.x86_64", ("libc.so.6",), ("foo", "libfoo.so.1")),
    ]
    order = dependency_order(packages)
    assert order == dependency_order(reversed(packages))
    assert order == (
        "filesystem-3-1.x86_64",
        "glibc-2-1.x86_64",
        "glibc-common-2-1.x86_64",
        "bash-5-1.x86_64",
        "foo-1-1.x86_64",
        "app-1-1.x86_64",
    )


def package_tree(count: int) -> tuple[FileTree, tuple[str, ...]]:
    tree = FileTree()
    keys = tuple(f"p{i:03d}-1-1.x86_64" for i in range(count))
    for key in keys:
        tree.add_file(f"usr/lib/{key}.so", InlineBytes(key.encode()), origin=key)
    tree.add_file("app/main", InlineBytes(b"app"), 0o755, origin="rootfs/")
    return tree, keys


@pytest.mark.parametrize("budget", [1, 2, 8, 126, MAX_LAYERS])
def test_200_packages_stay_within_the_budget(budget: int) -> None:
    tree, keys = package_tree(200)
    plan = plan_layers(tree, order=keys, budget=budget)
    assert len(plan.layers) <= budget <= MAX_LAYERS
    assert plan.layers[-1].top and "app/main" in plan.layers[-1].tree
    # Every path is in exactly one layer (parents apart); the bottom packages alone.
    files = [e.path for layer in plan.layers for e in layer.tree if e.kind is Kind.FILE]
    assert sorted(files) == sorted(e.path for e in tree if e.kind is Kind.FILE)
    if budget > 2:
        assert plan.layers[0].owners == (keys[0],)
        assert plan.layers[-2].owners == keys[budget - 2 :]


@pytest.mark.parametrize("budget", [0, -1, MAX_LAYERS + 1])
def test_a_budget_out_of_range_is_refused(budget: int) -> None:
    with pytest.raises(UsageError, match=f"{budget} layers is out of range: 1 to 127"):
        check_budget(budget)


def test_a_hard_link_group_stays_in_one_layer() -> None:
    tree = FileTree()
    tree.add_file("usr/bin/a", InlineBytes(b"x"), 0o755, origin="pkg-a")
    tree.add_hardlink("usr/bin/b", "usr/bin/a", origin="pkg-b")
    tree.add_file("usr/bin/c", InlineBytes(b"y"), origin="pkg-b")
    plan = plan_layers(tree, order=("pkg-a", "pkg-b"))
    by_owner = {layer.owners: layer.tree for layer in plan.layers}
    assert {e.path for e in by_owner[("pkg-a",)] if e.kind is not Kind.DIR} == {
        "usr/bin/a",
        "usr/bin/b",
    }
    assert "usr/bin/b" not in by_owner[("pkg-b",)]


def layer_digest(tree: FileTree, tmp_path: Path) -> str:
    store = BlobStore(str(tmp_path / "store"))
    return write_layer(tree, store, Compression.GZIP, 0).descriptor.digest


def test_a_layer_is_a_function_of_its_own_content(tmp_path: Path) -> None:
    # The same package's kept files in two images that hold different things elsewhere,
    # and other directory metadata from other packages, give one layer.
    small, big = FileTree(), FileTree()
    for tree in (small, big):
        tree.add_dir("usr", 0o755, uid=10, gid=10, origin="filesystem")
        tree.add_file(
            "usr/lib64/libc.so.6", InlineBytes(b"libc"), 0o755, uid=10, gid=10, origin="glibc"
        )
    big.add_dir("usr/lib64", 0o755, uid=10, gid=10, origin="other")
    big.add_file("usr/lib64/libz.so.1", InlineBytes(b"z"), uid=10, gid=10, origin="zlib")
    big.add_file("srv/app", InlineBytes(b"app"), origin="rootfs/")
    plans = [
        plan_layers(t, order=("filesystem", "glibc", "zlib"), directory_owner=(10, 10))
        for t in (small, big)
    ]
    glibc = [
        next(layer.tree for layer in plan.layers if layer.owners == ("glibc",)) for plan in plans
    ]
    assert layer_digest(glibc[0], tmp_path) == layer_digest(glibc[1], tmp_path)
    assert [e.path for e in glibc[0]] == ["usr", "usr/lib64", "usr/lib64/libc.so.6"]


# -- layered builds of the example recipes -------------------------------------------------


@pytest.fixture(scope="module")
def layered(frozen_universe: Universe, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """hello and cat built with --layers packages from the frozen universe, once."""
    work = tmp_path_factory.mktemp("layered")
    records = {
        name: layered_record(name, work, str(frozen_universe.root / "repos" / "main"))
        for name in ("hello", "cat")
    }
    (work / "records.json").write_text(json.dumps(records))
    return work


def test_layered_builds_match_the_goldens_and_share_glibc(layered: Path) -> None:
    records = json.loads((layered / "records.json").read_text())
    golden = load_golden()
    for name, record in records.items():
        assert record == golden[name], name
    # hello and cat hold different programs from different packages: glibc is one blob.
    glibc = {}
    for name in records:
        for digest in records[name]["layers"]:
            blob = layered / f"{name}.oci" / "blobs" / "sha256" / digest.split(":")[1]
            with tarfile.open(blob) as tar:
                if "usr/lib/x86_64-linux-gnu/libc.so.6" in tar.getnames():
                    glibc[name] = digest
    assert glibc["hello"] == glibc["cat"]
    assert records["hello"]["layers"][-1] != records["cat"]["layers"][-1]


@pytest.mark.parametrize("runtime", ["runc", "crun"])
def test_a_layered_image_runs_on_a_read_only_root(
    layered: Path, tmp_path: Path, runtime: str
) -> None:
    bundle = unpack_bundle(f"{layered / 'hello.oci'}:latest", tmp_path / "bundle")
    configure_bundle(bundle, readonly=True)
    result = run_bundle(runtime, bundle)
    assert result.returncode == 0, result.stderr
    assert "Hello" in result.stdout or "hello" in result.stdout.lower()


def test_skopeo_copies_a_layered_image_blob_for_blob(layered: Path, tmp_path: Path) -> None:
    require_tool("skopeo")
    image = f"oci:{layered / 'cat.oci'}:latest"
    info = json.loads(
        subprocess.run(
            ["skopeo", "inspect", image], capture_output=True, text=True, check=True
        ).stdout
    )
    golden = load_golden()["cat"]
    assert info["Layers"] == golden["layers"]  # type: ignore[index]
    copy = tmp_path / "copy"
    subprocess.run(
        ["skopeo", "copy", "--preserve-digests", image, f"oci:{copy}:latest"],
        capture_output=True,
        check=True,
    )
    index = json.loads((copy / "index.json").read_text())
    assert index["manifests"][0]["digest"] == golden["manifest"]  # type: ignore[index]


@pytest.mark.docker
def test_docker_loads_and_runs_a_layered_image(
    layered: Path, dockerd: DockerDaemon, tmp_path: Path
) -> None:
    archive = tmp_path / "hello-docker.tar"
    build(
        str(layered / "hello" / "smith.yaml"),
        BuildOptions(
            output=str(archive),
            fmt="docker-archive",
            tag="smith-layered:test",
            cache_dir=str(layered / "cache"),
            layers="packages",
        ),
    )
    loaded = dockerd.docker("load", "-i", str(archive))
    assert loaded.returncode == 0, loaded.stderr
    inspect = dockerd.docker("image", "inspect", "smith-layered:test")
    assert len(json.loads(inspect.stdout)[0]["RootFS"]["Layers"]) == 3
    ran = dockerd.docker("run", "--rm", "--network", "none", "--read-only", "smith-layered:test")
    assert ran.returncode == 0, ran.stderr
    dockerd.docker("rmi", "smith-layered:test")


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--layer-budget", "128"], "--layer-budget: 128 layers is out of range: 1 to 127"),
    ],
)
def test_bad_layer_flags_are_one_line(layered: Path, args: list[str], error: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "smith", "build", str(layered / "hello" / "smith.yaml"), *args],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"smith: error: {error} (containerd's limit)"]


def test_minimize_layers_by_the_image_package_database(layered: Path) -> None:
    # An image that carries its rpmdb (--package-db) minimized with --layers packages gets
    # the build's own package layers: the same blobs.
    with_db = layered / "hello-db.oci"
    build(
        str(layered / "hello" / "smith.yaml"),
        BuildOptions(
            output=str(with_db), fmt="oci", cache_dir=str(layered / "cache"), package_db=True
        ),
    )
    out = layered / "hello-min.oci"
    minimize_image(
        str(with_db),
        str(out),
        MinimizeOptions(fmt="oci", layering=Layering(LayerStrategy.PACKAGES)),
    )
    index = json.loads((out / "index.json").read_text())
    manifest = out / "blobs" / "sha256" / index["manifests"][0]["digest"].split(":")[1]
    layers = [layer["digest"] for layer in json.loads(manifest.read_text())["layers"]]
    # The top layer too: minimize keeps the same files of hello with the same conventions.
    assert layers == load_golden()["hello"]["layers"]  # type: ignore[index]


# -- any tree: the layers, applied in order, give back the tree --------------------------

OWNERS = ("a-1-1.x86_64", "b-1-1.x86_64", "c-1-1.x86_64", "rootfs/", "")
names = st.sampled_from(["usr", "lib", "bin", "etc", "x", "y"])


@st.composite
def image_trees(draw: st.DrawFn) -> FileTree:
    tree = FileTree()
    for parts in draw(st.lists(st.lists(names, min_size=1, max_size=3), max_size=12)):
        path = "/".join(parts)
        owner = draw(st.sampled_from(OWNERS))
        kind = draw(st.sampled_from(["file", "dir", "symlink", "hardlink"]))
        for parent in parent_paths(path):  # every parent explicit, as subtree() makes them
            existing = tree.get(parent)
            if existing is None or existing.kind is not Kind.DIR:
                tree.remove(parent)
                mode = draw(st.sampled_from([0o755, 0o700]))
                tree.add_dir(parent, mode, uid=10, gid=10, origin=draw(st.sampled_from(OWNERS)))
        if tree.get(path) is not None and tree.get(path).kind is Kind.DIR:  # type: ignore[union-attr]
            continue
        if kind == "dir":
            tree.add_dir(path, 0o755, uid=10, gid=10, origin=owner)
        elif kind == "symlink":
            tree.add_symlink(path, "../x", uid=10, gid=10, origin=owner)
        else:
            files = [e.path for e in tree if e.kind is Kind.FILE and e.path != path]
            if kind == "hardlink" and files:
                tree.add_hardlink(path, files[0], uid=10, gid=10, origin=owner)
            else:
                tree.add_file(path, InlineBytes(path.encode()), uid=10, gid=10, origin=owner)
    # A hard link whose first name was replaced since is no hard link any more.
    for entry in list(tree):
        if entry.kind is Kind.HARDLINK:
            first = tree.get(entry.target)
            if first is None or first.kind is not Kind.FILE:
                tree.remove(entry.path)
    return tree


def fields(tree: FileTree) -> dict[str, tuple[object, ...]]:
    return {e.path: (e.kind, e.mode, e.uid, e.gid, e.target, e.content) for e in tree}


@settings(max_examples=100)
@given(tree=image_trees(), budget=st.integers(1, 5))
def test_the_layers_applied_in_order_give_back_the_tree(tree: FileTree, budget: int) -> None:
    plan = plan_layers(tree, order=OWNERS[:3], budget=budget, directory_owner=(10, 10))
    assert 1 <= len(plan.layers) <= budget
    merged = FileTree()
    for layer in plan.layers:
        for entry in layer.tree:
            if entry.kind is Kind.HARDLINK:  # a tar hard link names a path of its own layer
                assert entry.target in layer.tree
            merged.add(entry)  # a later layer's entry replaces an earlier one's
    assert fields(merged) == fields(tree)


def test_over_a_parent_the_whole_image_stays_within_127_layers() -> None:
    tree, keys = package_tree(200)
    packages = Layering(LayerStrategy.PACKAGES, MAX_LAYERS)
    plan = image_plan(tree, packages, order=keys, parent_layers=120)
    assert plan is not None and len(plan.layers) == MAX_LAYERS - 120
    assert image_plan(tree, Layering(), order=keys) is None  # single: the writer's one layer
    with pytest.raises(UsageError, match="the parent image has 127 layers: no room"):
        image_plan(tree, packages, order=keys, parent_layers=MAX_LAYERS)


def test_an_app_change_touches_only_the_top_layer(layered: Path, tmp_path: Path) -> None:
    recipe = tmp_path / "cat"
    shutil.copytree(layered / "cat", recipe)
    changed = next(p for p in sorted((recipe / "rootfs").rglob("*")) if p.is_file())
    changed.write_bytes(changed.read_bytes() + b"one more line\n")
    result = build(
        str(recipe / "smith.yaml"),
        BuildOptions(
            output=str(tmp_path / "cat.oci"), cache_dir=str(layered / "cache"), layers="packages"
        ),
    )
    golden = load_golden()["cat"]["layers"]  # type: ignore[index]
    layers = [layer.descriptor.digest for layer in result.image.layers]
    assert layers[:-1] == golden[:-1] and layers[-1] != golden[-1]
