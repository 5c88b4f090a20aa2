"""The resolution memo: a warm unlocked `smith build` whose repositories did not change is
copied from the build cache without the recipe's schema, the solver or the writer loading,
byte for byte the cold build; a repository that changed (a newer package) is resolved
again; --offline never asks a server; a damaged memo is ignored and written anew."""

from __future__ import annotations

import email.utils
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from smith.resolve.revalidate import not_modified
from tests.golden_recipes import recipe_copy
from tests.http_proxy import http_proxy
from tests.rpm_universe import Universe, start_http_server
from tests.test_buildcache import smith
from tests.tools import require_tool


def build_json(recipe: Path, output: Path, cache: Path, *flags: str) -> dict[str, object]:
    proc = smith(
        "build", str(recipe), "-o", str(output), "--cache-dir", str(cache), "--json", *flags
    )
    assert proc.returncode == 0, proc.stderr
    doc: dict[str, object] = json.loads(proc.stdout)
    return doc


def memos(cache: Path) -> list[Path]:
    return sorted((cache / "resolutions").iterdir())


@pytest.fixture
def tinyhttpd(rpm_universe: Universe, tmp_path: Path) -> Path:
    """tinyhttpd without a lock, from the universe served over HTTP: every build resolves."""
    return recipe_copy("tinyhttpd", tmp_path, rpm_universe.repo_url("main")) / "smith.yaml"


def test_warm_unlocked_build_is_the_cold_build_without_resolving(
    tinyhttpd: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    cold = build_json(tinyhttpd, tmp_path / "cold.tar.gz", cache)
    assert cold["cache"] == {"build": "miss", "packages_extracted": cold["packages_resolved"]}
    proc = smith(
        "build", str(tinyhttpd), "-o", str(tmp_path / "warm.tar.gz"), "--cache-dir", str(cache),
        "--json", python_flags=("-X", "importtime"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    warm = json.loads(proc.stdout)
    assert warm["cache"] == {"build": "hit", "packages_extracted": 0, "resolution": "memo"}
    assert (tmp_path / "warm.tar.gz").read_bytes() == (tmp_path / "cold.tar.gz").read_bytes()
    assert {k: v for k, v in warm.items() if k not in ("output", "cache")} == {
        k: v for k, v in cold.items() if k not in ("output", "cache")
    }
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()}
    forbidden = {"smith.build", "smith.recipe", "pydantic", "yaml", "solv", "urllib3"}
    forbidden |= {"http.client", "encodings.idna", "smith.oci.writer", "smith.resolve.elf"}
    assert not imported & forbidden
    # --offline asks no server: the memo cannot tell, and the build says what it always did.
    offline = smith(
        "build", str(tinyhttpd), "-o", str(tmp_path / "off.tar.gz"), "--cache-dir", str(cache),
        "--offline",
    )  # fmt: skip
    assert offline.returncode == 1
    assert offline.stderr.startswith("smith: error: offline mode: refusing to download http")
    assert "repomd.xml" in offline.stderr and len(offline.stderr.splitlines()) == 1
    assert not (tmp_path / "off.tar.gz").exists()


def test_offline_build_from_a_local_repository_uses_the_memo(
    rpm_universe: Universe, tmp_path: Path
) -> None:
    recipe = recipe_copy("hello", tmp_path, str(rpm_universe.repo_dir("main"))) / "smith.yaml"
    cache = tmp_path / "cache"
    cold = build_json(recipe, tmp_path / "cold.tar.gz", cache)
    warm = build_json(recipe, tmp_path / "warm.tar.gz", cache, "--offline")
    assert (cold["cache"]["build"], warm["cache"]) == (  # type: ignore[index]
        "miss",
        {"build": "hit", "packages_extracted": 0, "resolution": "memo"},
    )
    assert (tmp_path / "warm.tar.gz").read_bytes() == (tmp_path / "cold.tar.gz").read_bytes()


@pytest.fixture
def updates(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """An empty repository of our own, served over HTTP: (its directory, its URL)."""
    require_tool("createrepo_c")
    repo = tmp_path / "served" / "updates"
    repo.mkdir(parents=True)
    createrepo(repo)
    proc, url = start_http_server(tmp_path / "served")
    try:
        yield repo, url + "updates/"
    finally:
        proc.terminate()
        proc.wait()


def createrepo(repo: Path) -> None:
    repomd = repo / "repodata" / "repomd.xml"
    before = repomd.stat().st_mtime if repomd.exists() else 0.0
    subprocess.run(["createrepo_c", "-q", str(repo)], check=True, capture_output=True)
    # http.server answers If-Modified-Since to the second: a repository rewritten in the
    # second it was last read would look unchanged to a conditional request. Moved on.
    later = max(repomd.stat().st_mtime, before + 60)
    os.utime(repomd, (later, later))


def test_a_newer_package_in_a_repository_is_resolved_again(
    rpm_universe: Universe, tinyhttpd: Path, updates: tuple[Path, str], tmp_path: Path
) -> None:
    repo, url = updates
    doc = yaml.safe_load(tinyhttpd.read_text())
    doc["repos"].append({"name": "updates", "baseurl": url})
    tinyhttpd.write_text(yaml.safe_dump(doc))
    cache = tmp_path / "cache"

    def versions(out: str) -> tuple[object, list[str]]:
        built = build_json(tinyhttpd, tmp_path / out, cache)
        kept = built["packages_kept"]
        assert isinstance(kept, list)
        return built["cache"], [p for p in kept if p.startswith("tinyhttpd")]

    assert versions("a.tar.gz")[1] == ["tinyhttpd-1.0-1.x86_64"]
    assert versions("b.tar.gz") == (
        {"build": "hit", "packages_extracted": 0, "resolution": "memo"},
        ["tinyhttpd-1.0-1.x86_64"],
    )
    shutil.copy(rpm_universe.repo_dir("extra") / "tinyhttpd-2.0-1.x86_64.rpm", repo)
    createrepo(repo)
    changed = versions("c.tar.gz")
    assert changed[1] == ["tinyhttpd-2.0-1.x86_64"]
    # Resolved again, and built (only the changed package extracted: smith/partial.py).
    assert isinstance(changed[0], dict) and "resolution" not in changed[0]
    assert changed[0]["build"] in ("miss", "partial")
    assert (tmp_path / "c.tar.gz").read_bytes() != (tmp_path / "a.tar.gz").read_bytes()
    assert versions("d.tar.gz") == (
        {"build": "hit", "packages_extracted": 0, "resolution": "memo"},
        ["tinyhttpd-2.0-1.x86_64"],
    )
    assert (tmp_path / "d.tar.gz").read_bytes() == (tmp_path / "c.tar.gz").read_bytes()


def test_damaged_memo_is_ignored_and_written_again(tinyhttpd: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    build_json(tinyhttpd, tmp_path / "cold.tar.gz", cache)
    (memo,) = memos(cache)
    good = memo.read_bytes()
    for damage in (good[:-9], b'{"version": 1, "key": "other"}'):  # cut short; another's
        memo.write_bytes(damage)
        proc = smith(
            "build", str(tinyhttpd), "-o", str(tmp_path / "w.tar.gz"), "--cache-dir",
            str(cache), "--json",
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["cache"] == {"build": "hit", "packages_extracted": 0}
        assert "resolution memo" in proc.stderr and "damaged" in proc.stderr
        assert memos(cache) == [memo] and memo.read_bytes() == good  # whole, nothing beside
    warm = build_json(tinyhttpd, tmp_path / "warm.tar.gz", cache)
    assert warm["cache"] == {"build": "hit", "packages_extracted": 0, "resolution": "memo"}
    assert (tmp_path / "warm.tar.gz").read_bytes() == (tmp_path / "cold.tar.gz").read_bytes()


def test_conditional_request_counts_only_a_304(
    rpm_universe: Universe, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = rpm_universe.repo_url("main") + "repodata/repomd.xml"
    repomd = rpm_universe.repo_dir("main") / "repodata" / "repomd.xml"
    current = {"last-modified": email.utils.formatdate(repomd.stat().st_mtime, usegmt=True)}
    assert not_modified(url, current)
    assert not not_modified(url, {"last-modified": "Thu, 01 Jan 1970 00:00:00 GMT"})  # a 200
    assert not not_modified(url, {})  # nothing to ask with
    assert not not_modified(url + ".missing", current)  # a 404
    # A validator is a server's words: never sent when it would add a header of its own.
    assert not not_modified(url, {"last-modified": current["last-modified"] + "\r\nX-A: b"})
    for name in ("http_proxy", "all_proxy", "no_proxy", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    with http_proxy() as proxy:  # asked as a download would be: through the proxy
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        assert not_modified(url, current)
        assert proxy.asked == [url]
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # a proxy that is down: no answer
    assert not not_modified(url, current)


def test_conditional_request_to_a_silent_server_is_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket() as listener:  # accepts (the kernel does), never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        monkeypatch.setenv("SMITH_LIMIT_IDLE_TIMEOUT", "0.5")
        start = time.monotonic()
        assert not not_modified(f"http://127.0.0.1:{port}/r", {"etag": '"x"'})
        assert time.monotonic() - start < 5


def test_the_profile_a_recipe_names_is_read_again(tinyhttpd: Path, tmp_path: Path) -> None:
    """The memo has the recipe's `profile:` by name (found once the recipe validated): a
    warm build hashes it again, so an edited profile is a new build."""
    header = '{"command":["app"],"format":"smith.profile","version":1}\n'
    profile = tinyhttpd.parent / "seen.profile"
    profile.write_text(header + '["/etc/passwd","open","x"]\n')
    with tinyhttpd.open("a") as f:
        f.write("profile: seen.profile\n")
    cache = tmp_path / "cache"
    memo_hit = {"build": "hit", "packages_extracted": 0, "resolution": "memo"}
    assert build_json(tinyhttpd, tmp_path / "a.tar.gz", cache)["cache"]["build"] == "miss"  # type: ignore[index]
    assert build_json(tinyhttpd, tmp_path / "b.tar.gz", cache)["cache"] == memo_hit
    profile.write_text(header + '["/etc/group","open","x"]\n')
    assert build_json(tinyhttpd, tmp_path / "c.tar.gz", cache)["cache"]["build"] == "miss"  # type: ignore[index]
    assert build_json(tinyhttpd, tmp_path / "d.tar.gz", cache)["cache"] == memo_hit
