"""Path resolution inside a root: any symlink graph resolves to a canonical path inside the
root, or ends in ElfError (a loop); the host is never consulted."""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from smith.errors import ElfError
from smith.paths import normalize_path
from smith.resolve.loader import expand_tokens
from smith.resolve.roots import DirectoryRoot, PathWalker, TreeRoot
from smith.tree import FileTree, InlineBytes, Kind, sorted_bytewise

NAMES = ["a", "b", "lib", "usr", ".."]
targets = st.lists(st.sampled_from([*NAMES, "."]), min_size=0, max_size=4).map(
    lambda parts: "/".join(parts)
)


@st.composite
def link_trees(draw: st.DrawFn) -> FileTree:
    tree = FileTree()
    for _ in range(draw(st.integers(1, 8))):
        parts = draw(st.lists(st.sampled_from(NAMES[:-1]), min_size=1, max_size=3))
        path = "/".join(parts)
        if any(path.startswith(p + "/") or p.startswith(path + "/") for p in tree.paths()):
            continue  # keep it a tree: no entry below a file or a link
        if draw(st.booleans()):
            absolute = draw(st.booleans())
            tree.add_symlink(path, ("/" if absolute else "") + draw(targets))
        else:
            tree.add_dir(path)
    return tree


@settings(max_examples=300, deadline=None)
@given(link_trees(), st.lists(st.sampled_from(NAMES[:-1]), min_size=1, max_size=4))
def test_walk_stays_in_the_root(tree: FileTree, parts: list[str]) -> None:
    walker = PathWalker(TreeRoot(tree))
    try:
        walk = walker.walk("/".join(parts))
    except ElfError as err:
        assert "symbolic links" in str(err)
        return
    assert walk.path == normalize_path(walk.path)
    assert all(tree.get(link) is not None for link in walk.links)
    assert walk.kind is not Kind.SYMLINK


def test_tokens_expand_as_the_loader_does() -> None:
    cases = [
        ("$ORIGIN/../lib", "/opt/app/lib/../lib"),
        ("${ORIGIN}/x:$LIB/y", "/opt/app/lib/x:/lib64/y"),
        ("$ORIGINAL/x", "$ORIGINAL/x"),  # a longer name is not the token
        ("/p/$PLATFORM", "/p/x86_64"),
    ]
    for text, expected in cases:
        assert expand_tokens(text, "/opt/app/lib", "/lib64", "x86_64") == expected


def test_both_roots_list_kinds_as_kind_says(tmp_path: Path) -> None:
    """list_kinds (d_type for a directory root) must say what kind() says of each name:
    the run-time rules keep whole trees by it."""
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_bytes(b"\x7fELF and more")
    (tmp_path / "link").symlink_to("file")
    (tmp_path / "dangling").symlink_to("nowhere")
    os.mkfifo(tmp_path / "fifo")
    directory = DirectoryRoot(tmp_path)
    listed = directory.list_kinds("")
    assert [name for name, _ in listed] == directory.listdir("")
    assert listed == [(name, DirectoryRoot(tmp_path).kind(name)) for name in directory.listdir("")]
    assert dict(listed) == {
        "dangling": Kind.SYMLINK,
        "dir": Kind.DIR,
        "fifo": None,
        "file": Kind.FILE,
        "link": Kind.SYMLINK,
    }
    assert directory.read_at("file", 0, 4) == b"\x7fELF"
    assert directory.read_at("file", 2, 100) == (tmp_path / "file").read_bytes()[2:102]
    tree = FileTree()
    tree.add_dir("d")
    tree.add_file("d/f", InlineBytes(b"#!/bin/sh\n"))
    tree.add_symlink("d/l", "f")
    tree_root = TreeRoot(tree)
    assert tree_root.list_kinds("d") == [("f", Kind.FILE), ("l", Kind.SYMLINK)]
    assert tree_root.read_at("d/f", 0, 4) == b"#!/b"
    assert tree_root.read_at("d/f", 2, 100) == b"/bin/sh\n"


@given(st.lists(st.binary(min_size=1, max_size=6), max_size=12))
def test_sorted_bytewise_is_the_order_of_the_names_bytes(raw: list[bytes]) -> None:
    """Names from disk (undecodable bytes kept as surrogates, as os.fsdecode keeps them) sort
    by their bytes, whether the list is ASCII or not."""
    names = [os.fsdecode(name) for name in raw]
    assert [os.fsencode(name) for name in sorted_bytewise(names)] == sorted(map(os.fsencode, names))
    assert sorted_bytewise(["b", "a/b", "a", "a-"]) == ["a", "a-", "a/b", "b"]
