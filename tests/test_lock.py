"""smith.lock: `smith lock RECIPE` pins what the recipe resolves to, byte for byte."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from smith.errors import PackageError, ResolveError
from smith.recipe import load_recipe
from smith.resolve.fetch import Fetcher
from smith.resolve.lock import check_lock_covers, fetch_locked, read_lock
from smith.sources import repo_configs
from tests.rpm_universe import Universe


def smith(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from smith.cli.main import main; main()", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        check=False,
    )


def write_recipe(path: Path, baseurl: str, packages: list[str], **extra: object) -> Path:
    import yaml

    path.write_text(
        yaml.safe_dump(
            {"packages": packages, "repos": [{"id": "main", "baseurl": baseurl}], **extra}
        )
    )
    return path


def test_smith_lock_writes_a_reproducible_lock(rpm_universe: Universe, tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path / "recipe.yaml", rpm_universe.repo_url(), ["tinyhttpd"])
    cache = str(tmp_path / "cache")
    proc = smith("lock", str(recipe), "--cache-dir", cache)
    assert proc.returncode == 0, proc.stderr
    first = (tmp_path / "smith.lock").read_bytes()
    data = json.loads(first)
    assert [p["nevra"] for p in data["packages"]] == [
        "filesystem-1.0-1.noarch",
        "glibc-1.0-1.x86_64",
        "setup-1.0-1.noarch",
        "tinyhttpd-1.0-1.x86_64",
    ]
    for p in data["packages"]:
        assert p["url"].startswith(rpm_universe.repo_url()) and len(p["sha256"]) == 64
    assert smith("lock", str(recipe), "--cache-dir", cache).returncode == 0
    assert (tmp_path / "smith.lock").read_bytes() == first


def test_sha1_repositories_are_pinned_by_sha256(rpm_universe: Universe, tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path / "r.yaml", rpm_universe.repo_url("main-bz2"), ["hello"])
    proc = smith("lock", str(recipe), "--cache-dir", str(tmp_path / "cache"))
    assert proc.returncode == 0, proc.stderr
    lock = read_lock(tmp_path / "smith.lock")
    assert {p.checksum.algo for p in lock.packages} == {"sha256"}


def test_the_lock_wins_over_what_the_repository_serves_later(
    rpm_universe: Universe, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(rpm_universe.repo_dir(), repo)
    recipe = write_recipe(tmp_path / "r.yaml", str(repo), ["hello"])
    assert smith("lock", str(recipe), "--cache-dir", str(tmp_path / "c")).returncode == 0
    lock = read_lock(tmp_path / "smith.lock")
    fetcher = Fetcher(tmp_path / "c")
    before = [p.read_bytes() for p in fetch_locked(lock, fetcher)]
    # The repository now serves other bytes under the same name: the lock refuses them.
    shutil.copy(
        rpm_universe.repo_dir() / "busybox-1.0-1.x86_64.rpm", repo / "hello-1.0-1.x86_64.rpm"
    )
    with pytest.raises(PackageError, match=r"checksum mismatch for .*hello-1\.0-1\.x86_64\.rpm"):
        fetch_locked(lock, fetcher)
    assert len(before) == len(lock.packages)


def test_offline_lock_fails_at_once(rpm_universe: Universe, tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path / "r.yaml", rpm_universe.repo_url(), ["hello"])
    proc = smith("lock", str(recipe), "--offline", "--cache-dir", str(tmp_path / "c"))
    assert proc.returncode == 1
    assert proc.stderr.startswith("smith: error: offline mode: refusing to download http://")
    assert len(proc.stderr.splitlines()) == 1


def test_unsatisfiable_recipe_is_one_line(rpm_universe: Universe, tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path / "r.yaml", rpm_universe.repo_url(), ["broken"])
    proc = smith("lock", str(recipe), "--cache-dir", str(tmp_path / "c"))
    assert proc.returncode == 1
    assert "nothing provides libmissing.so.1()(64bit) needed by broken-1.0-1.x86_64" in proc.stderr
    assert len(proc.stderr.splitlines()) == 1
    assert not (tmp_path / "smith.lock").exists()


def test_locked_refuses_more_than_the_lock(rpm_universe: Universe, tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path / "r.yaml", rpm_universe.repo_url(), ["hello"])
    assert smith("lock", str(recipe), "--cache-dir", str(tmp_path / "c")).returncode == 0
    lock = read_lock(tmp_path / "smith.lock")
    check_lock_covers(lock, ["hello"], arch="x86_64", excludes=[], weak=False)
    with pytest.raises(ResolveError, match="does not cover 'curl'"):
        check_lock_covers(lock, ["hello", "curl"], arch="x86_64", excludes=[], weak=False)
    with pytest.raises(ResolveError, match="arch 'x86_64', not 'aarch64'"):
        check_lock_covers(lock, ["hello"], arch="aarch64", excludes=[], weak=False)


ONE_SECTION = (
    '{"version": 1, "arch": "x86_64", "requests": [], "excludes": [], "weak": false, '
    '"packages": []}'
)
BAD_LOCKS = [
    ("{", "not valid JSON"),
    ('{"version": 7}', "unsupported lock version 7"),
    ('{"version": 1, "arch": "x86_64", "requests": []}', r"packages is missing"),
    ('{"version": 1, "packages": [{"name": "a"}]}', r"packages\[0\]\.sha256 is missing"),
    ('{"version": 1, "packages": [{"sha256": "abc"}]}', r"sha256 is not a sha256 digest: 'abc'"),
    # Damaged or foreign files: one error naming the lock, never a traceback.
    ("\udcff\udcfe{}", "smith.lock is not UTF-8"),
    ("[1, 2]", "smith.lock is not a JSON object"),
    (
        '{"version": 1, "arch": "x86_64", "requests": ["a"], "excludes": [1, "b"], '
        '"weak": false, "packages": []}',
        r"excludes\[0\] is not a string: 1",
    ),
    # A lock of several architectures: the others' sections under `arches`.
    (ONE_SECTION[:-1] + ', "arches": []}', r"smith.lock.arches is not an object"),
    (ONE_SECTION[:-1] + ', "arches": {"arm64": {}}}', r"arches.arm64: unknown architecture"),
    (ONE_SECTION[:-1] + ', "arches": {"x86_64": {}}}', r"repeats the top-level architecture"),
    (ONE_SECTION[:-1] + ', "arches": {"aarch64": {"packages": []}}}', r"aarch64.requests is"),
]


@pytest.mark.parametrize(("text", "error"), BAD_LOCKS)
def test_bad_locks(tmp_path: Path, text: str, error: str) -> None:
    (tmp_path / "smith.lock").write_bytes(text.encode("utf-8", "surrogateescape"))
    with pytest.raises(PackageError, match=error):
        read_lock(tmp_path / "smith.lock")


BAD_RECIPES = [
    ("[1, 2]", "a recipe is a mapping of keys, not a list"),
    ("repos: [x]", "no `package` or `packages`"),
    ("package: hello", "`repos` must list at least one repository"),
    ("package: hello\nrepos: [{priority: 1}]", r"repos\[0\]\.baseurl: field required"),
    (
        "package: a\nrepos: [{baseurl: x, priority: high}]",
        r"repos\[0\]\.priority: input should be a valid integer, got 'high'",
    ),
    (
        "package: a\nrepos: [{baseurl: x, gpgcheck: maybe}]",
        r"repos\[0\]\.gpgcheck: input should be",
    ),
    # A scalar is its text, as in the original (`packages: [1]` names a package "1"); a
    # list or a map is no string.
    ("packages: [[1]]\nrepos: [x]", r"packages\[0\]: input should be a valid string, got list"),
    ("package: hello\nrepos: [x]\narch: {a: 5}", "arch: input should be a valid string, got dict"),
    ("package: a\nrepos: [ftp://127.0.0.1/x]", "unsupported URL scheme 'ftp' in ftp://127.0.0.1/x"),
    ("package: h\udcffllo\n", r"r\.yaml: YAML error: unacceptable character #x00ff"),
]


@pytest.mark.parametrize(("text", "error"), BAD_RECIPES)
def test_bad_recipes(tmp_path: Path, text: str, error: str) -> None:
    (tmp_path / "r.yaml").write_bytes(text.encode("utf-8", "surrogateescape"))
    proc = smith("lock", str(tmp_path / "r.yaml"), "--cache-dir", str(tmp_path / "c"))
    assert proc.returncode != 0
    assert re.search(error, proc.stderr), proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_relative_baseurl_is_relative_to_the_recipe(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text("package: hello\nrepos: [{baseurl: repo, gpgkey: k.asc}]\n")
    configs = repo_configs(load_recipe(str(tmp_path / "r.yaml")), str(tmp_path / "r.yaml"))
    assert configs[0].baseurl == str(tmp_path / "repo")
    assert configs[0].gpgkey == (str(tmp_path / "k.asc"),)


def test_a_lock_of_a_repository_beside_the_recipe_moves_with_it(
    rpm_universe: Universe, tmp_path: Path
) -> None:
    # A checkout with its packages beside the recipe (a relative baseurl, a local .rpm)
    # locks to the same smith.lock wherever it is, and the lock builds in another place.
    first = tmp_path / "here" / "project"
    shutil.copytree(rpm_universe.repo_dir("main"), first / "repo")
    shutil.copy(rpm_universe.repo_dir("main") / "hello-1.0-1.x86_64.rpm", first)
    write_recipe(first / "smith.yaml", "repo", ["./hello-1.0-1.x86_64.rpm"], cmd=["/usr/bin/hello"])
    assert (
        smith("lock", str(first / "smith.yaml"), "--cache-dir", str(tmp_path / "c")).returncode == 0
    )
    text = (first / "smith.lock").read_text()
    assert str(tmp_path) not in text
    moved = tmp_path / "there" / "checkout"
    moved.parent.mkdir()
    shutil.move(first, moved)
    proc = smith(
        "build", str(moved), "--locked", "--offline", "-o", str(tmp_path / "img.tar"),
        "--cache-dir", str(tmp_path / "c2"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (
        smith("lock", str(moved / "smith.yaml"), "--cache-dir", str(tmp_path / "c")).returncode == 0
    )
    assert (moved / "smith.lock").read_text() == text


def test_lock_is_not_written_through_a_planted_temporary_name(
    rpm_universe: Universe, tmp_path: Path
) -> None:
    # A checkout can carry any name beside its recipe: writing the lock must not follow a
    # symlink there (it overwrote the file it pointed at with the lock).
    victim = tmp_path / "victim"
    victim.write_text("keep me\n")
    project = tmp_path / "project"
    project.mkdir()
    recipe = write_recipe(project / "smith.yaml", rpm_universe.repo_url(), ["hello"])
    (project / ".smith.lock.tmp").symlink_to(victim)
    proc = smith("lock", str(recipe), "--cache-dir", str(tmp_path / "c"))
    assert proc.returncode == 0, proc.stderr
    assert victim.read_text() == "keep me\n"
    assert read_lock(project / "smith.lock").requests == ("hello",)


def test_plan_uses_the_lock_and_locked_refuses_to_resolve(
    rpm_universe: Universe, tmp_path: Path
) -> None:
    from smith.resolve.plan import plan_packages
    from smith.resolve.repo import RepoConfig

    recipe = write_recipe(tmp_path / "r.yaml", rpm_universe.repo_url(), ["hello"])
    assert smith("lock", str(recipe), "--cache-dir", str(tmp_path / "c")).returncode == 0
    lock_path = tmp_path / "smith.lock"
    fetcher = Fetcher(tmp_path / "c", offline=True)  # the lock needs no repository at all
    gone = [RepoConfig("main", str(tmp_path / "no-such-repo"))]
    pkgs = plan_packages(["hello"], gone, fetcher, arch="x86_64", lock_path=lock_path, locked=True)
    assert pkgs == read_lock(lock_path).packages
    with pytest.raises(ResolveError, match="does not cover 'curl'"):
        plan_packages(["curl"], gone, fetcher, arch="x86_64", lock_path=lock_path, locked=True)
    with pytest.raises(ResolveError, match="--locked, but there is no lock"):
        plan_packages(
            ["hello"], gone, fetcher, arch="x86_64", lock_path=tmp_path / "x", locked=True
        )
    online = Fetcher(tmp_path / "c")
    repos = [RepoConfig("main", rpm_universe.repo_url())]
    fresh = plan_packages(["curl"], repos, online, arch="x86_64", lock_path=lock_path)
    assert "curl" in [p.name for p in fresh]
