"""The partial hit's merge: a changed package goes where its earlier version was exactly as a
cold build would have added it, or the merge refuses (NotReusable) and the build runs whole.
Trees in memory: a cold tree is the packages added in order, later ones winning, as
add_rpm_to_tree does for directories both ship."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from smith.buildcache import pins_of
from smith.buildkey import PackagePin
from smith.layering import PackageDeps
from smith.partial import Listing, NotReusable, Prior, capture, reassemble
from smith.resolve.fetch import Checksum
from smith.resolve.solver import ResolvedPackage
from smith.resolve.store import ContentStore
from smith.tree import Entry, FileTree, Kind

Files = Sequence[tuple[str, str, str]]  # path, kind, content (a file) or target (a symlink)


def package(name: str, release: str) -> ResolvedPackage:
    digest = f"{name}-{release}".encode().hex().ljust(64, "0")[:64]
    return ResolvedPackage(name, 0, "1", release, "x86_64", "r", "u", Checksum("sha256", digest), 1)


def alone(store: ContentStore, nevra: str, files: Files, mode: int = 0o755) -> FileTree:
    tree = FileTree()
    for path, kind, data in files:
        if kind == "dir":
            tree.add(Entry(path, Kind.DIR, mode, origin=nevra))
        elif kind == "link":
            tree.add(Entry(path, Kind.SYMLINK, 0o777, target=data, origin=nevra))
        else:
            content = store.put_bytes(data.encode())
            tree.add(Entry(path, Kind.FILE, 0o644, size=len(data), content=content, origin=nevra))
    return tree


def cold(store: ContentStore, packages: Sequence[tuple[ResolvedPackage, Files]]) -> FileTree:
    tree = FileTree()
    for pkg, files in packages:
        for entry in alone(store, pkg.nevra, files):
            tree.add(entry)
    return tree


def named(packages: Sequence[ResolvedPackage]) -> tuple[tuple[str, PackagePin], ...]:
    return tuple(zip((p.nevra for p in packages), pins_of(packages), strict=True))


def deps(pkg: ResolvedPackage) -> PackageDeps:
    return PackageDeps(pkg.nevra, (), (pkg.name,))


def rows(tree: FileTree) -> list[tuple[object, ...]]:
    return [(e.path, e.kind, e.mode, e.size, e.target, e.origin) for e in tree]


BASE: Files = [("usr", "dir", ""), ("usr/lib", "dir", ""), ("lib", "link", "usr/lib")]
LIBA: Files = [("usr", "dir", ""), ("usr/lib", "dir", ""), ("usr/lib/liba.so", "file", "a1")]
TOOL: Files = [("usr", "dir", ""), ("usr/bin", "dir", ""), ("usr/bin/tool", "file", "t1")]


def partial(
    tmp_path: Path,
    before: Sequence[tuple[ResolvedPackage, Files]],
    after: Sequence[tuple[ResolvedPackage, Files]],
) -> FileTree:
    """The tree `after` rebuilt from the listing of `before`; checked equal to a cold one."""
    store = ContentStore(tmp_path / "store")
    first = [p for p, _f in before]
    listing = capture(
        cold(store, before), named(first),
        [deps(p) for p in first], frozenset(), len(first),
    )  # fmt: skip
    prior = Prior(Listing.from_json(listing.to_json()), {}, frozenset(), "test")
    files = {p.nevra: f for p, f in after}

    def extract(pkg: ResolvedPackage) -> tuple[FileTree, PackageDeps]:
        return alone(store, pkg.nevra, files[pkg.nevra]), deps(pkg)

    now = [p for p, _f in after]
    done = reassemble(prior, now, pins_of(now), store, extract)
    assert rows(done.tree) == rows(cold(store, after))
    assert [d.key for d in done.deps] == [p.nevra for p in now]
    return done.tree


def test_changed_package_goes_where_it_was(tmp_path: Path) -> None:
    base, liba, tool = package("base", "1"), package("liba", "1"), package("tool", "1")
    liba2 = package("liba", "2")
    changed = [("usr", "dir", ""), ("usr/lib", "dir", ""), ("usr/lib/liba.so", "file", "a2!")]
    tree = partial(tmp_path, [(base, BASE), (liba, LIBA), (tool, TOOL)],
                   [(base, BASE), (liba2, changed), (tool, TOOL)])  # fmt: skip
    entry = tree.get("usr/lib/liba.so")
    assert entry is not None and entry.origin == liba2.nevra and entry.size == 3
    usr = tree.get("usr")
    assert usr is not None and usr.origin == tool.nevra  # the last to ship it, as before


def test_unchanged_packages_are_not_extracted(tmp_path: Path) -> None:
    base, liba = package("base", "1"), package("liba", "1")
    store = ContentStore(tmp_path / "store")
    listing = capture(cold(store, [(base, BASE), (liba, LIBA)]),
                      named([base, liba]),
                      [deps(base), deps(liba)], frozenset(), 2)  # fmt: skip
    prior = Prior(listing, {}, frozenset(), "test")

    def extract(pkg: ResolvedPackage) -> tuple[FileTree, PackageDeps]:
        raise AssertionError(f"{pkg.nevra} extracted")

    done = reassemble(prior, [base, liba], pins_of([base, liba]), store, extract)
    assert done.extracted == 0 and len(done.tree) == len(cold(store, [(base, BASE), (liba, LIBA)]))


@pytest.mark.parametrize(
    ("files", "refusal"),
    [
        (
            [("usr", "dir", ""), ("usr/lib", "dir", ""), ("usr/lib/x", "file", "x")],
            "no longer ships",
        ),
        (
            [*LIBA[:2], ("usr/lib/liba.so", "file", "a"), ("lib/b", "file", "b")],
            "under another package's symlink",
        ),
        ([*LIBA, ("usr/bin/tool", "file", "t")], "is shipped by"),
        ([*LIBA, ("usr/lib/l", "link", "liba.so")], "changes its symlinks"),
    ],
    ids=["dropped-directory", "through-a-symlink", "another-package-file", "new-symlink"],
)
def test_merge_refuses_what_it_cannot_place_as_a_cold_build(
    tmp_path: Path, files: Files, refusal: str
) -> None:
    base, liba, tool = package("base", "1"), package("liba", "1"), package("tool", "1")
    extra = [*LIBA, ("usr/lib/gone", "dir", "")] if refusal == "no longer ships" else LIBA
    with pytest.raises(NotReusable, match=refusal):
        partial(tmp_path, [(base, BASE), (liba, extra), (tool, TOOL)],
                [(base, BASE), (package("liba", "2"), files), (tool, TOOL)])  # fmt: skip


def test_other_packages_are_not_a_partial_hit(tmp_path: Path) -> None:
    base, liba = package("base", "1"), package("liba", "1")
    with pytest.raises(NotReusable, match="names or order differ"):
        partial(tmp_path, [(base, BASE), (liba, LIBA)], [(liba, LIBA), (base, BASE)])


@pytest.mark.parametrize(
    ("change", "refusal"),
    [
        (lambda d: d["rows"][0].__setitem__(0, "../etc"), "not one inside the root"),
        (lambda d: d["rows"][-1].__setitem__(8, "../" * 21 + "x"), "for a content digest"),
        (lambda d: d["rows"][0].__setitem__(7, "evil-1-1.x86_64"), "not its package's"),
        (lambda d: d["rows"][0].__setitem__(2, -1), "for a number"),
        (lambda d: d.pop("deps"), "a damaged listing"),
        (lambda d: d["inline"].update({"0" * 64: "eA=="}), "do not match their digest"),
    ],
    ids=["path", "digest", "package", "mode", "damaged", "inline"],
)
def test_untrusted_listing_is_refused(tmp_path: Path, change: object, refusal: str) -> None:
    base = package("base", "1")
    store = ContentStore(tmp_path / "store")
    files: Files = [*BASE, ("usr/lib/f", "file", "f")]
    doc = capture(cold(store, [(base, files)]), ((base.nevra, pins_of([base])[0]),),
                  [deps(base)], frozenset(), 1).to_json()  # fmt: skip
    assert callable(change)
    change(doc)
    with pytest.raises(NotReusable, match=refusal):
        Listing.from_json(doc)


def test_small_etc_files_travel_with_the_listing(tmp_path: Path) -> None:
    """ld.so.conf and its kind: read by the closure, kept by no layer."""
    base = package("base", "1")
    store = ContentStore(tmp_path / "store")
    files: Files = [*BASE, ("etc", "dir", ""), ("etc/ld.so.conf", "file", "include x\n"),
                    ("usr/lib/big", "file", "x" * 5000)]  # fmt: skip
    listing = capture(cold(store, [(base, files)]), named([base]), [deps(base)], frozenset(), 1)
    again = Listing.from_json(listing.to_json())
    assert list(again.inline.values()) == [b"include x\n"]
