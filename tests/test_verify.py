"""`smith verify` on the example recipes: golden digests, changed environments, another
Python, planted non-determinism (one per item of the determinism checklist in
docs/ARCHITECTURE.md), and `smith diff` of two real images.

Every build here is a real `smith build` from the fixture package universe.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from smith.verify import SHUFFLE_SCRIPT
from tests.golden_recipes import GOLDEN, recipe_copy, recipe_names
from tests.other_pythons import other_python
from tests.rpm_universe import Universe
from tests.tools import PROJECT, in_ci, require_root, require_tool

PLANTS = PROJECT / "tests" / "plants"


def smith(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "smith", *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


def as_json(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.returncode in (0, 1), proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def copies_of_recipes(universe: Universe, root: Path) -> Path:
    """Copies of recipes/* under `root`, their repository pointed at `universe`'s server."""
    for name in recipe_names():
        recipe_copy(name, root, universe.repo_url("main"))
    return root


@pytest.fixture(scope="module")
def examples(rpm_universe: Universe, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example recipes built from the universe made on this machine (for tests that
    compare builds with each other, never with a golden record)."""
    return copies_of_recipes(rpm_universe, tmp_path_factory.mktemp("recipes"))


@pytest.fixture(scope="module")
def golden_examples(frozen_universe: Universe, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example recipes built from the frozen universe of ../shared, the only inputs
    golden digests are recorded from: its packages never change, so neither may a digest."""
    return copies_of_recipes(frozen_universe, tmp_path_factory.mktemp("golden-recipes"))


def built_from(universe: Universe) -> str:
    return f"built from {universe.repo_url('main')} (the frozen universe {universe.root})"


def test_golden_file_lists_every_recipe() -> None:
    assert sorted(json.loads(GOLDEN.read_text())) == recipe_names()


@pytest.mark.parametrize("name", recipe_names())
def test_recipe_is_reproducible_and_matches_golden(
    name: str, golden_examples: Path, frozen_universe: Universe
) -> None:
    # Two builds (changed environment, then reference), each compared with the record.
    result = as_json(smith("verify", str(golden_examples / name), "--against", str(GOLDEN),
                           "--builds", "2", "--json"))  # fmt: skip
    assert result["reproducible"], f"{built_from(frozen_universe)}:\n" + json.dumps(
        result, indent=1
    )
    assert [b["variation"] for b in result["builds"]] == ["changed", "reference"]
    if in_ci() or (shutil.which("disorderfs") and os.geteuid() == 0):
        # In CI disorderfs is there (scripts/setup.sh): a verify that shuffles nothing fails.
        assert "directory order shuffled" in result["builds"][0]["environment"]


@pytest.mark.parametrize("version", ["3.12", "3.13"])
def test_verify_under_another_python(
    version: str, golden_examples: Path, frozen_universe: Universe
) -> None:
    python = other_python(version)
    result = as_json(smith("verify", str(golden_examples / "cat"), "--builds", "1", "--python",
                           python, "--json"))  # fmt: skip
    assert [b["variation"] for b in result["builds"]] == ["reference", f"python{version}"]
    assert result["reproducible"], json.dumps(result, indent=1)
    golden = json.loads(GOLDEN.read_text())["cat"]
    assert result["builds"][1]["digests"] == golden, built_from(frozen_universe)


# One plant per item of the determinism checklist (docs/ARCHITECTURE.md, planted by
# tests/plants/sitecustomize.py), and what `smith diff` must name: (role, entry or key, field).
PLANTED = {
    "float-mtime": ("layer 1", "usr/bin/hello", "mtime"),
    "gzip-name": ("layer 1", "compression (same uncompressed tar)", "gzip header FNAME"),
    "host-user-names": ("layer 1", "dev", "uname"),
    "unsorted-json-keys": ("config", "top level", "key order"),
    "set-iteration": (
        "manifest",
        '.annotations["org.smith.package-files"]["filesystem-1.0-1.noarch"][0] (JSON inside)',
        "value",
    ),
    "leaked-umask": ("layer 1", "dev", "mode"),
    "timestamp-in-config": ("config", ".created", "value"),
    "reordered-entries": ("layer 1", "usr/lib64/ld-linux-x86-64.so.2", "order"),
}


@pytest.mark.parametrize("plant", sorted(PLANTED))
def test_planted_nondeterminism_is_caught_and_named(
    plant: str, examples: Path, tmp_path: Path
) -> None:
    env = {"SMITH_PLANT": plant, "PYTHONPATH": str(PLANTS)}
    keep = tmp_path / "builds"
    proc = smith("verify", str(examples / "hello"), "--keep", str(keep), "--json", env=env)
    result = as_json(proc)
    assert proc.returncode == 1 and not result["reproducible"]
    first = result["diff"]["first_cause"]
    assert (first["role"], first["subject"], first["field"]) == PLANTED[plant], first
    # `smith diff` on the two kept builds says the same, in its first line too.
    direct = smith("diff", str(keep / "build-1" / "image"), str(keep / "build-2" / "image"))
    assert direct.returncode == 1
    line = direct.stdout.splitlines()[0]
    assert line.startswith("first cause: ") and PLANTED[plant][2] in line
    assert PLANTED[plant][1] in line


def test_keep_replaces_only_its_own_builds(examples: Path, tmp_path: Path) -> None:
    keep = tmp_path / "builds"
    for _ in range(2):  # the second run replaces the first's builds
        proc = smith("verify", str(examples / "hello"), "--keep", str(keep), "--json")
        assert as_json(proc)["reproducible"], proc.stderr
    mine = tmp_path / "mine"
    (mine / "build-1").mkdir(parents=True)
    (mine / "build-1" / "notes.txt").write_text("precious\n")
    proc = smith("verify", str(examples / "hello"), "--keep", str(mine))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"smith: error: --keep: {str(mine / 'build-1')!r} exists and is not a smith verify build"
    ]
    assert (mine / "build-1" / "notes.txt").read_text() == "precious\n"


def test_a_warm_layer_cache_does_not_hide_the_writer(examples: Path, tmp_path: Path) -> None:
    """verify seeds its builds from --cache-dir without the layer and build caches:
    otherwise both builds would copy the cached layer (or image) and a planted writer bug
    would go unseen."""
    cache = tmp_path / "cache"
    proc = smith("build", str(examples / "hello"), "-o", str(tmp_path / "img"),
                 "--cache-dir", str(cache))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (cache / "layers").is_dir() and any((cache / "layers").iterdir())
    assert any((cache / "builds").glob("*.json"))  # and the build cache: left behind too
    env = {"SMITH_PLANT": "leaked-umask", "PYTHONPATH": str(PLANTS)}
    result = as_json(
        smith("verify", str(examples / "hello"), "--cache-dir", str(cache), "--json", env=env)
    )
    assert not result["reproducible"]
    assert result["diff"]["first_cause"]["field"] == "mode"


def test_directory_read_order_is_shuffled_and_caught(examples: Path, tmp_path: Path) -> None:
    """A build that leaks readdir order passes without disorderfs and fails with it."""
    require_root()
    require_tool("disorderfs")
    recipe = tmp_path / "cat"
    shutil.copytree(examples / "cat", recipe)
    for i in range(20):
        (recipe / "rootfs" / "read" / f"f{i:02d}").write_text(f"{i}\n")
    env = {"SMITH_PLANT": "directory-order", "PYTHONPATH": str(PLANTS)}
    plain = as_json(smith("verify", str(recipe), "--no-shuffle", "--json", env=env))
    assert plain["reproducible"], "without shuffling, this filesystem's order is stable"
    shuffled = as_json(smith("verify", str(recipe), "--json", env=env))
    assert not shuffled["reproducible"]
    first = shuffled["diff"]["first_cause"]
    assert (first["role"], first["field"]) == ("manifest", "value")
    assert first["subject"].startswith('.annotations["org.smith.package-files"]["rootfs/"]')


def test_diff_of_real_images_differing_in_one_mode(examples: Path, tmp_path: Path) -> None:
    base = examples / "cat"
    changed = tmp_path / "cat"
    shutil.copytree(base, changed)
    os.chmod(changed / "rootfs" / "read" / "data", 0o755)
    for recipe, out in ((base, tmp_path / "a.tar.gz"), (changed, tmp_path / "b.tar.gz")):
        proc = smith("build", str(recipe), "-o", str(out), "--cache-dir", str(tmp_path / "c"))
        assert proc.returncode == 0, proc.stderr
    result = as_json(smith("diff", str(tmp_path / "a.tar.gz"), str(tmp_path / "b.tar.gz"),
                           "--json"))  # fmt: skip
    causes = [f for f in result["findings"] if not f["derived"]]
    assert [(f["role"], f["subject"], f["field"], f["a"], f["b"]) for f in causes] == [
        ("layer 1", "read/data", "mode", "0644", "0755")
    ]
    text = smith("diff", str(tmp_path / "a.tar.gz"), str(tmp_path / "b.tar.gz")).stdout
    assert text.splitlines()[0] == ("first cause: layer 1: read/data: mode differs: A 0644, B 0755")


def test_verify_against_an_image_explains_the_difference(examples: Path, tmp_path: Path) -> None:
    other = tmp_path / "tagged"
    proc = smith("build", str(examples / "hello"), "-o", str(other), "--tag", "hello:1")
    assert proc.returncode == 0, proc.stderr
    result = as_json(smith("verify", str(examples / "hello"), "--against", str(other), "--json"))
    assert result["differing"] == ["index"]
    first = result["diff"]["first_cause"]
    assert (first["role"], first["field"]) == ("index", "value")
    # smith names every image it writes (`latest` without --tag): the names differ.
    assert first["subject"] == '.manifests[0].annotations["org.opencontainers.image.ref.name"]'
    assert (first["a"], first["b"]) == ('"hello:1"', '"latest"'), first


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nowhere/smith.yaml"], "no recipe or image at"),
        (["RECIPE", "--python", "/no/such/python"], "--python /no/such/python: no such"),
        (["RECIPE", "--python", "BAREPY"], "--python needs smith's dependencies: "),
        (["RECIPE", "--against", "BADJSON"], "not valid JSON"),
        (["RECIPE", "--against", "OTHERJSON"], "no record named 'hello'"),
    ],
)
def test_bad_input_is_one_line(
    args: list[str], message: str, examples: Path, tmp_path: Path
) -> None:
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "other.json").write_text('{"curl": {}}')
    # An interpreter without smith's dependencies (-S: no site-packages).
    (tmp_path / "barepy").write_text(f'#!/bin/sh\nexec {sys.executable} -S "$@"\n')
    (tmp_path / "barepy").chmod(0o755)
    replace = {
        "RECIPE": str(examples / "hello"),
        "BADJSON": str(tmp_path / "bad.json"),
        "OTHERJSON": str(tmp_path / "other.json"),
        "BAREPY": str(tmp_path / "barepy"),
    }
    proc = smith("verify", *(replace.get(a, a) for a in args), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert message in proc.stderr


def test_verify_minimize(examples: Path, tmp_path: Path) -> None:
    """`smith verify --minimize IMAGE`: minimize twice in changed environments."""
    image = tmp_path / "hello-full"
    proc = smith("build", str(examples / "hello"), "-o", str(image))
    assert proc.returncode == 0, proc.stderr
    result = as_json(smith("verify", "--minimize", str(image), "--json"))
    assert result["reproducible"], json.dumps(result, indent=1)
    assert len(result["builds"]) == 2


def test_disorderfs_view_shuffles_directory_order() -> None:
    """The mount verify's changed build runs under really changes readdir order."""
    require_root()
    require_tool("disorderfs")
    require_tool("unshare")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp, "dir")
        src.mkdir()
        for i in range(30):
            (src / f"f{i:02d}").write_text("")
        orders = []
        for n in range(3):
            work = Path(tmp, f"w{n}")
            (work / "s").mkdir(parents=True)
            (work / "m").mkdir()
            code = f"import os; print(' '.join(os.listdir({str(src)!r})))"
            proc = subprocess.run(
                ["unshare", "-m", "--propagation", "private", "sh", "-c", SHUFFLE_SCRIPT,
                 "sh", str(src), str(work / "s"), str(work / "m"), sys.executable, "-c", code],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            assert proc.returncode == 0, proc.stderr
            orders.append(proc.stdout.split())
        assert all(sorted(o) == sorted(os.listdir(src)) for o in orders)
        assert len({tuple(o) for o in orders}) > 1, orders
