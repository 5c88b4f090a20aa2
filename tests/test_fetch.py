"""Downloads under faults: retries with backoff, checksum errors, and an atomic cache."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from smith.errors import PackageError
from smith.resolve.fetch import Checksum, Fetcher
from smith.resolve.repo import RepoConfig, load_repos
from smith.resolve.solver import resolve
from tests.fault_server import FaultServer, fault_server
from tests.http_proxy import http_proxy
from tests.rpm_universe import Universe
from tests.tls import self_signed

PKG = "repos/main/hello-1.0-1.x86_64.rpm"


@pytest.fixture
def server(rpm_universe: Universe) -> Iterator[FaultServer]:
    with fault_server(rpm_universe.root) as s:
        yield s


def checksum_of(path: Path) -> Checksum:
    return Checksum("sha256", hashlib.sha256(path.read_bytes()).hexdigest())


def fetcher_for(tmp_path: Path, **kw: object) -> Fetcher:
    args: dict[str, object] = {"retries": 3, "backoff": 0.01, "timeout": 0.5, **kw}
    return Fetcher(tmp_path / "cache", **args)  # type: ignore[arg-type]


def cache_files(f: Fetcher) -> list[str]:
    return sorted(p.name for p in (f.cache_dir / "blobs").rglob("*") if p.is_file())


@pytest.mark.parametrize("fault", ["500", "reset", "truncate", "wrong", "stall"])
def test_transient_fault_is_retried(
    rpm_universe: Universe, server: FaultServer, tmp_path: Path, fault: str
) -> None:
    want = checksum_of(rpm_universe.root / PKG)
    server.plan(PKG, fault)
    f = fetcher_for(tmp_path)
    path = f.fetch(server.url + PKG, want)
    assert checksum_of(path) == want
    assert server.hits[PKG] == 2
    assert cache_files(f) == [want.hexdigest]


def test_persistent_wrong_bytes_fail_and_cache_nothing(
    rpm_universe: Universe, server: FaultServer, tmp_path: Path
) -> None:
    want = checksum_of(rpm_universe.root / PKG)
    server.plan(PKG, *["wrong"] * 4)
    f = fetcher_for(tmp_path)
    with pytest.raises(
        PackageError,
        match=r"hello-1\.0-1\.x86_64\.rpm failed after 4 attempts: "
        r"checksum mismatch",
    ):
        f.fetch(server.url + PKG, want)
    assert server.hits[PKG] == 4
    assert cache_files(f) == []  # neither the bad file nor a partial one


def test_interrupted_download_is_not_cached(
    rpm_universe: Universe, server: FaultServer, tmp_path: Path
) -> None:
    want = checksum_of(rpm_universe.root / PKG)
    server.plan(PKG, "truncate", "truncate")
    f = fetcher_for(tmp_path, retries=1)
    with pytest.raises(PackageError, match="failed after 2 attempts"):
        f.fetch(server.url + PKG, want)
    assert cache_files(f) == []
    # The next try downloads again (nothing half-written was taken as cached).
    assert checksum_of(f.fetch(server.url + PKG, want)) == want
    assert server.hits[PKG] == 3


def test_404_is_not_retried(server: FaultServer, tmp_path: Path) -> None:
    f = fetcher_for(tmp_path)
    with pytest.raises(PackageError, match=r"missing\.rpm failed: HTTP 404"):
        f.fetch(server.url + "repos/main/missing.rpm", Checksum("sha256", "0" * 64))
    assert server.hits["repos/main/missing.rpm"] == 1


def test_backoff_gives_up(server: FaultServer, tmp_path: Path) -> None:
    server.plan("repos/main/repodata/repomd.xml", *["500"] * 3)
    f = fetcher_for(tmp_path, retries=2)
    with pytest.raises(PackageError, match=r"repomd\.xml failed after 3 attempts: HTTP 500"):
        load_repos([RepoConfig("main", server.url + "repos/main")], f)


def test_cache_serves_offline_and_refuses_a_corrupted_entry(
    rpm_universe: Universe, server: FaultServer, tmp_path: Path
) -> None:
    want = checksum_of(rpm_universe.root / PKG)
    f = fetcher_for(tmp_path)
    path = f.fetch(server.url + PKG, want)
    offline = fetcher_for(tmp_path, offline=True)
    assert offline.fetch(server.url + PKG, want) == path
    assert server.hits[PKG] == 1
    # A cache entry damaged after the fact is dropped and fetched again, never used.
    path.chmod(0o644)
    path.write_bytes(b"garbage")
    with pytest.raises(PackageError, match="offline mode"):
        offline.fetch(server.url + PKG, want)
    assert checksum_of(f.fetch(server.url + PKG, want)) == want
    assert server.hits[PKG] == 2


def test_metadata_faults_during_resolution(server: FaultServer, tmp_path: Path) -> None:
    repo = "repos/main-zst/"
    repomd = (server.root / repo / "repodata/repomd.xml").read_text()
    primary = next(p for p in (server.root / repo / "repodata").iterdir() if "primary" in p.name)
    assert primary.name in repomd
    server.plan(repo + "repodata/" + primary.name, "wrong", "reset")
    f = fetcher_for(tmp_path)
    repos = load_repos([RepoConfig("zst", server.url + repo)], f)
    assert [p.name for p in resolve(["hello"], repos)][-1] == "hello"
    assert server.hits[repo + "repodata/" + primary.name] == 3


def test_https_repository(
    rpm_universe: Universe, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = self_signed(tmp_path)
    with fault_server(rpm_universe.root, tls=(cert, key)) as server:
        config = RepoConfig("tls", server.url + "repos/main/")
        # An unknown certificate authority fails at once, without retries.
        with pytest.raises(PackageError, match="TLS error fetching https://127"):
            load_repos([config], fetcher_for(tmp_path / "a"))
        assert server.hits["repos/main/repodata/repomd.xml"] == 0
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
        f = fetcher_for(tmp_path / "b")
        repos = load_repos([config], f)
        (hello,) = [p for p in resolve(["hello"], repos) if p.name == "hello"]
        assert hello.url.startswith("https://")
        assert checksum_of(f.fetch(hello.url, hello.checksum)) == hello.checksum


def test_parallel_fetch_keeps_order_and_survives_faults(
    rpm_universe: Universe, server: FaultServer, tmp_path: Path
) -> None:
    from smith.resolve.packages import fetch_packages

    f = fetcher_for(tmp_path)
    repos = load_repos([RepoConfig("main", server.url + "repos/main/")], f)
    pkgs = resolve(["curl"], repos)
    for p in pkgs[::3]:
        server.plan(p.url.removeprefix(server.url), "reset")
    paths = fetch_packages(pkgs, f, repos, workers=4)
    assert [checksum_of(p) for p in paths] == [p.checksum for p in pkgs]


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from smith.resolve.fetch import default_cache_dir

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "smith"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home/.cache/smith"


REPOMD = "repos/main/repodata/repomd.xml"


@pytest.mark.parametrize("validators", [{"etag"}, {"last-modified"}, {"etag", "last-modified"}])
def test_repomd_is_revalidated_not_downloaded_again(
    rpm_universe: Universe, server: FaultServer, tmp_path: Path, validators: set[str]
) -> None:
    server.validators = validators
    config = RepoConfig(id="main", baseurl=server.url + "repos/main")
    f = fetcher_for(tmp_path)
    first = load_repos([config], f)
    again = load_repos([config], fetcher_for(tmp_path))
    assert again == first
    assert server.statuses[REPOMD] == [200, 304]


def test_a_changed_repomd_is_downloaded(
    rpm_universe: Universe, server: FaultServer, tmp_path: Path
) -> None:
    server.validators = {"etag"}
    url = server.url + REPOMD
    f = fetcher_for(tmp_path)
    original = f.fetch_revalidated(url)
    # The server's copy changes (another revision): its ETag with it.
    server.root = tmp_path / "moved"
    (server.root / REPOMD).parent.mkdir(parents=True)
    (server.root / REPOMD).write_bytes(original + b"<!-- new revision -->\n")
    assert f.fetch_revalidated(url) == original + b"<!-- new revision -->\n"
    assert f.fetch_revalidated(url) == original + b"<!-- new revision -->\n"
    assert server.statuses[REPOMD] == [200, 200, 304]


def test_no_validators_no_kept_copy_and_damage_means_download(
    rpm_universe: Universe, server: FaultServer, tmp_path: Path
) -> None:
    url = server.url + REPOMD
    f = fetcher_for(tmp_path)
    f.fetch_revalidated(url)
    f.fetch_revalidated(url)
    assert server.statuses[REPOMD] == [200, 200]  # nothing to ask conditionally with
    assert not (f.cache_dir / "revalidate").exists()
    server.validators = {"etag"}
    f.fetch_revalidated(url)
    for body in (f.cache_dir / "revalidate").glob("*.body"):
        body.write_bytes(b"damaged")
    assert f.fetch_revalidated(url) == (rpm_universe.root / REPOMD).read_bytes()
    assert server.statuses[REPOMD] == [200, 200, 200, 200]  # a damaged copy is not offered


def test_offline_still_refuses_repomd(server: FaultServer, tmp_path: Path) -> None:
    with pytest.raises(PackageError, match="offline mode"):
        fetcher_for(tmp_path, offline=True).fetch_revalidated(server.url + REPOMD)


def basic(login: str) -> str:
    return "Basic " + base64.b64encode(login.encode()).decode()


def test_downloads_go_through_the_environment_proxy(
    rpm_universe: Universe, server: FaultServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    want = checksum_of(rpm_universe.root / PKG)
    for name in ("http_proxy", "all_proxy", "no_proxy", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    with http_proxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url.replace("http://", "http://user:s%40cret@"))
        f = fetcher_for(tmp_path)
        assert checksum_of(f.fetch(server.url + PKG, want)) == want
        assert proxy.asked == [server.url + PKG]
        assert proxy.auth == [basic("user:s@cret")]
        # NO_PROXY as requests read it: an IPv4 network in CIDR form too.
        monkeypatch.setenv("NO_PROXY", "10.0.0.0/8, 127.0.0.0/8")
        assert f.fetch_bytes(server.url + REPOMD) == (server.root / REPOMD).read_bytes()
        assert len(proxy.asked) == 1 and server.hits[REPOMD] == 1


def test_a_dead_proxy_is_named_not_taken_for_the_repository(
    rpm_universe: Universe, server: FaultServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("http_proxy", "all_proxy", "no_proxy", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", "http://user:secret@127.0.0.1:1")
    with pytest.raises(PackageError) as failed:
        fetcher_for(tmp_path).fetch_bytes(server.url + REPOMD)
    assert "the proxy http://127.0.0.1:1: [Errno 111] Connection refused" in str(failed.value)
    assert "secret" not in str(failed.value)
    assert server.hits[REPOMD] == 0


def test_redirects_stay_on_http_and_credentials_stay_with_their_host(
    rpm_universe: Universe, server: FaultServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = (rpm_universe.root / PKG).read_bytes()
    netrc = tmp_path / "netrc"
    netrc.write_text("machine localhost login other password theirs\n")
    monkeypatch.setenv("NETRC", str(netrc))
    f = fetcher_for(tmp_path)
    with_login = server.url.replace("http://", "http://me:mine@")
    server.redirects["moved.rpm"] = "/" + PKG
    assert f.fetch_bytes(with_login + "moved.rpm") == data
    assert server.authorization["moved.rpm"] == server.authorization[PKG] == [basic("me:mine")]
    # Another host (another name of this one) gets its own credentials, never these.
    server.redirects["away.rpm"] = server.url.replace("127.0.0.1", "localhost") + PKG
    assert f.fetch_bytes(with_login + "away.rpm") == data
    assert server.authorization[PKG][-1] == basic("other:theirs")
    server.redirects["file.rpm"] = "file:///etc/passwd"
    with pytest.raises(PackageError, match=r"redirects to 'file:///etc/passwd': only http"):
        f.fetch_bytes(server.url + "file.rpm")
    assert server.hits["file.rpm"] == 1  # refused, not retried
    server.redirects["loop"] = "/loop"
    with pytest.raises(PackageError, match="more than 10 redirects"):
        f.fetch_bytes(server.url + "loop")
    assert server.hits["loop"] == 11
