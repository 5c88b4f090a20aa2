"""The build cache: a build whose inputs did not change is copied from the cache, byte for
byte what a cold build writes (the golden digests hold), and a damaged entry is rebuilt,
never used."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from smith.build import BuildResult, build
from smith.build_options import BuildOptions
from smith.buildcache import BuildCache
from tests.golden_recipes import GOLDEN, recipe_copy
from tests.rpm_universe import Universe


def smith(*args: str, python_flags: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *python_flags, "-m", "smith", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def digests(doc: dict[str, object]) -> dict[str, object]:
    layers = doc["layers"]
    assert isinstance(layers, list)
    return {
        "config": doc["config"],
        "diff_ids": [layer["diff_id"] for layer in layers],
        "index": doc["index"],
        "layers": [layer["digest"] for layer in layers],
        "manifest": doc["manifest"],
    }


def build_json(recipe: Path, output: Path, cache: Path, *flags: str) -> dict[str, object]:
    proc = smith("build", str(recipe), "-o", str(output), "--cache-dir", str(cache), "--json")
    assert proc.returncode == 0, proc.stderr
    doc: dict[str, object] = json.loads(proc.stdout)
    return doc


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_warm_locked_build_is_the_golden_build_without_loading_the_builder(
    frozen_universe: Universe, tmp_path: Path
) -> None:
    recipe = recipe_copy("hello", tmp_path, frozen_universe.repo_url("main"))
    cache = tmp_path / "cache"
    locked = smith("lock", str(recipe), "--cache-dir", str(cache))
    assert locked.returncode == 0, locked.stderr
    golden = json.loads(GOLDEN.read_text())["hello"]
    cold = build_json(recipe, tmp_path / "cold", cache)
    assert cold["cache"] == {"build": "miss"}
    assert digests(cold) == golden
    # The warm build: no recipe schema, no solver, no writer is imported.
    proc = smith(
        "build", str(recipe), "-o", str(tmp_path / "warm"), "--cache-dir", str(cache), "--json",
        python_flags=("-X", "importtime"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    warm = json.loads(proc.stdout)
    assert warm["cache"] == {"build": "hit"}
    assert digests(warm) == golden
    assert {k: v for k, v in warm.items() if k != "output"} == {
        k: v for k, v in cold.items() if k not in ("output", "cache")
    } | {"cache": {"build": "hit"}}
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()}
    assert not imported & {"smith.build", "smith.recipe", "pydantic", "yaml", "solv"}
    assert tree_bytes(tmp_path / "warm") == tree_bytes(tmp_path / "cold")


@pytest.fixture
def tinyhttpd(rpm_universe: Universe, tmp_path: Path) -> Path:
    """tinyhttpd (packages and a rootfs/), without a lock: every build resolves."""
    return recipe_copy("tinyhttpd", tmp_path, rpm_universe.repo_url("main")) / "smith.yaml"


def build_in(recipe: Path, output: Path, cache: Path) -> BuildResult:
    return build(str(recipe), BuildOptions(output=str(output), cache_dir=str(cache)))


def test_unlocked_build_resolves_then_copies_from_the_cache(
    tinyhttpd: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    cold = build_in(tinyhttpd, tmp_path / "cold.tar.gz", cache)
    warm = build_in(tinyhttpd, tmp_path / "warm.tar.gz", cache)
    assert (cold.from_cache, warm.from_cache) == (False, True)
    assert (tmp_path / "warm.tar.gz").read_bytes() == (tmp_path / "cold.tar.gz").read_bytes()
    assert warm.summary(explain=True) | {"output": ""} == cold.summary(explain=True) | {
        "output": ""
    }
    assert warm.packages == cold.packages and warm.owners == cold.owners
    # Another output format is another key; so is a changed file of rootfs/.
    assert not build_in(tinyhttpd, tmp_path / "layout", cache).from_cache
    index = next((tinyhttpd.parent / "rootfs").rglob("index.html"))
    index.write_text(index.read_text() + "changed\n")
    changed = build_in(tinyhttpd, tmp_path / "changed.tar.gz", cache)
    assert not changed.from_cache
    assert changed.image.manifest.digest != cold.image.manifest.digest


def test_damaged_cache_is_rebuilt_never_used(
    tinyhttpd: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = tmp_path / "cache"
    cold = build_in(tinyhttpd, tmp_path / "cold.tar.gz", cache)
    builds = BuildCache(cache)
    (blob,) = Path(builds.blobs).iterdir()
    os.chmod(blob, 0o644)
    with open(blob, "r+b") as f:  # one byte changed, same size
        first = f.read(1)
        f.seek(0)
        f.write(bytes([first[0] ^ 1]))
    again = build_in(tinyhttpd, tmp_path / "again.tar.gz", cache)
    assert not again.from_cache
    assert "does not match its digest" in caplog.text
    assert (tmp_path / "again.tar.gz").read_bytes() == (tmp_path / "cold.tar.gz").read_bytes()
    assert again.image == cold.image
    # A damaged entry (cut short) is not read either; the next build records it again.
    (entry,) = Path(builds.root).glob("*.json")
    entry.write_bytes(entry.read_bytes()[:100])
    assert not build_in(tinyhttpd, tmp_path / "third.tar.gz", cache).from_cache
    assert build_in(tinyhttpd, tmp_path / "fourth.tar.gz", cache).from_cache


def test_invalid_recipe_is_never_taken_from_the_cache(tinyhttpd: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    assert build_json(tinyhttpd, tmp_path / "a.tar.gz", cache)["cache"] == {"build": "miss"}
    tinyhttpd.write_text(tinyhttpd.read_text() + "no_such_key: 1\n")
    proc = smith(
        "build", str(tinyhttpd), "-o", str(tmp_path / "b.tar.gz"), "--cache-dir", str(cache)
    )
    assert proc.returncode != 0
    assert "no_such_key" in proc.stderr and "Traceback" not in proc.stderr
