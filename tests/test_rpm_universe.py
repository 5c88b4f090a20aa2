"""The fixture universe itself: what rpmbuild wrote is real, complete and runs on this host."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from smith.resolve.fetch import Fetcher
from smith.resolve.repo import RepoConfig, load_repos
from smith.resolve.rpm import add_rpm_to_tree, read_rpm, rpm_file_listing
from smith.resolve.solver import resolve
from smith.resolve.store import ContentStore
from smith.tree import FileTree, HostFile, Kind
from tests.rpm_universe import Universe
from tests.test_rpm_read import rpm_qlv
from tests.tools import require_tool


def test_every_package_matches_rpm(rpm_universe: Universe) -> None:
    for name in ("main", "extra"):
        for path in rpm_universe.packages(name):
            assert sorted(rpm_file_listing(read_rpm(path))) == sorted(rpm_qlv(path)), path.name


def test_automatic_soname_dependencies(rpm_universe: Universe) -> None:
    glibc = read_rpm(rpm_universe.repo_dir() / "glibc-1.0-1.x86_64.rpm")
    provides = {d.name for d in glibc.provides}
    assert {"rtld(GNU_HASH)", "libc.so.6()(64bit)", "libnss_files.so.2()(64bit)"} <= provides
    curl = read_rpm(rpm_universe.repo_dir() / "libcurl-1.0-1.x86_64.rpm")
    requires = {d.name for d in curl.requires}
    assert {"libssl.so.3()(64bit)", "libz.so.1()(64bit)", "rtld(GNU_HASH)"} <= requires


def materialize(tree: FileTree, root: Path) -> None:
    """Write a tree to a directory (a test helper; the real writer is the build's)."""
    for e in tree:
        dest = root / e.path
        if e.kind is Kind.DIR:
            dest.mkdir(exist_ok=True)
        elif e.kind is Kind.SYMLINK:
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(e.target, dest)
        elif e.kind is Kind.FILE:
            assert isinstance(e.content, HostFile)
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(Path(e.content.path).read_bytes())
            dest.chmod(stat.S_IMODE(e.mode) & 0o777)


@pytest.mark.parametrize(
    ("request_", "argv", "expect"),
    [
        ("hello", ["usr/bin/hello"], "hello from smith"),
        ("/usr/bin/cat", ["usr/bin/ls", "-d", "/"], "/"),  # ls needs libselinux and pcre2
        ("curl", ["usr/bin/curl", "--version"], "curl "),
    ],
)
def test_resolved_programs_run_with_their_own_libraries(
    rpm_universe: Universe, tmp_path: Path, request_: str, argv: list[str], expect: str
) -> None:
    fetcher = Fetcher(tmp_path / "cache")
    repos = load_repos([RepoConfig("main", rpm_universe.repo_url())], fetcher)
    tree = FileTree()
    store = ContentStore(tmp_path / "store")
    for pkg in resolve([request_], repos):
        add_rpm_to_tree(tree, fetcher.fetch(pkg.url, pkg.checksum), store)
    root = tmp_path / "root"
    root.mkdir()
    materialize(tree, root)
    # The image's own ld.so and libraries, never the host's.
    ldso = root / "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
    proc = subprocess.run(
        [
            str(ldso),
            "--library-path",
            str(root / "usr/lib/x86_64-linux-gnu"),
            str(root / argv[0]),
            *argv[1:],
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert expect in proc.stdout


def test_old_paths_follow_the_merged_usr_symlinks(rpm_universe: Universe, tmp_path: Path) -> None:
    """As rpm does on disk: /sbin/x of an old package lands in usr/sbin when sbin is a link."""
    from tests.rpm_craft import craft_rpm
    from tests.tools import require_shared

    store = ContentStore(tmp_path / "store")
    tree = FileTree()
    add_rpm_to_tree(tree, rpm_universe.repo_dir() / "filesystem-1.0-1.noarch.rpm", store)
    add_rpm_to_tree(tree, require_shared("rpm-corpus", "info-4.13a-10.fc14.i686.rpm"), store)
    assert tree.get("sbin").kind is Kind.SYMLINK  # type: ignore[union-attr]
    entry = tree.get("usr/sbin/install-info")
    assert entry is not None and entry.origin == "info-4.13a-10.fc14.i686"
    crafted = craft_rpm(tmp_path / "c.rpm", [("./lib64", "dir", ""), ("./lib64/x", "file", "x")])
    add_rpm_to_tree(tree, crafted, store)
    assert tree.get("lib64").kind is Kind.SYMLINK  # type: ignore[union-attr]
    assert tree.get("usr/lib64/x") is not None


def test_tinyhttpd_serves_from_its_own_root_through_nss(
    rpm_universe: Universe, tmp_path: Path
) -> None:
    """The HTTP-server request makes a root that runs: getpwnam("nobody") needs the image's
    nsswitch.conf, passwd and libnss_files, all from the resolved packages."""
    import socket
    import urllib.request

    from tests.tools import require_root

    require_root()
    chroot = require_tool("chroot")
    fetcher = Fetcher(tmp_path / "cache")
    repos = load_repos([RepoConfig("main", rpm_universe.repo_url())], fetcher)
    tree = FileTree()
    store = ContentStore(tmp_path / "store")
    for pkg in resolve(["webserver"], repos):
        add_rpm_to_tree(tree, fetcher.fetch(pkg.url, pkg.checksum), store)
    root = tmp_path / "root"
    root.mkdir()
    materialize(tree, root)
    (root / "srv/index.html").write_text("served by tinyhttpd\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [chroot, str(root), "/usr/sbin/tinyhttpd", str(port), "/srv", "nobody"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert "as nobody" in proc.stdout.readline()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=10) as r:
            assert r.read() == b"served by tinyhttpd\n"
    finally:
        proc.kill()
        proc.wait()
