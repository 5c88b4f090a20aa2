"""Layer application: crafted multi-layer images flattened by smith equal what `umoci unpack`
makes of them; hostile and broken layers are refused with one line naming layer and entry."""

from __future__ import annotations

import hashlib
import io
import os
import random
import subprocess
import tarfile
from pathlib import Path

import pytest

from smith.errors import ImageFormatError, SmithError, UnsafePathError
from smith.oci.reading import open_image
from smith.oci.unpack import apply_layers
from smith.tree import FileTree, Kind
from tests.imagekit import M, compress, layer_tar, sha256, write_layout
from tests.tools import require_root, require_tool

LAYER1 = [
    M("a", "dir"),
    M("a/b", "dir"),
    M("a/b/f1", data=b"one"),
    M("a/b/f2", data=b"two"),
    M("a/keep", data=b"keep"),
    M("d", "dir"),
    M("d/x", data=b"x"),
    M("r", data=b"file then dir then file"),
    M("q", "dir", mode=0o700),
    M("q/inner", data=b"inner"),
    M("h1", data=b"H", mode=0o755),
    M("h2", "hardlink", link="h1"),
    M("s", "symlink", link="a/b/f1"),
    M("suid", data=b"#!/bin/sh\n", mode=0o4755),
    M("owned", data=b"mine", uid=1000, gid=1000, mode=0o600),
    M("o", "dir"),
    M("o/old1", data=b"1"),
    M("o/sub", "dir"),
    M("o/sub/old2", data=b"2"),
    M("dev", "dir"),
    M("dev/null", "chardev"),
]
LAYER2 = [
    M("a/b/.wh.f1"),  # whiteout of a lower file
    M("d/y", data=b"new in the opaque layer"),
    M("d/.wh..wh..opq"),  # after d/y: must not hide what this layer adds
    M("r", "dir", mode=0o750),
    M("r/inside", data=b"in"),
    M("q", data=b"now a file"),
    M("h3", "hardlink", link="h1"),  # a hard link to a lower layer's file
    M("o/.wh..wh..opq"),
    M("newdir/deep/file", data=b"parents implied"),
]
LAYER3 = [
    M("r", data=b"a file again"),
    M("h1", data=b"NEW", mode=0o644),  # replacing h1 must not change h2 and h3
    M("a/.wh.keep"),
    M("s2", "symlink", link="/a/b/f2"),
    M("p", "fifo"),
    M("o/fresh", data=b"fresh"),
]


def snapshot(tree: FileTree) -> dict[str, tuple[object, ...]]:
    """What a runtime sees: kind, permissions, owner, link target, content digest."""
    out: dict[str, tuple[object, ...]] = {}
    for e in tree:
        content = ""
        if e.kind is Kind.FILE and e.content is not None:
            with e.content.open() as f:
                content = hashlib.sha256(f.read()).hexdigest()
        out[e.path] = (e.kind, e.mode, e.uid, e.gid, e.target, content)
    return out


def flatten(layout: Path, store: Path) -> FileTree:
    with open_image(str(layout)) as image:
        tree, _stats = apply_layers(image, str(store))
    return tree


def test_flattened_tree_equals_umoci_unpack(tmp_path: Path) -> None:
    require_root()
    umoci = require_tool("umoci")
    layout = tmp_path / "image"
    write_layout(str(layout), [layer_tar(LAYER1), layer_tar(LAYER2), layer_tar(LAYER3)])
    mine = flatten(layout, tmp_path / "store")
    bundle = tmp_path / "bundle"
    subprocess.run(
        [umoci, "unpack", "--image", f"{layout}:latest", str(bundle)],
        check=True,
        capture_output=True,
    )
    theirs = FileTree.from_directory(bundle / "rootfs")
    assert snapshot(mine) == snapshot(theirs)
    # The runtime semantics the crafted layers are about, spelled out:
    got = snapshot(mine)
    assert "a/b/f1" not in got and "a/keep" not in got and "d/x" not in got
    assert "d/y" in got and "o/fresh" in got and "o/old1" not in got and "o/sub" not in got
    assert got["r"][0] is Kind.FILE and got["q"][0] is Kind.FILE and "r/inside" not in got
    assert got["h2"][0] is Kind.FILE and got["h3"] == (Kind.HARDLINK, 0o755, 0, 0, "h2", "")
    assert got["h2"][5] == hashlib.sha256(b"H").hexdigest()
    assert got["h1"][5] == hashlib.sha256(b"NEW").hexdigest()
    assert "p" not in got and "dev/null" not in got  # specials are left out
    assert got["suid"][1] == 0o4755 and got["owned"][2:4] == (1000, 1000)


@pytest.mark.parametrize("how", ["gzip", "zstd", "none"])
def test_every_compression_gives_the_same_tree(tmp_path: Path, how: str) -> None:
    layers = [layer_tar(LAYER1), layer_tar(LAYER2), layer_tar(LAYER3)]
    write_layout(str(tmp_path / "gz"), layers, how="gzip")
    write_layout(str(tmp_path / how), layers, how=how)
    reference = snapshot(flatten(tmp_path / "gz", tmp_path / "s1"))
    assert snapshot(flatten(tmp_path / how, tmp_path / "s2")) == reference


def test_multi_member_gzip_is_read_whole(tmp_path: Path) -> None:
    tar = layer_tar([M("big", data=os.urandom(3000) * 100), M("tail", data=b"end")])
    half = len(tar) // 2
    blob = compress(tar[:half], "gzip") + compress(tar[half:], "gzip") + b"\x00" * 16
    write_layout(str(tmp_path / "img"), [], blobs=[blob], diff_ids=[sha256(tar)])
    tree = flatten(tmp_path / "img", tmp_path / "store")
    assert "tail" in tree


def hostile(members: list[M], *more: list[M]) -> list[bytes]:
    return [layer_tar(members), *(layer_tar(m) for m in more)]


OUTSIDE = M("evil", "symlink", link="../../../../../tmp")
HOSTILE = [
    ("absolute dotdot", hostile([M("/../etc/passwd", data=b"x")]), "climbs out of the root"),
    ("dotdot", hostile([M("../escape", data=b"x")]), "'../escape' climbs out of the root"),
    ("inner dotdot", hostile([M("a/../../x", data=b"x")]), "'a/../../x' climbs out"),
    ("through symlink", hostile([OUTSIDE, M("evil/pwned", data=b"x")]), "'evil/pwned' goes"),
    ("symlink next layer", hostile([OUTSIDE], [M("evil/x", data=b"x")]), "layer 2 ("),
    ("whiteout outside", hostile([OUTSIDE], [M("evil/.wh.passwd")]), "'evil/.wh.passwd'"),
    ("whiteout dotdot", hostile([M("a", "dir"), M("a/.wh...")]), "names no valid entry"),
    ("dangling hardlink", hostile([M("h", "hardlink", link="nothere")]), "hard link 'h'"),
    ("hardlink to dir", hostile([M("d", "dir"), M("h", "hardlink", link="d")]), "hard link 'h'"),
    ("hardlink out", hostile([M("h", "hardlink", link="../../etc/passwd")]), "climbs out"),
    ("hardlink absolute", hostile([M("h", "hardlink", link="/etc/shadow")]), "hard link 'h'"),
    ("hardlink absolute dotdot", hostile([M("h", "hardlink", link="/../x")]), "climbs out"),
]


@pytest.mark.parametrize(
    ("layers", "message"), [c[1:] for c in HOSTILE], ids=[c[0] for c in HOSTILE]
)
def test_hostile_layers_are_refused(tmp_path: Path, layers: list[bytes], message: str) -> None:
    write_layout(str(tmp_path / "img"), layers)
    with pytest.raises(UnsafePathError) as err:
        flatten(tmp_path / "img", tmp_path / "store")
    text = str(err.value)
    assert message in text and "\n" not in text
    assert text.startswith("layer ")


def broken_blobs() -> list[tuple[str, list[bytes], list[str], str]]:
    tar = layer_tar([M("f", data=os.urandom(50_000)), M("g", data=b"g")])
    gz = compress(tar, "gzip")
    flipped = bytearray(gz)
    flipped[len(gz) // 2] ^= 0xFF
    flipped[len(gz) // 2 + 1] ^= 0xFF
    return [
        ("corrupt gzip", [bytes(flipped)], [sha256(tar)], "not a valid gzip stream"),
        ("truncated gzip", [gz[: len(gz) // 2]], [sha256(tar)], "gzip stream is truncated"),
        ("gzip garbage", [gz + b"junk"], [sha256(tar)], "garbage after the end"),
        ("corrupt zstd", [compress(tar, "zstd")[:-9] + b"\x00" * 9], [sha256(tar)], "layer 1"),
        ("not a tar", [compress(b"hello " * 200, "gzip")], [sha256(b"hello " * 200)], "tar"),
        ("diff_id mismatch", [gz], ["sha256:" + "0" * 64], "diff_id is sha256:0000"),
    ]


@pytest.mark.parametrize(
    ("blobs", "diff_ids", "message"),
    [c[1:] for c in broken_blobs()],
    ids=[c[0] for c in broken_blobs()],
)
def test_broken_layers_are_refused(
    tmp_path: Path, blobs: list[bytes], diff_ids: list[str], message: str
) -> None:
    write_layout(str(tmp_path / "img"), [], blobs=blobs, diff_ids=diff_ids)
    with pytest.raises(ImageFormatError) as err:
        flatten(tmp_path / "img", tmp_path / "store")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_errors_are_one_family() -> None:
    assert issubclass(UnsafePathError, SmithError) and issubclass(ImageFormatError, SmithError)


LONG = "d" * 60 + "/" + "e" * 90 + "/" + "f" * 120  # beyond ustar's 100+155 split
NAMES = [
    M("dir", "dir"),
    M("dir/" + "n" * 99, data=b"ustar name"),
    M("p" * 150 + "/q", data=b"ustar prefix"),
    M(LONG, data=b"long name"),
    M("link", "symlink", link=LONG),
    M("hard", "hardlink", link=LONG),
    M("caf\u00e9", data=b"utf-8 name"),
    M("big-ids", data=b"ids", uid=3_000_000, gid=2_500_000),
]


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT])
def test_tar_formats_give_the_same_tree(tmp_path: Path, fmt: int) -> None:
    """GNU long names and base-256 ids, PAX records, ustar prefixes: the same tree."""
    members = NAMES
    if fmt == tarfile.USTAR_FORMAT:  # ustar cannot hold long names or big ids at all
        members = [m for m in NAMES if LONG not in (m.name, m.link) and m.uid < 2**21]
    write_layout(str(tmp_path / "pax"), [layer_tar(members)])
    write_layout(str(tmp_path / "other"), [layer_tar(members, fmt)])
    expected = snapshot(flatten(tmp_path / "pax", tmp_path / "s1"))
    assert snapshot(flatten(tmp_path / "other", tmp_path / "s2")) == expected
    assert {m.name for m in members} <= set(expected)
    if fmt != tarfile.USTAR_FORMAT:
        assert expected["big-ids"][2:4] == (3_000_000, 2_500_000)
        assert expected["hard"][4] == LONG and expected["link"][4] == LONG


def test_sparse_and_unknown_types_are_refused(tmp_path: Path) -> None:
    tar = bytearray(layer_tar([M("f", data=b"x")]))
    tar[156:157] = b"S"  # GNU sparse
    tar[148:156] = b"        "
    tar[148:156] = b"%06o\x00 " % sum(tar[:512])
    write_layout(str(tmp_path / "img"), [bytes(tar)])
    with pytest.raises(ImageFormatError, match="'f' has unsupported type b'S'"):
        flatten(tmp_path / "img", tmp_path / "store")


def test_pax_sparse_files_are_refused(tmp_path: Path) -> None:
    """GNU sparse 1.0 in PAX records is a type '0' entry whose body starts with the map:
    read as a plain file it would carry the map as content, under GNUSparseFile.0/."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("GNUSparseFile.0/sp")
        info.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0",
                            "GNU.sparse.name": "sp", "GNU.sparse.realsize": "1000000"}  # fmt: skip
        body = b"1\n999995\n5\n".ljust(512, b"\0") + b"hello"
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
    write_layout(str(tmp_path / "img"), [out.getvalue()])
    with pytest.raises(ImageFormatError, match=r"'GNUSparseFile\.0/sp' is a sparse file"):
        flatten(tmp_path / "img", tmp_path / "store")


DEEP = "/".join(["a"] * 255)
TOO_DEEP = [
    ("257 levels", [M(DEEP + "/b/c", data=b"x")], "'a/a/a/"),
    ("4097 bytes", [M("n" * 4097, data=b"x")], "is 4097 bytes"),
    ("deep through a symlink", [M(DEEP, "dir"), M("s", "symlink", link="/" + DEEP),
                                M("s/b/c", data=b"x")], "entry 's/b/c' is 513 bytes, 257 levels"),
    ("hard link target", [M("h", "hardlink", link=DEEP + "/b/c")], "hard link target"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("members", "message"), [c[1:] for c in TOO_DEEP], ids=[c[0] for c in TOO_DEEP]
)
def test_names_too_long_or_deep_are_refused(tmp_path: Path, members: list[M], message: str) -> None:
    """Beyond PATH_MAX or 256 levels, a name is one error, not a RecursionError in one
    of the tree walks (whiteouts, replacement, closure) that go one level at a time."""
    write_layout(str(tmp_path / "img"), [layer_tar(members)])
    with pytest.raises(ImageFormatError) as err:
        flatten(tmp_path / "img", tmp_path / "store")
    text = str(err.value)
    assert message in text and "(at most 4096 bytes and 256 levels)" in text
    assert "\n" not in text and len(text) < 300


def span_layers() -> list[bytes]:
    """Two layers of files of every kind the pack rule tells apart: small, large data,
    large ELF and script (told by their first bytes), large under a named path, a hard
    link to a large data file, and one replaced by the next layer."""
    rng = random.Random(21)

    def data(n: int, head: bytes = b"") -> bytes:
        return head + bytes(rng.getrandbits(8) for _ in range(n - len(head)))

    first = [
        M("small", data=data(100)),
        M("big/a", data=data(300_000)),
        M("big/b", data=data(200_001)),
        M("big/elf", data=data(150_000, b"\x7fELF")),
        M("big/script", data=data(150_000, b"#!/bin/sh\n")),
        M("named/x", data=data(120_000)),
        M("etc/conf", data=data(100_000)),
        M("link", "hardlink", link="big/b"),
        M("big/replaced", data=data(90_000)),
    ]
    second = [M("big/replaced", data=data(95_000)), M("big/c", data=data(400_000))]
    return [layer_tar(first), layer_tar(second)]


@pytest.mark.parametrize("how", ["gzip", "none", "zstd", "gzip members"])
def test_files_left_in_the_layer_read_back_the_same(
    tmp_path: Path, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a PackRule, large files that can hardly be kept are not copied out, only where
    they are in the layer; opened, each gives its bytes, read again from the blob (gzip:
    from the nearest checkpoint, several per layer here), in any order."""
    import smith.oci.layerread as layerread
    from smith.oci.compress import CompressedWriter, Compression
    from smith.oci.unpack import PackRule
    from smith.tree import HostSlice, LayerSpan

    monkeypatch.setattr(layerread, "CHECKPOINT_EVERY", 1)
    monkeypatch.setattr(layerread, "READ_SIZE", 1 << 16)  # many checkpoints
    tars = span_layers()
    if how == "gzip members":  # smith's own writer: a gzip member per 4 MiB (here per 64 KiB)
        import smith.oci.compress as compress_module

        monkeypatch.setattr(compress_module, "GZIP_MEMBER_SIZE", 1 << 16)
        blobs = []
        for tar in tars:
            out = io.BytesIO()
            writer = CompressedWriter(out, Compression.GZIP, lambda _data: None)
            writer.write(tar)
            writer.close()
            blobs.append(out.getvalue())
        write_layout(str(tmp_path / "img"), [], blobs=blobs, diff_ids=[sha256(t) for t in tars])
    else:
        write_layout(str(tmp_path / "img"), tars, how=how)
    expected = {}
    for tar in tars:
        with tarfile.open(fileobj=io.BytesIO(tar)) as t:
            for m in t.getmembers():
                if m.isfile():
                    f = t.extractfile(m)
                    assert f is not None
                    expected[m.name] = f.read()
    expected["link"] = expected["big/b"]
    with open_image(str(tmp_path / "img")) as image:
        tree, _ = apply_layers(image, str(tmp_path / "store"), PackRule(("named/",)))
        contents = {}
        for name in expected:
            entry = tree.get(name)
            assert entry is not None
            if entry.kind is Kind.HARDLINK:
                entry = tree.get(entry.target)
                assert entry is not None
            contents[name] = entry.content
        packed = {n for n, c in contents.items() if getattr(c, "path", "").endswith(".pack")}
        left = set(expected) - packed
        if how == "zstd":  # no checkpoints: copied as before
            assert left == set()
        else:
            assert left == {"big/a", "big/b", "big/c", "big/replaced", "link"}
            kind = HostSlice if how == "none" else LayerSpan
            assert all(isinstance(contents[n], kind) for n in left)
        if how.startswith("gzip"):
            span = contents["big/a"]
            assert isinstance(span, LayerSpan)
            assert len(span.source.checkpoints) > 5  # type: ignore[attr-defined]
        for name in sorted(expected, reverse=True):  # backwards: big/b before big/a
            with contents[name].open() as f:
                assert f.read() == expected[name], name
        with contents["big/a"].open() as f:  # again: from the copy made the first time
            assert f.read() == expected["big/a"]
