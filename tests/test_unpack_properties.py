"""Any sequence of layers, hostile or not: applying them either gives a tree of canonical
paths inside the root, or one SmithError naming the layer; never another exception."""

from __future__ import annotations

import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smith.errors import SmithError
from smith.oci.layout import open_image
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
