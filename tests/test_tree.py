from __future__ import annotations

import os
from pathlib import Path

import pytest

from smith.errors import SmithError, UnsafePathError
from smith.paths import normalize_path, resolve_link_target
from smith.tree import FileTree, InlineBytes, Kind


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/usr/bin/sh", "usr/bin/sh"),
        ("usr//bin/./sh", "usr/bin/sh"),
        ("./etc/", "etc"),
        ("/", ""),
    ],
)
def test_normalize_accepts(raw: str, expected: str) -> None:
    assert normalize_path(raw) == expected


@pytest.mark.parametrize("raw", ["../etc/passwd", "a/../../b", "/..", "a\x00b", "x/.."])
def test_normalize_refuses(raw: str) -> None:
    with pytest.raises(UnsafePathError, match="path"):
        normalize_path(raw)


@pytest.mark.parametrize(
    ("link", "target", "expected"),
    [
        ("usr/lib/libz.so", "libz.so.1", "usr/lib/libz.so.1"),
        ("lib", "usr/lib", "usr/lib"),
        ("usr/bin/sh", "/bin/busybox", "bin/busybox"),
        ("a/b", "../../../../etc", "etc"),
    ],
)
def test_link_targets_stay_in_root(link: str, target: str, expected: str) -> None:
    assert resolve_link_target(link, target) == expected


def test_resolve_follows_links_inside_tree() -> None:
    tree = FileTree()
    tree.add_symlink("lib64", "usr/lib64")
    tree.add_symlink("usr/lib64/libc.so.6", "/usr/lib64/libc-2.36.so")
    tree.add_file("usr/lib64/libc-2.36.so", InlineBytes(b"x"))
    assert tree.resolve("/lib64/libc.so.6") == "usr/lib64/libc-2.36.so"
    assert tree.resolve("/lib64/libc.so.6", follow_last=False) == "usr/lib64/libc.so.6"
    entry = tree.lookup("lib64/libc.so.6")
    assert entry is not None and entry.kind is Kind.FILE


def test_resolve_loop_is_an_error() -> None:
    tree = FileTree()
    tree.add_symlink("a", "b")
    tree.add_symlink("b", "a")
    with pytest.raises(SmithError, match="too many levels"):
        tree.resolve("a/x")


def test_iteration_is_bytewise_sorted_whatever_the_insertion_order() -> None:
    tree = FileTree()
    for name in ["b", "a/z", "a-c", "a", "\u00e9", "Z"]:
        tree.add_dir(name)
    assert [e.path for e in tree] == ["Z", "a", "a-c", "a/z", "b", "\u00e9"]


def test_from_directory_finds_hardlinks_and_skips_fifos(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "b").write_bytes(b"data")
    os.link(tmp_path / "d" / "b", tmp_path / "a")
    os.symlink("d/b", tmp_path / "s")
    os.mkfifo(tmp_path / "fifo")
    tree = FileTree.from_directory(tmp_path)
    assert [(e.path, e.kind) for e in tree] == [
        ("a", Kind.FILE),
        ("d", Kind.DIR),
        ("d/b", Kind.HARDLINK),
        ("s", Kind.SYMLINK),
    ]
    link = tree.get("d/b")
    assert link is not None and link.target == "a"


def test_remove_drops_descendants() -> None:
    tree = FileTree()
    tree.add_dir("a")
    tree.add_file("a/b", InlineBytes(b""))
    tree.add_file("ab", InlineBytes(b""))
    tree.remove("/a")
    assert tree.paths() == ["ab"]
