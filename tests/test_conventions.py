"""The microcontainer conventions as a pure function of a tree and options."""

from __future__ import annotations

import pytest

from smith.conventions import (
    DEFAULT_ID,
    EMPTIED_DIRS,
    RUNTIME_DIRS,
    Conventions,
    RuntimeUser,
    apply_conventions,
    nss_documents,
    parse_user,
    read_passwd,
)
from smith.errors import UsageError
from smith.tree import FileTree, InlineBytes, Kind


def sample() -> FileTree:
    tree = FileTree()
    tree.add_dir("usr/bin", 0o2775, uid=5, gid=5)
    tree.add_file("usr/bin/tool", InlineBytes(b"x"), 0o4750, uid=7, gid=8)
    tree.add_file("etc/conf", InlineBytes(b"c"), 0o600, uid=7)
    tree.add_file("etc/passwd", InlineBytes(b"old\n"))
    tree.add_symlink("bin", "usr/bin")
    tree.add_file("run/lock/x.pid", InlineBytes(b"1"))
    tree.add_file("read/data", InlineBytes(b"per-instance defaults"))
    tree.add_symlink("write", "/tmp")
    tree.add_dir("tmp", 0o1777)
    return tree


def test_owner_modes_and_runtime_dirs() -> None:
    out = apply_conventions(sample(), Conventions())
    entries = {e.path: e for e in out}
    for e in entries.values():
        assert (e.uid, e.gid) == (DEFAULT_ID, DEFAULT_ID)
        assert e.mode in (0o755, 0o644, 0o777)
    assert entries["usr/bin/tool"].mode == 0o755  # setuid dropped, executable kept
    assert entries["etc/conf"].mode == 0o644
    assert entries["tmp"].mode == 0o755  # no sticky bit
    assert entries["bin"].kind is Kind.SYMLINK
    for name in RUNTIME_DIRS:
        assert entries[name].kind is Kind.DIR  # even where the input had a symlink
    for name in EMPTIED_DIRS:
        assert not [p for p in entries if p.startswith(name + "/")]
    assert entries["read/data"].kind is Kind.FILE  # what a recipe ships in /read stays
    assert "etc/passwd" in entries and "etc/group" not in entries


def test_keep_ownership_and_modes() -> None:
    out = apply_conventions(sample(), Conventions(keep_ownership=True, keep_modes=True))
    tool = out.get("usr/bin/tool")
    assert tool is not None and (tool.mode, tool.uid, tool.gid) == (0o4750, 7, 8)


def test_nss_files_are_complete() -> None:
    user = RuntimeUser(1000, 1000, "web", "web", ("audio", "adm", "video"))
    docs = nss_documents(user)
    for data in docs.values():
        assert data.endswith(b"\n") and b"\n\n" not in data
    assert b"web:x:1000:1000:web:/write:\n" in docs["etc/passwd"]
    group = docs["etc/group"].decode().splitlines()
    assert "web:x:1000:" in group and "audio:x:1001:web" in group and "video:x:1002:web" in group
    out = apply_conventions(sample(), Conventions(user=user, nss=True))
    passwd = out.get("etc/passwd")
    assert passwd is not None and passwd.content == InlineBytes(docs["etc/passwd"])


PASSWD = read_passwd(b"root:x:0:0::/:\nwww-data:x:33:33::/:\nbroken line\n")


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("www-data", (33, 33, "www-data", "www-data")),
        ("33", (33, 33, "www-data", "www-data")),
        ("www-data:0", (33, 0, "www-data", "root")),
        ("1234:5678", (1234, 5678, "u1234", "g5678")),
        ("smith", (DEFAULT_ID, DEFAULT_ID, "smith", "smith")),
        ("root", (0, 0, "root", "root")),
    ],
)
def test_parse_user(spec: str, expected: tuple[int, int, str, str]) -> None:
    user = parse_user(spec, passwd=PASSWD, group={"www-data": 33})
    assert (user.uid, user.gid, user.name, user.group) == expected


def test_parse_user_refuses_nonsense() -> None:
    with pytest.raises(UsageError, match="':5'"):
        parse_user(":5")


@pytest.mark.parametrize("spec", ["a:b:c", "a b", "ap\np", "a\tb", "a,b:c"])
def test_parse_user_refuses_names_that_break_the_nss_files(spec: str) -> None:
    with pytest.raises(UsageError, match="name"):
        parse_user(spec)
