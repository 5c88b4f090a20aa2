"""`smith outdated` and `smith lock --update` against repositories that have moved on.

The repositories (tests/update_repos.py) are made with createrepo_c and modifyrepo_c and
served on 127.0.0.1; each recipe is locked against `base` alone, then given `base` and an
updates repository, as a recipe's repositories move on after its lock was made.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from smith.errors import PackageError
from smith.resolve.fetch import Fetcher
from smith.resolve.repo import RepoConfig, load_repos
from smith.resolve.solver import compare_evr
from smith.resolve.updateinfo import AdvisoryType, read_updateinfo
from tests.containers import configure_bundle, run_bundle, unpack_bundle
from tests.fault_server import FaultServer, fault_server
from tests.registry_servers import start_registry
from tests.rpm_universe import Universe
from tests.tools import require_tool
from tests.update_repos import (
    BUGFIX_DOCS,
    COMPRESSIONS,
    SECURITY_DOCS,
    SECURITY_ZLIB,
    build_update_repos,
)

RECIPES: dict[str, dict[str, Any]] = {
    "curl": {
        "package": "curl",
        "packages": ["ca-certificates"],
        "paths": ["/etc/ssl/certs/ca-certificates.crt"],
        "entrypoint": ["/usr/bin/curl"],
        "cmd": ["--version"],
        "env": ["CURL_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt"],
    },
    "hello": {"package": "hello", "cmd": ["/usr/bin/hello"]},
    "hello-docs": {"package": "hello", "packages": ["docs-noarch"], "cmd": ["/usr/bin/hello"]},
}


def smith(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "smith", *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
    )


@pytest.fixture(scope="module")
def repos(
    rpm_universe: Universe, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FaultServer]:
    """The repositories, served on 127.0.0.1 (a server that counts requests)."""
    root = build_update_repos(rpm_universe, tmp_path_factory.mktemp("update-repos"))
    with fault_server(root) as server:
        yield server


def write_recipe(
    where: Path,
    kind: str,
    url: str,
    updates: str | None,
    *,
    base_priority: int = 99,
    base: str = "base",
) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    repos = [{"id": "base", "baseurl": f"{url}repos/{base}/", "priority": base_priority}]
    if updates:
        repos.append({"id": updates, "baseurl": f"{url}repos/{updates}/"})
    path = where / "smith.yaml"
    path.write_text(yaml.safe_dump({**RECIPES[kind], "repos": repos}))
    return path


def locked_recipe(
    where: Path, kind: str, url: str, updates: str | None, cache: Path, *, base_priority: int = 99
) -> Path:
    """A recipe locked against `base` alone, then given the updates repository too."""
    recipe = write_recipe(where, kind, url, None, base_priority=base_priority)
    proc = smith("lock", recipe, "--cache-dir", cache)
    assert proc.returncode == 0, proc.stderr
    return write_recipe(where, kind, url, updates, base_priority=base_priority)


def outdated_json(*args: str | Path) -> tuple[int, dict[str, Any]]:
    proc = smith("outdated", *map(str, args), "--json")
    assert proc.returncode in (0, 100, 101), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def updates_of(source: dict[str, Any]) -> dict[str, tuple[str, str, bool, list[str]]]:
    return {
        p["name"]: (
            p["locked"],
            p["newest"],
            p["affects_image"],
            [a["id"] for a in p["advisories"]],
        )
        for p in source["packages"]
        if p["outdated"]
    }


# -- the table ----------------------------------------------------------------------------------

CASES = [
    pytest.param(
        "curl",
        "updates",
        99,
        {
            "openssl-libs": ("1.0-1", "1.0-2", True, []),  # its advisory's fix is not offered
            "zlib": ("1.0-1", "1.0-2", True, [SECURITY_ZLIB]),
        },
        101,
        id="security-advisory-in-the-image",
    ),
    pytest.param(
        "hello-docs",
        "updates",
        99,
        # A security advisory on a package whose files the image does not keep: 100, not 101.
        {"docs-noarch": ("1.0-1", "1.1-1", False, [BUGFIX_DOCS, SECURITY_DOCS])},
        100,
        id="bugfix-for-a-package-with-no-kept-file",
    ),
    pytest.param("hello", "updates", 99, {}, 0, id="nothing-newer"),
    pytest.param("curl", "updates", 10, {}, 0, id="base-has-priority"),
    pytest.param("curl", None, 99, {}, 0, id="no-updateinfo-anywhere"),
]


@pytest.mark.parametrize(("kind", "updates", "priority", "expected", "status"), CASES)
def test_outdated_lists_exactly_the_expected_packages_and_advisories(
    repos: FaultServer,
    tmp_path: Path,
    kind: str,
    updates: str | None,
    priority: int,
    expected: dict[str, tuple[str, str, bool, list[str]]],
    status: int,
) -> None:
    cache = tmp_path / "cache"
    recipe = locked_recipe(tmp_path / "r", kind, repos.url, updates, cache, base_priority=priority)
    code, report = outdated_json(recipe, "--cache-dir", cache)
    assert code == status and report["exit_code"] == status
    (source,) = report["sources"]
    assert updates_of(source) == expected
    lock = json.loads((recipe.parent / "smith.lock").read_text())
    assert sorted(p["name"] for p in source["packages"]) == [p["name"] for p in lock["packages"]]


def test_the_security_advisory_in_full_and_the_text_report(
    repos: FaultServer, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    recipe = locked_recipe(tmp_path / "r", "curl", repos.url, "updates", cache)
    _, report = outdated_json(recipe, "--cache-dir", cache)
    zlib = next(p for p in report["sources"][0]["packages"] if p["name"] == "zlib")
    assert zlib["newest_repo"] == "updates"
    assert zlib["advisories"] == [
        {
            "id": SECURITY_ZLIB,
            "type": "security",
            "severity": "Important",
            "issued": "2026-01-10 00:00:00",
            "title": "zlib: heap overflow in inflate",
            "cves": ["CVE-2026-1111", "CVE-2026-2222"],
            "repo": "updates",
        }
    ]
    proc = smith("outdated", recipe, "--cache-dir", cache)
    assert proc.returncode == 101, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"{recipe}: 2 of ") and lines[0].endswith(" packages have updates")
    assert lines[1] == "  in the image:"
    assert any(
        line.split() == ["zlib.x86_64", "1.0-1", "->", "1.0-2", "(updates)"] for line in lines
    )
    assert (
        f"      {SECURITY_ZLIB} security Important 2026-01-10 CVE-2026-1111 CVE-2026-2222" in lines
    )


@pytest.mark.parametrize("updates", sorted(COMPRESSIONS))
def test_updateinfo_in_every_compression(repos: FaultServer, tmp_path: Path, updates: str) -> None:
    fetcher = Fetcher(tmp_path / "cache")
    (repo,) = load_repos(
        [RepoConfig(updates, f"{repos.url}repos/{updates}/")], fetcher, updateinfo=True
    )
    assert repo.updateinfo is not None
    advisories = read_updateinfo(repo.updateinfo, updates)
    assert [a.id for a in advisories] == [
        "SMITH-2026-0001",
        "SMITH-2026-0002",
        "SMITH-2025-0099",
        "SMITH-2026-0003",
        "SMITH-2026-0004",
        "SMITH-2026-0006",
        "SMITH-2026-0005",
    ]
    assert [a.type for a in advisories[:2]] == [AdvisoryType.SECURITY, AdvisoryType.BUGFIX]
    assert advisories[0].cves == ("CVE-2026-1111", "CVE-2026-2222")
    # A build never asks for updateinfo.xml.
    (plain,) = load_repos([RepoConfig(updates, f"{repos.url}repos/{updates}/")], fetcher)
    assert plain.updateinfo is None


def test_a_malformed_updateinfo_is_one_line_naming_the_repository(
    repos: FaultServer, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    recipe = locked_recipe(tmp_path / "r", "hello", repos.url, "updates-bad", cache)
    for args in (("outdated", recipe), ("lock", recipe, "--update")):
        proc = smith(*args, "--cache-dir", cache)
        assert proc.returncode == 1
        assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
        assert "repository 'updates-bad': updateinfo.xml is not valid XML" in proc.stderr


BAD_UPDATEINFO = [
    ("<updates><update>", "is not valid XML"),
    ("<other/>", "the root element is <other>, not <updates>"),
    ("<updates><update type='security'/></updates>", "an <update> has no <id>"),
    (
        "<updates><update><id>A-1</id><pkglist><collection><package name='z' version='1'/>"
        "</collection></pkglist></update></updates>",
        "advisory A-1: a <package> lacks its name, version or release",
    ),
    (
        "<updates><update><id>A-2</id><pkglist><collection><package name='z' version='1' "
        "release='1' epoch='x'/></collection></pkglist></update></updates>",
        "package 'z' has an epoch that is not a number: 'x'",
    ),
]


@pytest.mark.parametrize(("text", "message"), BAD_UPDATEINFO)
def test_updateinfo_errors_name_the_repository(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / f"u{len(text)}.xml"
    path.write_text(text)
    with pytest.raises(PackageError) as err:
        read_updateinfo(path, "myrepo")
    assert str(err.value).startswith("repository 'myrepo': updateinfo.xml")
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("a", "b", "order"),
    [
        ("1.0-1", "1.0-2", -1),
        ("1.0-2", "0:1.0-2", 0),
        ("1:0.1-1", "9.0-1", 1),
        ("1.0~rc1-1", "1.0-1", -1),
        ("1.10-1", "1.9-1", 1),
        ("1.0a-1", "1.0-1", 1),
    ],
)
def test_versions_are_ordered_as_rpm_orders_them(a: str, b: str, order: int) -> None:
    assert compare_evr(a, b) == order


# -- lock --update and the rebuild --------------------------------------------------------------


def test_lock_update_zlib_moves_only_zlib_and_the_rebuild_runs(
    repos: FaultServer, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    recipe = locked_recipe(tmp_path / "r", "curl", repos.url, "updates", cache)
    lock_path = recipe.parent / "smith.lock"
    before = json.loads(lock_path.read_text())

    # As the issue writes it: the recipe is ./smith.yaml.
    proc = smith("lock", "--update", "zlib", "--preview", "--cache-dir", cache, cwd=recipe.parent)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.splitlines()
    assert out[0] == "zlib-1.0-1.x86_64 -> zlib-1.0-2.x86_64"
    assert (
        out[1]
        == f"  fixes {SECURITY_ZLIB} security Important 2026-01-10 CVE-2026-1111 CVE-2026-2222"
    )
    assert out[2].endswith("smith.lock: 1 packages moved")
    assert out[3] == "next build: 1 of 1 layers change"
    after = json.loads(lock_path.read_text())
    moved = [
        (a["nevra"], b["nevra"])
        for a, b in zip(before["packages"], after["packages"], strict=True)
        if a != b
    ]
    assert moved == [("zlib-1.0-1.x86_64", "zlib-1.0-2.x86_64")]
    assert {k: v for k, v in before.items() if k != "packages"} == {
        k: v for k, v in after.items() if k != "packages"
    }

    # The rebuild from the updated lock holds the new zlib, and runs.
    image = tmp_path / "image"
    build = smith(
        "build", recipe, "-o", image, "--tag", "curl", "--locked", "--json", "--cache-dir", cache
    )
    assert build.returncode == 0, build.stderr
    summary = json.loads(build.stdout)
    (layer,) = summary["layers"]
    assert out[4].startswith("  layer sha256:") and out[4].endswith(f"-> {layer['digest'][:19]}…")
    # A push sends the new layer, the new config (its diff_ids) and the new manifest.
    assert out[5].endswith(" bytes (3 blobs)")
    assert out[5].startswith("  a push to a registry that holds the old image sends ")
    (manifest,) = json.loads((image / "index.json").read_text())["manifests"]
    blob = image / "blobs" / "sha256" / manifest["digest"].split(":")[1]
    config = json.loads(blob.read_text())["config"]
    assert int(out[5].split()[-4]) == layer["size"] + config["size"] + manifest["size"]
    assert "zlib-1.0-2.x86_64" in summary["packages_kept"]
    bundle = unpack_bundle(f"{image}:curl", tmp_path / "bundle")
    configure_bundle(bundle, readonly=True)
    result = run_bundle("runc", bundle)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("curl ") and "zlib/" in result.stdout

    # zlib's advisory is fixed: openssl-libs is still newer, with no advisory.
    code, report = outdated_json(recipe, "--cache-dir", cache)
    assert (code, list(updates_of(report["sources"][0]))) == (100, ["openssl-libs"])
    proc = smith("lock", recipe, "--update", "--cache-dir", cache)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "openssl-libs-1.0-1.x86_64 -> openssl-libs-1.0-2.x86_64"
    assert outdated_json(recipe, "--cache-dir", cache)[0] == 0


def test_lock_update_refuses_a_package_the_lock_does_not_hold(
    repos: FaultServer, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    recipe = locked_recipe(tmp_path / "r", "hello", repos.url, "updates", cache)
    proc = smith("lock", recipe, "--update", "nosuch", "--cache-dir", cache)
    assert proc.returncode == 2
    assert proc.stderr.startswith("smith: error: 'nosuch' is not a package of ")
    assert smith("lock", recipe, "zlib", "--cache-dir", cache).returncode == 2


# -- an image -----------------------------------------------------------------------------------


def test_outdated_reads_the_package_list_an_image_records(
    repos: FaultServer, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    recipe = locked_recipe(tmp_path / "r", "curl", repos.url, "updates", cache)
    image = tmp_path / "image.tar"
    build = smith("build", recipe, "-o", image, "--locked", "--cache-dir", cache)
    assert build.returncode == 0, build.stderr
    code, report = outdated_json(image, "--recipe", recipe, "--cache-dir", cache)
    assert code == 101
    (source,) = report["sources"]
    assert source["kind"] == "image"
    assert updates_of(source) == {
        "openssl-libs": ("1.0-1", "1.0-2", True, []),
        "zlib": ("1.0-1", "1.0-2", True, [SECURITY_ZLIB]),
    }
    # Every package an image records holds a kept file; docs-noarch-like packages are absent.
    assert all(p["affects_image"] for p in source["packages"])
    by_url = outdated_json(
        image, "--repo", f"updates={repos.url}repos/updates/", "--cache-dir", cache
    )
    assert by_url[0] == 101
    # --recipe takes the recipe's directory too, as a RECIPE argument does.
    assert outdated_json(image, "--recipe", recipe.parent, "--cache-dir", cache) == (code, report)
    proc = smith("outdated", image, "--cache-dir", cache)
    assert proc.returncode == 2 and "needs --recipe or --repo" in proc.stderr


# -- 20 recipes sharing repositories --------------------------------------------------------------


def test_twenty_recipes_fetch_each_metadata_file_once(repos: FaultServer, tmp_path: Path) -> None:
    kinds = ["curl", "hello", "hello-docs"]
    with fault_server(repos.root) as server:
        locks = {}
        for kind in kinds:
            recipe = locked_recipe(tmp_path / kind, kind, server.url, "updates", tmp_path / "c0")
            locks[kind] = recipe.parent / "smith.lock"
        recipes = []
        for i in range(20):
            kind = kinds[i % 3]
            recipe = write_recipe(tmp_path / f"r{i:02}", kind, server.url, "updates")
            shutil.copyfile(locks[kind], recipe.parent / "smith.lock")  # absolute URLs: portable
            recipes.append(recipe)
        server.hits.clear()
        start = time.monotonic()
        proc = smith("outdated", *recipes, "--json", "--cache-dir", tmp_path / "fresh")
        cold = time.monotonic() - start
        assert proc.returncode == 101, proc.stderr
        statuses = [s["status"] for s in json.loads(proc.stdout)["sources"]]
        assert statuses == (["security", "current", "updates"] * 7)[:20]
        metadata = {path: n for path, n in server.hits.items() if "/repodata/" in path}
        packages = {path: n for path, n in server.hits.items() if path.endswith(".rpm")}
        # Again with the cache filled: only the two repomd.xml are asked for (never cached).
        server.hits.clear()
        start = time.monotonic()
        again = smith("outdated", *recipes, "--json", "--cache-dir", tmp_path / "fresh")
        warm = time.monotonic() - start
        assert again.returncode == 101 and again.stdout == proc.stdout
        warm_hits = dict(server.hits)
    # repomd.xml, primary, filelists and updateinfo of 2 repositories, each fetched once;
    # every package the 20 trial builds unpack, fetched once.
    assert sorted(metadata.values()) == [1] * 7, metadata  # base has no updateinfo.xml
    assert set(packages.values()) == {1}, packages
    assert warm_hits == {
        "repos/base/repodata/repomd.xml": 1,
        "repos/updates/repodata/repomd.xml": 1,
    }
    print(
        f"\nsmith outdated over 20 recipes: {cold:.1f} s with an empty cache "
        f"({len(metadata)} metadata and {len(packages)} package requests), {warm:.1f} s again "
        f"({len(warm_hits)} requests)"
    )


def test_newest_follows_excludes_arch_and_priorities(repos: FaultServer, tmp_path: Path) -> None:
    from smith.resolve.solver import newest_versions

    fetcher = Fetcher(tmp_path / "cache")
    both = load_repos(
        [
            RepoConfig("base", f"{repos.url}repos/base/"),
            RepoConfig("updates", f"{repos.url}repos/updates/"),
        ],
        fetcher,
    )
    keys = [("zlib", "x86_64"), ("docs-noarch", "noarch"), ("lib32-demo", "i686")]
    newest = {k: p.nevra for k, p in newest_versions(keys, both).items()}
    # lib32-demo is i686 only: not for an x86_64 target, as a resolution would not take it.
    assert newest == {
        ("zlib", "x86_64"): "zlib-1.0-2.x86_64",
        ("docs-noarch", "noarch"): "docs-noarch-1.1-1.noarch",
    }
    assert newest_versions(keys, both, excludes=["zli*", "docs-noarch"]) == {}
    preferred = load_repos(
        [
            RepoConfig("base", f"{repos.url}repos/base/", priority=10),
            RepoConfig("updates", f"{repos.url}repos/updates/"),
        ],
        fetcher,
    )
    assert {k: (p.nevra, p.repo_id) for k, p in newest_versions(keys[:1], preferred).items()} == {
        ("zlib", "x86_64"): ("zlib-1.0-1.x86_64", "base")
    }


def test_outdated_reads_an_image_in_a_registry(repos: FaultServer, tmp_path: Path) -> None:
    registry = start_registry(tmp_path / "registry", require_tool("docker-registry"))
    try:
        cache = tmp_path / "cache"
        recipe = locked_recipe(tmp_path / "r", "hello-docs", repos.url, "updates", cache)
        ref = f"docker://{registry.host}/outdated/hello:v1"
        image = tmp_path / "image"
        build = smith(
            "build", recipe, "-o", image, "--locked", "--push", ref, "--insecure",
            "--cache-dir", cache,
        )  # fmt: skip
        assert build.returncode == 0, build.stderr
        code, report = outdated_json(ref, "--insecure", "--recipe", recipe, "--cache-dir", cache)
    finally:
        registry.stop()
    # docs-noarch keeps no file: the image does not record it, so nothing it holds is newer.
    (source,) = report["sources"]
    assert (code, updates_of(source)) == (0, {})
    assert [p["name"] for p in source["packages"]] == ["filesystem", "glibc", "hello"]


def test_lock_update_brings_what_the_new_version_requires(
    repos: FaultServer, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    recipe = locked_recipe(tmp_path / "r", "hello-docs", repos.url, "updates", cache)
    lock_path = recipe.parent / "smith.lock"
    before = {p["nevra"]: p for p in json.loads(lock_path.read_text())["packages"]}
    proc = smith("lock", recipe, "--update", "docs-noarch", "--cache-dir", cache)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "docs-noarch-1.0-1.noarch -> docs-noarch-1.1-1.noarch",
        f"  fixes {BUGFIX_DOCS} bugfix 2026-02-01",
        f"  fixes {SECURITY_DOCS} security Moderate 2026-03-04 CVE-2026-6666",
        "(none) -> ncurses-base-1.0-1.noarch",
        f"{lock_path}: 2 packages moved",
    ]
    after = {p["nevra"]: p for p in json.loads(lock_path.read_text())["packages"]}
    assert set(after) - set(before) == {"docs-noarch-1.1-1.noarch", "ncurses-base-1.0-1.noarch"}
    assert set(before) - set(after) == {"docs-noarch-1.0-1.noarch"}
    assert all(after[n] == before[n] for n in set(before) & set(after))


def test_errors_are_one_line(repos: FaultServer, tmp_path: Path) -> None:
    from tests.registry_fixtures import make_image

    cache = tmp_path / "cache"
    unlocked = write_recipe(tmp_path / "unlocked", "hello", repos.url, "updates")
    foreign, _ = make_image(tmp_path, "foreign", big=1024)
    base = f"--repo=base={repos.url}repos/base/"
    cases = [
        (("outdated", unlocked), 1, "there is no smith.lock beside it (run `smith lock`)"),
        (("lock", unlocked, "--update"), 1, "there is no smith.lock beside it"),
        (("outdated", tmp_path / "none.tar", base), 1, "no image at"),
        (("outdated", foreign, base), 1, "the image records no package list"),
        (("lock", unlocked, "--preview"), 2, "--preview goes with --update"),
        (("lock", unlocked, "zlib"), 2, "'zlib': package names go with --update"),
    ]
    for args, code, message in cases:
        proc = smith(*args, "--cache-dir", cache)
        assert proc.returncode == code, (args, proc.stderr)
        assert proc.stderr.count("\n") == 1 and message in proc.stderr, (args, proc.stderr)


def test_lock_update_says_which_pins_could_not_stay(repos: FaultServer, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    recipe = locked_recipe(tmp_path / "r", "curl", repos.url, "updates", cache)
    # The base repository has dropped openssl-libs 1.0-1 since the lock was made.
    write_recipe(recipe.parent, "curl", repos.url, "updates", base="base-trimmed")
    proc = smith("lock", recipe, "--update", "zlib", "--cache-dir", cache)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "openssl-libs-1.0-1.x86_64 -> openssl-libs-1.0-2.x86_64"
    assert lines[1] == "zlib-1.0-1.x86_64 -> zlib-1.0-2.x86_64"
    assert (
        "note: no repository offers openssl-libs-1.0-1.x86_64 any more, so it could not stay"
        in lines
    )
