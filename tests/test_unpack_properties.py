"""Any sequence of layers, hostile or not: applying them either gives a tree of canonical
paths inside the root, or one SmithError naming the layer; never another exception."""

from __future__ import annotations

import io
import tarfile
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smith.diff import diff_images
from smith.errors import SmithError
from smith.oci.reading import open_image
from smith.oci.unpack import apply_layers
from smith.paths import normalize_path
from smith.tree import Kind
from tests.imagekit import M, layer_tar, write_layout

PARTS = ["a", "b", "..", ".", ".wh.a", ".wh..wh..opq", ".wh.b", ""]
names = st.lists(st.sampled_from(PARTS), min_size=1, max_size=4).map("/".join)
targets = st.one_of(names, names.map(lambda n: "/" + n))
members = st.one_of(
    st.builds(lambda n: M(n, "dir"), names),
    st.builds(lambda n, d: M(n, data=d), names, st.binary(max_size=8)),
    st.builds(lambda n, t: M(n, "symlink", link=t), names, targets),
    st.builds(lambda n, t: M(n, "hardlink", link=t), names, names),
)
layers = st.lists(st.lists(members, max_size=6), min_size=1, max_size=3)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layers)
def test_layers_never_escape_the_root(spec: list[list[M]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        write_layout(f"{tmp}/img", [layer_tar(members) for members in spec])
        try:
            with open_image(f"{tmp}/img") as image:
                tree, _stats = apply_layers(image, f"{tmp}/store")
        except SmithError as err:
            assert "\n" not in str(err) and str(err).startswith("layer ")
            return
        paths = set(tree.paths())
        for entry in tree:
            assert entry.path and normalize_path(entry.path) == entry.path
            assert not entry.path.rpartition("/")[2].startswith(".wh.")  # never materialised
            parent = entry.path.rpartition("/")[0]
            assert not parent or parent in paths  # every parent exists, as a directory
            if parent:
                parent_entry = tree.get(parent)
                assert parent_entry is not None and parent_entry.kind is Kind.DIR
            if entry.kind is Kind.HARDLINK:
                target = tree.get(entry.target)
                assert target is not None and target.kind is Kind.FILE


def without_footer(tar: bytes) -> bytes:
    """The tar cut right after its last entry's data, as umoci 0.4.7 ends layers (no
    padding, no end-of-archive blocks: umoci #436)."""
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        last = archive.getmembers()[-1]
    return tar[: last.offset_data + (last.size if last.isreg() else 0)]


def tree_or_error(layers: list[bytes], tmp: str) -> object:
    write_layout(f"{tmp}/img", layers)
    try:
        with open_image(f"{tmp}/img") as image:
            tree, _stats = apply_layers(image, f"{tmp}/store")
    except SmithError as err:
        return str(err).split(": ", 1)[1]  # the layer's digest differs; the cause must not
    return sorted((e.path, e.kind, e.target, e.size) for e in tree)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(members, min_size=1, max_size=5), min_size=1, max_size=2))
def test_a_missing_footer_reads_as_the_whole_tar(spec: list[list[M]]) -> None:
    """Go's archive/tar reads a layer that ends after its last entry's data as the whole
    one: so does smith, with the same tree or the same error."""
    full = [layer_tar(m) for m in spec]
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        assert tree_or_error([without_footer(t) for t in full], a) == tree_or_error(full, b)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layers, st.binary(min_size=1, max_size=4))
def test_diff_reads_any_layers_as_minimize_does(spec: list[list[M]], noise: bytes) -> None:
    """smith diff on the same layers (against a benign image) fails exactly when applying
    them fails, with the same message, and is never another exception."""
    tars = [layer_tar(members) for members in spec]
    with tempfile.TemporaryDirectory() as tmp:
        expected = tree_or_error(tars, tmp)
        write_layout(f"{tmp}/other", [layer_tar([M("x", data=noise)])])
        try:
            diff_images(f"{tmp}/img", f"{tmp}/other")
        except SmithError as err:
            assert str(err).split(": ", 1)[1] == expected
            return
        assert not isinstance(expected, str), expected
