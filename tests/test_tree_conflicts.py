"""A path two packages both ship: rpm's rule (identical is fine, different is an error
naming both packages and the path), and the directory index and resolver layering uses."""

from __future__ import annotations

from pathlib import Path

import pytest

from smith.errors import PackageError, SmithError
from smith.resolve.rpm import add_rpm_to_tree
from smith.resolve.store import ContentStore
from smith.tree import FileTree, InlineBytes, Kind
from tests.rpm_craft import craft_rpm

Files = list[tuple[str, str, str]]

# (first package's files, second package's files, the error, or None when both agree)
CASES: list[tuple[str, Files, Files, str | None]] = [
    ("same file", [("./etc/a", "file", "x")], [("./etc/a", "file", "x")], None),
    ("both directories", [("./usr/share", "dir", "")], [("./usr/share", "dir", "")], None),
    (
        "same symlink",
        [("./usr/lib/l", "symlink", "t")],
        [("./usr/lib/l", "symlink", "t")],
        None,
    ),
    (
        "other bytes",
        [("./etc/a", "file", "x")],
        [("./etc/a", "file", "y")],
        r"second-1-1\.x86_64\.rpm: /etc/a conflicts with the file from first-1-1\.x86_64",
    ),
    (
        "other mode",
        [("./usr/bin/a", "file", "x")],
        [("./usr/bin/a", "exec", "x")],
        r"/usr/bin/a conflicts with the file from first-1-1\.x86_64 \(file 0644",
    ),
    (
        "other link target",
        [("./usr/lib/l", "symlink", "t")],
        [("./usr/lib/l", "symlink", "u")],
        r"/usr/lib/l conflicts .*symlink to 't' vs symlink to 'u'",
    ),
    (
        "file over a symlink",
        [("./usr/lib/l", "symlink", "t")],
        [("./usr/lib/l", "file", "x")],
        r"/usr/lib/l conflicts with the file from first",
    ),
]


@pytest.mark.parametrize(
    ("first", "second", "error"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_a_path_two_packages_ship(
    tmp_path: Path, first: Files, second: Files, error: str | None
) -> None:
    store = ContentStore(tmp_path / "store")
    tree = FileTree()
    add_rpm_to_tree(tree, craft_rpm(tmp_path / "first-1-1.x86_64.rpm", first, name="first"), store)
    before = {e.path: e for e in tree}
    rpm = craft_rpm(tmp_path / "second-1-1.x86_64.rpm", second, name="second")
    if error is None:
        add_rpm_to_tree(tree, rpm, store)
        assert {e.path for e in tree} == set(before)
        return
    with pytest.raises(PackageError, match=error):
        add_rpm_to_tree(tree, rpm, store)
    # Refused before the tree was touched: the first package's entries are as they were.
    assert {e.path: e for e in tree} == before


def test_children_index_follows_additions_and_removals() -> None:
    tree = FileTree()
    tree.add_file("usr/lib/a.so", InlineBytes(b""))
    assert tree.child_paths("") == ["usr"]
    assert tree.child_paths("usr") == ["usr/lib"]  # an implicit parent counts
    assert tree.is_directory("usr/lib") and not tree.is_directory("usr/lib/a.so")
    tree.add_file("usr/lib/b.so", InlineBytes(b""))
    tree.add_dir("usr/bin")
    assert tree.child_paths("usr") == ["usr/bin", "usr/lib"]
    assert [e.path for e in tree.children("usr/lib")] == ["usr/lib/a.so", "usr/lib/b.so"]
    tree.remove("usr/lib")
    assert tree.child_paths("usr") == ["usr/bin"]
    assert not tree.is_directory("usr/lib")


def test_resolutions_follow_a_changed_symlink() -> None:
    # The resolver memoises directory prefixes: a symlink added, replaced or removed after
    # a resolution must be seen by the next one.
    tree = FileTree()
    tree.add_dir("usr/lib")
    assert tree.resolve("lib/x") == "lib/x"
    tree.add_symlink("lib", "usr/lib")
    assert tree.resolve("lib/x") == "usr/lib/x"
    tree.add_symlink("lib", "/opt")
    assert tree.resolve("lib/x") == "opt/x"
    tree.remove("lib")
    assert tree.resolve("lib/x") == "lib/x"
    tree.add_symlink("a", "b")
    tree.add_symlink("b", "a")
    with pytest.raises(SmithError, match="too many levels"):
        tree.resolve("a/x")
    assert tree.resolve("a", follow_last=False) == "a"
    assert tree.get("a") is not None and tree.get("a").kind is Kind.SYMLINK  # type: ignore[union-attr]
