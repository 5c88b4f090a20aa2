"""Reading real RPMs: every corpus package's file list matches `rpm -qlvp`, payloads
extract under every compressor, digests are checked, and hostile names are refused."""

from __future__ import annotations

import contextlib
import hashlib
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smith.errors import PackageError, UnsafePathError
from smith.resolve.rpm import (
    FileFlag,
    add_rpm_to_tree,
    read_rpm,
    rpm_file_listing,
    verify_digests,
)
from smith.resolve.store import ContentStore
from smith.tree import FileTree, HostFile, Kind
from tests.rpm_craft import craft_rpm
from tests.tools import SHARED, require_shared, require_tool

CORPUS_FILES = sorted(p.name for p in (SHARED / "rpm-corpus").glob("*.rpm"))

# `rpm -qlv` columns: mode, nlink, user, group, size, month, day, year-or-time, path [-> target]
LINE = re.compile(rb"^(\S{10})\s+\d+\s+(\S+)\s+(\S+)\s+(\d+)\s+\S+\s+\d+\s+\S+\s(.*)$")


def rpm_qlv(path: Path) -> list[tuple[str, str, str, int, str, str]]:
    rpm = require_tool("rpm")
    out = subprocess.run(
        [rpm, "-qlvp", "--nosignature", str(path)], capture_output=True, check=True
    ).stdout
    rows = []
    for line in out.splitlines():
        if line.strip() == b"(contains no files)":
            continue
        m = LINE.match(line)
        assert m, line
        mode, user, group, size, rest = m.groups()
        name, _, target = rest.partition(b" -> ") if mode[:1] == b"l" else (rest, b"", b"")
        dec = lambda b: b.decode("utf-8", "surrogateescape")  # noqa: E731
        rows.append((dec(mode), dec(user), dec(group), int(size), dec(name), dec(target)))
    return rows


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> ContentStore:
    return ContentStore(tmp_path_factory.mktemp("store"))


@pytest.mark.parametrize("name", CORPUS_FILES or ["(corpus missing)"])
def test_corpus_package_matches_rpm(name: str, store: ContentStore) -> None:
    path = require_shared("rpm-corpus", name)
    pkg = read_rpm(path)
    assert pkg.name and pkg.version
    assert sorted(rpm_file_listing(pkg)) == sorted(rpm_qlv(path))
    tree = FileTree()
    add_rpm_to_tree(tree, path, store)
    for rf in pkg.files:
        entry = tree.get(rf.path)
        if rf.flags & FileFlag.GHOST:
            assert entry is None, rf.path
            continue
        assert entry is not None, rf.path
        assert entry.origin == pkg.nevra
        if stat.S_ISREG(rf.mode):
            if entry.kind is Kind.HARDLINK:
                entry = tree.get(entry.target)
                assert entry is not None
            assert entry.kind is Kind.FILE and isinstance(entry.content, HostFile)
            data = Path(entry.content.path).read_bytes()
            assert len(data) == rf.size
            if rf.digest:
                assert hashlib.new(pkg.file_digest_algo, data).hexdigest() == rf.digest
            assert stat.S_IMODE(rf.mode) == entry.mode
        elif stat.S_ISLNK(rf.mode):
            assert entry.kind is Kind.SYMLINK and entry.target == rf.link_target
        elif stat.S_ISDIR(rf.mode):
            assert entry.kind is Kind.DIR


def test_every_payload_compressor(store: ContentStore) -> None:
    contents = set()
    for comp in ("w.ufdio", "w3.zstdio", "w6.lzdio", "w6.xzdio", "w9.bzdio", "w9.gzdio"):
        tree = FileTree()
        add_rpm_to_tree(
            tree, require_shared("rpm-corpus", f"payload-test-0.1-{comp}.x86_64.rpm"), store
        )
        files = [e for e in tree if e.kind is Kind.FILE]
        assert len(files) == 1
        assert isinstance(files[0].content, HostFile)
        contents.add(Path(files[0].content.path).read_bytes())
    assert len(contents) == 1


def test_header_strings_keep_their_bytes() -> None:
    pkg = read_rpm(require_shared("rpm-corpus", "balicek-iso88591-1.1.1-1.x86_64.rpm"))
    # iso8859-1 bytes survive as surrogates, so the original bytes come back exactly.
    raw = pkg.summary.encode("utf-8", "surrogateescape")
    assert raw.endswith('"\xe0\xe1\xe2\xe3\xe4\xe5\xe7"'.encode("latin-1"))


def test_dependencies_match_rpm() -> None:
    path = require_shared("rpm-corpus", "Archer-3.4.5-6.x86_64.rpm")
    pkg = read_rpm(path)
    assert pkg.epoch == 2 and pkg.nevra == "Archer-2:3.4.5-6.x86_64"
    for flag, deps in (("-R", pkg.requires), ("--provides", pkg.provides)):
        out = subprocess.run(
            [require_tool("rpm"), "-qp", "--nosignature", flag, str(path)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
        assert sorted(out) == sorted(str(d) for d in deps)


def test_corrupt_payload_is_refused(tmp_path: Path, store: ContentStore) -> None:
    src = require_shared("rpm-corpus", "payload-test-0.1-w9.gzdio.x86_64.rpm")
    bad = tmp_path / src.name
    data = bytearray(src.read_bytes())
    data[-40] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(PackageError, match="payload sha256 digest mismatch"):
        verify_digests(read_rpm(bad))
    with pytest.raises(PackageError, match=src.name):
        add_rpm_to_tree(FileTree(), bad, store)


@pytest.mark.parametrize(
    ("case", "files", "error"),
    [
        ("dotdot", [("./../../etc/passwd", "file", "x")], "climbs out"),
        ("inner-dotdot", [("./usr/../../x", "file", "x")], "climbs out"),
        (
            "symlink-dir",
            [("./a", "symlink", "/etc"), ("./a/passwd", "file", "x")],
            "below the symlink",
        ),
        ("symlink-up", [("./usr/a", "symlink", "../../../etc/shadow")], "leaves the root"),
        ("not-in-header", [("./x", "file", "x")], "not in the header"),
    ],
)
def test_hostile_names_are_refused(
    tmp_path: Path, store: ContentStore, case: str, files: list[tuple[str, str, str]], error: str
) -> None:
    path = craft_rpm(tmp_path / f"{case}.rpm", files, header_mismatch=case == "not-in-header")
    with pytest.raises((UnsafePathError, PackageError), match=error):
        add_rpm_to_tree(FileTree(), path, store)
    # Nothing was written anywhere but the store.
    assert not (tmp_path / "etc").exists()


def test_crafted_rpm_is_readable_by_rpm(tmp_path: Path, store: ContentStore) -> None:
    path = craft_rpm(
        tmp_path / "ok.rpm", [("./usr/a", "file", "hello"), ("./usr/l", "symlink", "a")]
    )
    rows = rpm_qlv(path)
    assert [r[4] for r in rows] == ["/usr/a", "/usr/l"]
    tree = FileTree()
    add_rpm_to_tree(tree, path, store)
    assert tree.lookup("usr/l") == tree.get("usr/a")
    assert shutil.which("rpm")


def test_hard_links_become_one_file_and_links(tmp_path: Path, store: ContentStore) -> None:
    path = craft_rpm(
        tmp_path / "links.rpm",
        [
            ("./usr/b", "hardlink", "g:data"),
            ("./usr/a", "hardlink", "g:data"),
            ("./usr/c", "file", "other"),
        ],
    )
    tree = FileTree()
    add_rpm_to_tree(tree, path, store)
    a, b = tree.get("usr/a"), tree.get("usr/b")
    assert a is not None and a.kind is Kind.FILE and isinstance(a.content, HostFile)
    assert Path(a.content.path).read_bytes() == b"data"
    assert b is not None and b.kind is Kind.HARDLINK and b.target == "usr/a"


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    names=st.lists(
        st.lists(
            st.sampled_from(["..", ".", "", "a", "b", "etc", "x y", "é"]), min_size=1, max_size=4
        ).map(lambda parts: "./" + "/".join(parts)),
        min_size=1,
        max_size=4,
        unique=True,
    )
)
def test_any_name_is_refused_or_stays_inside(
    tmp_path_factory: pytest.TempPathFactory, names: list[str]
) -> None:
    work = tmp_path_factory.mktemp("h")
    store = ContentStore(work / "store")
    path = craft_rpm(work / "h.rpm", [(n, "file", "x") for n in names])
    tree = FileTree()
    with contextlib.suppress(UnsafePathError, PackageError):
        add_rpm_to_tree(tree, path, store)
    for e in tree:
        assert ".." not in e.path.split("/") and not e.path.startswith("/")
    # Only the store was written to.
    assert sorted(p.name for p in work.iterdir()) == ["h.rpm", "store"]


def test_empty_hard_links(tmp_path: Path, store: ContentStore) -> None:
    path = craft_rpm(tmp_path / "e.rpm", [("./a", "hardlink", "g:"), ("./b", "hardlink", "g:")])
    tree = FileTree()
    add_rpm_to_tree(tree, path, store)
    a, b = tree.get("a"), tree.get("b")
    assert a is not None and a.kind is Kind.FILE and a.size == 0
    assert b is not None and b.kind is Kind.HARDLINK and b.target == "a"


def test_sha256_file_digests_are_checked(tmp_path: Path, store: ContentStore) -> None:
    good = hashlib.sha256(b"hello").hexdigest()
    ok = craft_rpm(tmp_path / "ok.rpm", [("./a", "file", "hello")], sha256_digests={"./a": good})
    add_rpm_to_tree(FileTree(), ok, store)
    bad = craft_rpm(tmp_path / "bad.rpm", [("./a", "file", "hellO")], sha256_digests={"./a": good})
    with pytest.raises(PackageError, match=r"bad\.rpm: /a does not match its header digest"):
        add_rpm_to_tree(FileTree(), bad, store)


def test_a_payload_no_digest_covers_is_refused(tmp_path: Path, store: ContentStore) -> None:
    path = craft_rpm(tmp_path / "nodigest.rpm", [("./a", "file", "x")], payload_digest=False)
    with pytest.raises(PackageError, match=r"nodigest\.rpm: carries no payload digest"):
        add_rpm_to_tree(FileTree(), path, store)


def test_a_damaged_store_entry_is_repaired_by_the_next_extraction(tmp_path: Path) -> None:
    # A store file damaged after it was written (a crash before the data reached the disk,
    # a stray edit) must not stay in the cache and reach every later image.
    rpm = craft_rpm(tmp_path / "p.rpm", [("./usr/share/data", "file", "the bytes\n")])
    store = ContentStore(tmp_path / "store")
    tree = FileTree()
    add_rpm_to_tree(tree, rpm, store)
    entry = tree.get("usr/share/data")
    assert entry is not None and isinstance(entry.content, HostFile)
    stored = Path(entry.content.path)
    for damage in (b"", b"the bytez\n"):  # truncated; same size, other bytes
        stored.chmod(0o644)
        stored.write_bytes(damage)
        again = FileTree()
        add_rpm_to_tree(again, rpm, store)
        repaired = again.get("usr/share/data")
        assert repaired is not None and isinstance(repaired.content, HostFile)
        assert Path(repaired.content.path).read_bytes() == b"the bytes\n"
