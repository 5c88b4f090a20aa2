"""The FileTree's column store: every entry comes back exactly as put in (the compact rows
and the verbatim fallback alike), and a large tree costs under 120 bytes per entry."""

from __future__ import annotations

import tracemalloc

from hypothesis import given, settings
from hypothesis import strategies as st

from smith.entrytable import EntryTable
from smith.pathindex import PathIndex
from smith.tree import Entry, FileTree, HostFile, HostSlice, InlineBytes, Kind, LayerSpan

names = st.text(alphabet="abc/\udc80é", min_size=1, max_size=8)
# Past 32 bits (the columns' width: a slice offset has 16 more) and past 48.
sizes = st.one_of(st.integers(min_value=0, max_value=2**40), st.just(2**50 + 3))


class Source:
    """A stand-in for a layer's spans (smith.oci.layerspan): only its identity counts."""

    def materialize(self, offset: int, size: int) -> HostSlice:
        raise AssertionError("not read here")


SOURCES = [Source(), Source()]
contents = st.one_of(
    st.none(),
    st.builds(InlineBytes, st.binary(max_size=4)),
    st.builds(HostFile, st.sampled_from(["/p/a", "/p/b"])),
    st.builds(HostSlice, st.sampled_from(["/p/pack0", "/p/pack1"]), sizes, sizes),
    st.builds(LayerSpan, st.sampled_from(SOURCES), sizes, sizes),
)
entries = st.builds(
    Entry,
    path=names,
    kind=st.sampled_from(list(Kind)),
    mode=st.one_of(st.sampled_from([0o644, 0o755, 0o777]), st.integers(0, 2**20)),
    uid=st.one_of(st.just(0), st.integers(0, 2**32)),
    gid=st.one_of(st.just(0), st.integers(0, 2**32)),
    size=sizes,
    target=st.sampled_from(["", "x", "/abs/target"]),
    content=contents,
    origin=st.sampled_from(["", "layer 1", "pkg-1.0-1.x86_64"]),
)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(entries, st.booleans()), max_size=60))
def test_entries_come_back_exactly_as_put_in(ops: list[tuple[Entry, bool]]) -> None:
    table = EntryTable()
    model: dict[str, Entry] = {}
    for entry, delete in ops:
        if delete and entry.path in model:
            del table[entry.path]
            del model[entry.path]
        else:
            table[entry.path] = entry
            model[entry.path] = entry
    assert len(table) == len(model)
    assert sorted(table) == sorted(model)  # in row order: removed rows are reused
    for path, entry in model.items():
        assert table[path] == entry
        assert table.get(path) == entry
        assert table.kind(path) is entry.kind
    assert table.get("missing") is None and table.kind("missing") is None


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.text(alphabet="ab/", max_size=7), st.booleans()), max_size=300))
def test_the_path_index_finds_every_path_through_growth_and_removals(
    ops: list[tuple[str, bool]],
) -> None:
    index = PathIndex()
    model: dict[str, int] = {}
    most = 0
    for path, remove in ops:
        if path in model and remove:
            assert index.remove(path) == model.pop(path)
        elif path not in model:
            model[path] = index.add(path)
        assert index.row(path) == model.get(path, -1)
        most = max(most, len(model))
    assert len(index) == len(model) and sorted(index) == sorted(model)
    assert len(set(model.values())) == len(model)
    assert len(index.paths) == most  # a removed path's row is given to the next one
    for path, row in model.items():
        assert index.row(path) == row and index.paths[row] == path


def test_marks_stay_with_a_path_until_it_is_removed() -> None:
    table = EntryTable()
    table["a"] = Entry("a", Kind.FILE)
    table.mark("a", 7)
    table["a"] = Entry("a", Kind.DIR)  # replaced: still the path the mark was put on
    assert table.marked("a") == 7
    del table["a"]
    table["a"] = Entry("a", Kind.FILE)  # a new row, maybe the old one reused
    assert table.marked("a") == 0 and table.marked("b") == 0


def test_a_large_tree_costs_under_120_bytes_per_entry() -> None:
    count = 50_000
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tree = FileTree()
        for i in range(count):
            # Made here, kept only by the tree: the path strings (~68 bytes) are counted.
            path = f"data/small/{i // 1000:04d}/{i % 1000:03d}"
            content = HostSlice("/store/layer-0.pack", i * 100, 100)
            tree.add_file(path, content, 0o644, origin="1 (sha256:...)")
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    print(f"{used / count:.0f} bytes per entry")
    assert used / count < 120, f"{used / count:.0f} bytes per entry"
    assert tree.get("data/small/0000/005") == Entry(
        "data/small/0000/005", Kind.FILE, 0o644, size=100,
        content=HostSlice("/store/layer-0.pack", 500, 100), origin="1 (sha256:...)",
    )  # fmt: skip
