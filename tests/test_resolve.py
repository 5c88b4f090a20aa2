"""Resolution against the fixture universe, over HTTP, with every metadata compression."""

from __future__ import annotations

from pathlib import Path

import pytest

from smith.errors import PackageError, ResolveError
from smith.resolve.fetch import Fetcher
from smith.resolve.repo import RepoConfig, load_repos
from smith.resolve.rpm import add_rpm_to_tree, read_rpm
from smith.resolve.solver import resolve
from smith.resolve.store import ContentStore
from smith.tree import FileTree, Kind
from tests.rpm_universe import Universe


def names(pkgs: tuple) -> list[str]:  # type: ignore[type-arg]
    return [p.nevra for p in pkgs]


@pytest.fixture
def fetcher(tmp_path: Path) -> Fetcher:
    return Fetcher(tmp_path / "cache", retries=1, backoff=0.01)


@pytest.mark.parametrize("variant", ["main", "main-xz", "main-zst", "main-bz2"])
def test_every_metadata_compression(rpm_universe: Universe, fetcher: Fetcher, variant: str) -> None:
    repos = load_repos([RepoConfig(variant, rpm_universe.repo_url(variant))], fetcher)
    got = resolve(["tinyhttpd"], repos)
    assert names(got) == [
        "filesystem-1.0-1.noarch",
        "glibc-1.0-1.x86_64",
        "setup-1.0-1.noarch",
        "tinyhttpd-1.0-1.x86_64",
    ]
    assert all(p.repo_id == variant for p in got)
    want_algo = "sha1" if variant == "main-bz2" else "sha256"
    assert {p.checksum.algo for p in got} == {want_algo}


RESOLUTIONS = [
    # request, packages expected among the result (by nevra), packages that must be absent
    (
        ["curl"],
        [
            "curl-1.0-1.x86_64",
            "libcurl-1.0-1.x86_64",
            "openssl-libs-1.0-1.x86_64",
            "ca-certificates-1.0-1.noarch",
            "zlib-1.0-2.x86_64",
            "glibc-1.0-1.x86_64",
        ],
        ["zlib-1.0-1.x86_64"],
    ),
    (
        ["/usr/bin/cat"],
        ["coreutils-1.0-1.x86_64", "pcre2-1.0-1.x86_64", "libselinux-1.0-1.x86_64"],
        [],
    ),
    (["libz.so.1()(64bit)"], ["zlib-1.0-2.x86_64"], []),
    (["webserver"], ["tinyhttpd-1.0-1.x86_64", "setup-1.0-1.noarch"], []),
    (["webtools"], ["webtools-1.0-1.x86_64"], ["busybox-1.0-1.x86_64"]),
    (["docs-noarch"], ["docs-noarch-1.0-1.noarch"], ["glibc-1.0-1.x86_64"]),
    (["hello", "busybox"], ["hello-1.0-1.x86_64", "busybox-1.0-1.x86_64"], []),
    (["/usr/bin/sh"], ["busybox-1.0-1.x86_64"], ["glibc-1.0-1.x86_64"]),  # static
]


@pytest.mark.parametrize(("requests", "present", "absent"), RESOLUTIONS)
def test_resolutions(
    rpm_universe: Universe,
    fetcher: Fetcher,
    requests: list[str],
    present: list[str],
    absent: list[str],
) -> None:
    repos = load_repos([RepoConfig("main", rpm_universe.repo_url())], fetcher)
    got = names(resolve(requests, repos))
    for p in present:
        assert p in got
    for p in absent:
        assert p not in got
    assert len(set(got)) == len(got)


UNSATISFIABLE = [
    (["broken"], "nothing provides libmissing.so.1"),
    (["glibc", "conflicts-glibc"], "conflicts with glibc"),
    (["no-such-package"], "no package provides 'no-such-package'"),
    (["lib32-demo"], "lib32-demo-1.0-1.i686 is disabled"),
    (["/usr/bin/nothing-here"], "no package provides '/usr/bin/nothing-here'"),
]


@pytest.mark.parametrize(("requests", "error"), UNSATISFIABLE)
def test_unsatisfiable(
    rpm_universe: Universe, fetcher: Fetcher, requests: list[str], error: str
) -> None:
    repos = load_repos([RepoConfig("main", rpm_universe.repo_url())], fetcher)
    with pytest.raises(ResolveError, match=error):
        resolve(requests, repos)


def test_weak_dependencies_only_when_asked(rpm_universe: Universe, fetcher: Fetcher) -> None:
    repos = load_repos([RepoConfig("main", rpm_universe.repo_url())], fetcher)
    assert "busybox-1.0-1.x86_64" in names(resolve(["webtools"], repos, weak=True))


def test_excludes(rpm_universe: Universe, fetcher: Fetcher) -> None:
    repos = load_repos([RepoConfig("main", rpm_universe.repo_url())], fetcher)
    with pytest.raises(ResolveError, match="tinyhttpd"):
        resolve(["webtools"], repos, excludes=["tinyhttpd"])
    with pytest.raises(ResolveError):
        resolve(["tinyhttpd"], repos, excludes=["glib*"])


def test_other_arch(rpm_universe: Universe, fetcher: Fetcher) -> None:
    repos = load_repos([RepoConfig("main", rpm_universe.repo_url())], fetcher)
    assert names(resolve(["lib32-demo"], repos, arch="i686")) == ["lib32-demo-1.0-1.i686"]


@pytest.mark.parametrize(("main_prio", "extra_prio", "want"), [(10, 20, "1.0"), (20, 10, "2.0")])
def test_priorities(
    rpm_universe: Universe, fetcher: Fetcher, main_prio: int, extra_prio: int, want: str
) -> None:
    repos = load_repos(
        [
            RepoConfig("main", rpm_universe.repo_url(), priority=main_prio),
            RepoConfig("extra", rpm_universe.repo_url("extra"), priority=extra_prio),
        ],
        fetcher,
    )
    (httpd,) = [p for p in resolve(["tinyhttpd"], repos) if p.name == "tinyhttpd"]
    assert httpd.version == want
    assert httpd.repo_id == ("main" if want == "1.0" else "extra")


@pytest.mark.parametrize("how", ["dir", "file"])
def test_local_repositories(rpm_universe: Universe, fetcher: Fetcher, how: str) -> None:
    d = rpm_universe.repo_dir()
    url = str(d) if how == "dir" else f"file://{d}"
    repos = load_repos([RepoConfig("main", url)], fetcher)
    (hello,) = [p for p in resolve(["hello"], repos) if p.name == "hello"]
    path = fetcher.fetch(hello.url, hello.checksum)
    assert read_rpm(path).nevra == "hello-1.0-1.x86_64"


def test_fetch_and_extract_the_http_server(
    rpm_universe: Universe, fetcher: Fetcher, tmp_path: Path
) -> None:
    repos = load_repos([RepoConfig("main", rpm_universe.repo_url())], fetcher)
    tree = FileTree()
    store = ContentStore(tmp_path / "store")
    for pkg in resolve(["tinyhttpd"], repos):
        add_rpm_to_tree(tree, fetcher.fetch(pkg.url, pkg.checksum), store)
    assert tree.get("usr/sbin/tinyhttpd").origin == "tinyhttpd-1.0-1.x86_64"  # type: ignore[union-attr]
    assert tree.get("lib64").kind is Kind.SYMLINK  # type: ignore[union-attr]
    assert tree.lookup("lib64/ld-linux-x86-64.so.2").kind is Kind.FILE  # type: ignore[union-attr]
    assert tree.get("etc/passwd") is not None
    assert tree.get("var/log/lastlog") is None  # %ghost
    assert tree.get("tmp").mode == 0o1777  # type: ignore[union-attr]


def test_repository_errors(rpm_universe: Universe, fetcher: Fetcher, tmp_path: Path) -> None:
    with pytest.raises(PackageError, match="HTTP 404"):
        load_repos([RepoConfig("gone", rpm_universe.repo_url("nonexistent"))], fetcher)
    with pytest.raises(PackageError, match="cannot read"):
        load_repos([RepoConfig("gone", str(tmp_path / "nothing"))], fetcher)
    offline = Fetcher(tmp_path / "c2", offline=True)
    with pytest.raises(
        PackageError, match=r"offline mode: refusing to download http://127\.0\.0\.1"
    ):
        load_repos([RepoConfig("main", rpm_universe.repo_url())], offline)


def test_old_sha_checksum_name_and_corrupt_metadata(
    rpm_universe: Universe, fetcher: Fetcher, tmp_path: Path
) -> None:
    import shutil

    repo = tmp_path / "repo"
    shutil.copytree(rpm_universe.repo_dir("main-bz2"), repo)
    repomd = repo / "repodata/repomd.xml"
    # createrepo before 0.9 wrote type="sha" for sha1.
    repomd.write_text(repomd.read_text().replace('type="sha1"', 'type="sha"'))
    repos = load_repos([RepoConfig("old", str(repo))], fetcher)
    assert "hello-1.0-1.x86_64" in names(resolve(["hello"], repos))
    primary = next(p for p in (repo / "repodata").iterdir() if "primary" in p.name)
    primary.write_bytes(primary.read_bytes()[:-10])
    with pytest.raises(PackageError, match=r"checksum mismatch for .*primary\.xml\.bz2: sha1 "):
        load_repos([RepoConfig("old", str(repo))], Fetcher(tmp_path / "fresh"))


def test_repomd_errors(tmp_path: Path, fetcher: Fetcher) -> None:
    (tmp_path / "repodata").mkdir()
    repomd = tmp_path / "repodata/repomd.xml"
    for text, error in [
        ("<repomd", "is not valid repomd.xml"),
        ('<repomd xmlns="http://linux.duke.edu/metadata/repo"/>', "lists no primary metadata"),
        (
            '<repomd xmlns="http://linux.duke.edu/metadata/repo"><data type="primary">'
            '<checksum type="md4">00</checksum><location href="p.xml"/></data></repomd>',
            "unknown checksum type 'md4'",
        ),
        (
            '<repomd xmlns="http://linux.duke.edu/metadata/repo"><data type="primary">'
            '<location href="p.xml"/></data></repomd>',
            "'primary' lacks a location or checksum",
        ),
    ]:
        repomd.write_text(text)
        with pytest.raises(PackageError, match=error):
            load_repos([RepoConfig("r", str(tmp_path))], fetcher)


def test_location_xml_base(rpm_universe: Universe, fetcher: Fetcher, tmp_path: Path) -> None:
    """A metadata-only repository whose packages live elsewhere (xml:base)."""
    import gzip
    import hashlib
    import shutil

    repo = tmp_path / "meta"
    shutil.copytree(rpm_universe.repo_dir() / "repodata", repo / "repodata")
    primary = next(p for p in (repo / "repodata").iterdir() if "primary" in p.name)
    elsewhere = rpm_universe.repo_url()
    xml = gzip.decompress(primary.read_bytes()).replace(
        b"<location href=", f'<location xml:base="{elsewhere}" href='.encode()
    )
    packed = gzip.compress(xml, mtime=0)
    repomd = repo / "repodata/repomd.xml"
    old_sum = hashlib.sha256(primary.read_bytes()).hexdigest()
    new_sum = hashlib.sha256(packed).hexdigest()
    # The checksum is also part of the file's name in repomd.xml's location.
    (primary.parent / primary.name.replace(old_sum, new_sum)).write_bytes(packed)
    repomd.write_text(repomd.read_text().replace(old_sum, new_sum))
    repos = load_repos([RepoConfig("meta", str(repo))], fetcher)
    (hello,) = [p for p in resolve(["hello"], repos) if p.name == "hello"]
    assert hello.url == elsewhere + "hello-1.0-1.x86_64.rpm"
    assert read_rpm(fetcher.fetch(hello.url, hello.checksum)).name == "hello"
