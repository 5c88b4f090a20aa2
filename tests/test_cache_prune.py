"""`smith cache prune`: the least recently used build entries and layers go, what a later
build needs again is rebuilt (never used half-removed), and prune waits for running builds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from smith.build import BuildResult, build
from smith.build_options import BuildOptions
from smith.cache_prune import cache_lock, prune
from tests.golden_recipes import recipe_copy
from tests.rpm_universe import Universe


@pytest.fixture
def tinyhttpd(rpm_universe: Universe, tmp_path: Path) -> Path:
    return recipe_copy("tinyhttpd", tmp_path, rpm_universe.repo_url("main")) / "smith.yaml"


def build_in(recipe: Path, output: Path, cache: Path) -> BuildResult:
    return build(
        str(recipe), BuildOptions(output=str(output), cache_dir=str(cache), layers="packages")
    )


def layer_keys(cache: Path, result: BuildResult) -> list[str]:
    """The layer cache's keys of a build's layers, bottom first (from its entry)."""
    (entry,) = [
        doc for p in (cache / "builds").glob("*.json")
        if (doc := json.loads(p.read_text()))["report"]["manifest"] == result.image.manifest.digest
    ]  # fmt: skip
    keys: list[str] = entry["layer_keys"]
    return keys


def records(cache: Path) -> list[Path]:
    return sorted([*(cache / "builds").glob("*.json"), *(cache / "layers").glob("*.json")])


def test_prune_removes_the_least_recently_used_and_builds_still_work(
    tinyhttpd: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    index = next((tinyhttpd.parent / "rootfs").rglob("index.html"))
    first = build_in(tinyhttpd, tmp_path / "first.tar.gz", cache)
    old = records(cache)
    first_top = layer_keys(cache, first)[-1]
    week_ago = time.time() - 7 * 86400
    for path in old:
        os.utime(path, (week_ago, week_ago))
    index.write_text(index.read_text() + "changed\n")
    second = build_in(tinyhttpd, tmp_path / "second.tar.gz", cache)  # uses the lower layers
    packages = sorted((cache / "content").rglob("*"))
    report = prune(str(cache), max_size=None, older_than=3, now=time.time())
    # Of the first build's, only the top layer was unused for a week: the second build
    # started from its entry (a partial hit) and took its package layers.
    assert (report.entries, report.layers) == (0, 1) and report.freed > 0
    assert [p for p in old if not p.exists()] == [
        p for p in old if p.parent.name == "layers" and p.stem == first_top
    ]
    assert sorted((cache / "content").rglob("*")) == packages  # packages stay
    again = build_in(tinyhttpd, tmp_path / "again.tar.gz", cache)
    assert again.cache["build"] == "hit"
    assert (tmp_path / "again.tar.gz").read_bytes() == (tmp_path / "second.tar.gz").read_bytes()
    everything = prune(str(cache), max_size=0, older_than=None, now=time.time())
    assert (everything.entries, everything.left) == (2, 0) and not records(cache)
    assert not list((cache / "builds" / "blobs").rglob("sha256/*/*"))
    assert not list((cache / "builds" / "families").iterdir())
    index.write_text(index.read_text().removesuffix("changed\n"))
    cold = build_in(tinyhttpd, tmp_path / "cold.tar.gz", cache)
    assert cold.cache["build"] == "miss" and cold.image == first.image
    assert second.image != first.image


def test_prune_waits_for_running_builds(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    done = threading.Event()

    def run() -> None:
        prune(str(cache), max_size=0, older_than=None, now=time.time())
        done.set()

    with cache_lock(cache):  # a build reading the cache
        thread = threading.Thread(target=run)
        thread.start()
        assert not done.wait(0.3)
    thread.join(10)
    assert done.is_set()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-size", "12x"], "--max-size: '12x' is not a size"),
        (["--older-than", "nan"], "--older-than: 'nan' is not a number of days"),
        ([], "give --max-size SIZE, --older-than DAYS or both"),
    ],
)
def test_bad_prune_arguments_are_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "smith", "cache", "prune", "--cache-dir", str(tmp_path), *args],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr
