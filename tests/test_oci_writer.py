"""The writer's bytes: golden digests, order independence, safety, schemas, atomicity."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import random
import tarfile
from dataclasses import replace
from pathlib import Path

import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smith.errors import ImageFormatError, SmithError, UnsafePathError, UsageError
from smith.oci.compress import Compression
from smith.oci.image import ImageConfig, Platform
from smith.oci.output import PlatformImage, write_image, write_index_image
from smith.oci.reading import open_image
from smith.oci.tarball import stream_layer
from smith.oci.unpack import apply_layers
from smith.paths import normalize_path
from smith.tree import Entry, FileTree, HostFile, InlineBytes, Kind
from tests import trees
from tests.oci_schema import validate

GOLDEN = Path(__file__).parent / "golden" / "writer.json"


def layer_bytes(tree: FileTree, epoch: int = 0) -> bytes:
    return b"".join(stream_layer(tree, epoch))


def test_golden_digests() -> None:
    # A deliberate change: `python -m tests.trees > tests/golden/writer.json`, and review.
    assert trees.digests() == json.loads(GOLDEN.read_text())


def test_golden_two_platform_index() -> None:
    # A deliberate change: `python -m tests.trees platforms > tests/golden/platforms.json`.
    golden = json.loads(GOLDEN.with_name("platforms.json").read_text())
    assert trees.platform_digests() == golden
    # Each platform's manifest is what its tree gives alone: small/gzip of writer.json.
    assert golden["amd64"] == json.loads(GOLDEN.read_text())["small"]["gzip"]["manifest"]


def test_index_of_platforms_is_valid_oci(tmp_path: Path, oci_schema_dir: Path) -> None:
    arm = replace(trees.CONFIG, platform=Platform("arm64", "linux", "v8"))
    images = [
        PlatformImage(trees.small_tree(), trees.CONFIG),
        PlatformImage(trees.small_tree(), arm),
    ]
    written = write_index_image(images, str(tmp_path / "out"))
    top = json.loads((tmp_path / "out/index.json").read_bytes())
    validate(oci_schema_dir, "index", top)
    nested = tmp_path / "out/blobs/sha256" / written.index.digest.removeprefix("sha256:")
    doc = json.loads(nested.read_bytes())
    validate(oci_schema_dir, "index", doc)
    assert [m["platform"]["architecture"] for m in doc["manifests"]] == ["amd64", "arm64"]
    # The same layer serves both platforms: stored once.
    assert written.images[0].layers == written.images[1].layers
    with pytest.raises(UsageError, match="a docker-archive holds one platform"):
        write_index_image(images, str(tmp_path / "d.tar"), fmt="docker-archive")
    assert not (tmp_path / "d.tar").exists()


def test_layer_is_a_tar_that_says_exactly_the_tree() -> None:
    data = layer_bytes(trees.awkward_tree())
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name.rstrip("/"): m for m in tar}
        names = [m.name for m in tar]
        assert all(m.mtime == 0 and m.uname == "" and m.gname == "" for m in tar)
        assert all(not isinstance(m.mtime, float) for m in tar)
        first = members["aaa-also-first"]
        assert first.isreg() and first.size == 5000 and first.mode == 0o600
        assert members["data/first"].islnk() and members["data/first"].linkname == "aaa-also-first"
        assert members["data/second"].linkname == "aaa-also-first"
        assert members["exe/setuid"].mode == 0o4755  # the writer keeps modes; conventions strip
        assert members["owned"].gid == 3000000 and members["owned"].uid == 1000
        assert members["sticky"].isdir() and members["sticky"].mode == 0o1777
        assert "\u00e9t\u00e9/\u65e5\u672c\u8a9e.txt" in members
        assert tar.extractfile(members["exe/tool"]).read()[:4] == b"\x7fELF"  # type: ignore[union-attr]
    # Every parent directory is written, before its children, in bytewise order.
    raw = [n.rstrip("/").encode("utf-8", "surrogateescape") for n in names]
    assert raw == sorted(raw)
    for name in names:
        parts = name.rstrip("/").split("/")
        for i in range(1, len(parts)):
            assert "/".join(parts[:i]) in names
    assert len(data) % 512 == 0 and data.endswith(b"\0" * 1024)


def test_gnu_tar_reads_it(tmp_path: Path) -> None:
    import subprocess

    (tmp_path / "layer.tar").write_bytes(layer_bytes(trees.awkward_tree()))
    out = subprocess.run(
        ["tar", "-tvf", "layer.tar"], cwd=tmp_path, capture_output=True, check=True
    ).stdout.decode("utf-8", "surrogateescape")
    assert "aaa-also-first" in out and "link to aaa-also-first" in out
    assert "n" * 150 in out


def test_gzip_layer_is_members_with_fixed_headers(tmp_path: Path) -> None:
    out = str(tmp_path / "img")
    image = write_image(trees.big_tree(), ImageConfig(), out, compression=Compression.GZIP)
    with open_image(out) as img, img.layers[0].open_compressed() as f:
        blob = f.read()
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    assert blob.startswith(header)
    assert blob.count(header) >= 2  # 8 MiB of tar: at least two members
    raw = gzip.decompress(blob)
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == image.layers[0].diff_id
    annotations = dict(image.layers[0].descriptor.annotations)
    assert annotations["org.smith.compressor.level"] == "6"
    assert annotations["org.smith.compressor.version"] == "0.9.0"


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=5000), max_size=12))
def test_gzip_members_are_cut_at_fixed_points_however_the_bytes_come(sizes: list[int]) -> None:
    """The same bytes, written in pieces of any sizes, give the same members: one per
    GZIP_MEMBER_SIZE of the stream (here 1000 bytes), whatever the pieces were."""
    from unittest import mock

    import smith.oci.compress as compress_module
    from smith.oci.compress import CompressedWriter, gzip_member

    data = random.Random(len(sizes)).randbytes(sum(sizes))
    out = io.BytesIO()
    with mock.patch.object(compress_module, "GZIP_MEMBER_SIZE", 1000):
        writer = CompressedWriter(out, Compression.GZIP, lambda _data: None)
        start = 0
        for size in sizes:
            writer.write(data[start : start + size])
            start += size
        writer.close()
    expected = b"".join(gzip_member(data[i : i + 1000]) for i in range(0, len(data), 1000))
    assert out.getvalue() == expected


def test_zstd_layer_decompresses_to_diff_id(tmp_path: Path) -> None:
    out = str(tmp_path / "img")
    image = write_image(trees.big_tree(), ImageConfig(), out, compression=Compression.ZSTD)
    layer = image.layers[0].descriptor
    assert layer.media_type == "application/vnd.oci.image.layer.v1.tar+zstd"
    blob = (tmp_path / "img" / "blobs" / "sha256" / layer.digest[7:]).read_bytes()
    raw = zstandard.ZstdDecompressor().decompressobj().decompress(blob)
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == image.layers[0].diff_id


def shuffled_copy(tree: FileTree, seed: int) -> FileTree:
    entries = list(tree)
    random.Random(seed).shuffle(entries)
    copy = FileTree()
    for entry in entries:
        copy.add(entry)
    return copy


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32))
def test_any_insertion_order_gives_the_same_bytes(seed: int) -> None:
    tree = trees.awkward_tree()
    assert layer_bytes(shuffled_copy(tree, seed)) == layer_bytes(tree)


@settings(max_examples=30, deadline=None)
@given(names=st.lists(st.sampled_from(["a", "b", "c", "d"]), min_size=2, max_size=4, unique=True))
def test_hard_link_groups_do_not_depend_on_which_name_came_first(names: list[str]) -> None:
    def build(order: list[str]) -> bytes:
        tree = FileTree()
        tree.add_file(order[0], InlineBytes(b"shared"), 0o755)
        for other in order[1:]:
            tree.add_hardlink(other, order[0])
        return layer_bytes(tree)

    assert build(names) == build(sorted(names))


path_text = st.lists(
    st.sampled_from(["a", "b", "/", ".", "..", "\u00e9", " ", "\\", "\x00", "~", "//"]), max_size=12
).map("".join)


@settings(max_examples=300, deadline=None)
@given(path=path_text)
def test_any_path_lands_inside_the_root_or_is_refused(
    path: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    tree = FileTree()
    try:
        tree.add_file(path, InlineBytes(b"x"))
    except SmithError:
        return  # refused: fine
    with tarfile.open(fileobj=io.BytesIO(layer_bytes(tree))) as tar:
        for member in tar:
            name = member.name.rstrip("/")
            assert name and not name.startswith("/")
            assert ".." not in name.split("/")
            assert normalize_path(name) == name


@pytest.mark.parametrize("path", ["../x", "a/../../x", "/../x", "a/\x00"])
def test_hostile_paths_are_refused(path: str) -> None:
    with pytest.raises(UnsafePathError):
        FileTree().add_file(path, InlineBytes(b"x"))


def test_documents_validate_against_oci_schemas(tmp_path: Path, oci_schema_dir: Path) -> None:
    out = tmp_path / "img"
    write_image(trees.awkward_tree(), trees.CONFIG, str(out), tag="v1")
    validate(oci_schema_dir, "layout", json.loads((out / "oci-layout").read_text()))
    index = json.loads((out / "index.json").read_text())
    validate(oci_schema_dir, "index", index)
    blobs = out / "blobs" / "sha256"
    manifest = json.loads((blobs / index["manifests"][0]["digest"][7:]).read_text())
    validate(oci_schema_dir, "manifest", manifest)
    config = json.loads((blobs / manifest["config"]["digest"][7:]).read_text())
    validate(oci_schema_dir, "config", config)
    assert config["config"]["Env"] == ["PATH=/usr/bin:/bin", "B=2", "A=1"]  # declared order
    assert config["created"] == "1970-01-01T00:00:00Z"


def test_documents_are_canonical_json(tmp_path: Path) -> None:
    out = tmp_path / "img"
    write_image(trees.small_tree(), trees.CONFIG, str(out))
    for blob in [out / "index.json", *sorted((out / "blobs" / "sha256").iterdir())]:
        data = blob.read_bytes()
        if data[:1] != b"{":
            continue
        doc = json.loads(data)
        assert (
            data
            == json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        )


def test_epoch_is_the_only_time(tmp_path: Path) -> None:
    a = write_image(trees.small_tree(), ImageConfig(), str(tmp_path / "a"), epoch=1700000000)
    b = write_image(trees.small_tree(), ImageConfig(), str(tmp_path / "b"), epoch=0)
    assert a.layers[0].diff_id != b.layers[0].diff_id
    config = json.loads((tmp_path / "a" / "blobs" / "sha256" / a.config.digest[7:]).read_text())
    assert config["created"] == "2023-11-14T22:13:20Z"


@pytest.mark.parametrize("name", ["img.tar", "img.tar.gz", "img-docker.tar", "img-dir"])
def test_every_format_reads_back_to_the_same_image(tmp_path: Path, name: str) -> None:
    fmt = "docker-archive" if "docker" in name else None
    out = str(tmp_path / name)
    image = write_image(trees.awkward_tree(), trees.CONFIG, out, fmt=fmt, tag="x:1")
    with open_image(out) as img:
        assert img.config_descriptor.digest == image.config.digest
        assert [layer.digest for layer in img.layers] == [image.layers[0].descriptor.digest]
        assert img.diff_ids == (image.layers[0].diff_id,)
        assert img.image_config().env == trees.CONFIG.env
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary leftovers


def test_archives_are_deterministic(tmp_path: Path) -> None:
    for suffix in ["tar", "tar.gz"]:
        write_image(trees.small_tree(), ImageConfig(), str(tmp_path / f"a.{suffix}"))
        os.umask(0o077)
        try:
            write_image(trees.small_tree(), ImageConfig(), str(tmp_path / f"b.{suffix}"))
        finally:
            os.umask(0o022)
        assert (tmp_path / f"a.{suffix}").read_bytes() == (tmp_path / f"b.{suffix}").read_bytes()


class Exploding:
    """Content whose reading fails half-way, like a vanished file or Ctrl-C."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def open(self) -> io.BytesIO:
        raise self.exc


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), OSError(5, "Input/output error")])
@pytest.mark.parametrize("name", ["img", "img.tar", "img.tar.gz"])
def test_failed_write_leaves_nothing(tmp_path: Path, exc: BaseException, name: str) -> None:
    tree = trees.big_tree()
    tree.add(Entry("zzz", Kind.FILE, size=10, content=Exploding(exc)))  # type: ignore[arg-type]
    with pytest.raises(type(exc)):
        write_image(tree, ImageConfig(), str(tmp_path / name))
    assert list(tmp_path.iterdir()) == []


def test_replacing_an_existing_output_is_atomic(tmp_path: Path) -> None:
    out = tmp_path / "img"
    write_image(trees.small_tree(), ImageConfig(), str(out))
    before = sorted(p.name for p in (out / "blobs" / "sha256").iterdir())
    tree = trees.small_tree()
    tree.add(Entry("zzz", Kind.FILE, size=10, content=Exploding(OSError(5, "EIO"))))  # type: ignore[arg-type]
    with pytest.raises(OSError):
        write_image(tree, ImageConfig(), str(out))
    assert sorted(p.name for p in (out / "blobs" / "sha256").iterdir()) == before
    write_image(trees.awkward_tree(), ImageConfig(), str(out))
    assert sorted(p.name for p in (out / "blobs" / "sha256").iterdir()) != before
    assert [p.name for p in tmp_path.iterdir()] == ["img"]


def test_file_that_changed_size_is_an_error(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.write_bytes(b"12345")
    tree = FileTree()
    tree.add_file("f", HostFile(str(src)))
    src.write_bytes(b"123")
    with pytest.raises(SmithError, match="'f' is shorter than its recorded size 5"):
        write_image(tree, ImageConfig(), str(tmp_path / "out"))


@pytest.mark.parametrize(
    ("existing", "name", "message"),
    [
        ("user dir", "out", "is a directory that is not an OCI layout: refusing to replace it"),
        ("user dir", "out.tar", "is a directory that is not an OCI layout"),
        ("file", "out", "exists and is not a directory"),
        ("symlink", "out", "is a symbolic link: name its target, or remove it"),
        ("nothing", ".", "names no file or directory of its own"),
        ("nothing", "", "names no file or directory of its own"),
    ],
)
def test_output_never_replaces_what_is_not_an_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, existing: str, name: str, message: str
) -> None:
    """A directory of the user's files named as the output is not deleted (nor `.`); a
    layout is not renamed over a file or through a symlink, which rename() cannot do."""
    work = tmp_path / "work"
    (work / "keep").mkdir(parents=True)
    (work / "keep" / "precious").write_text("mine")
    if existing == "user dir":
        (work / name).mkdir(exist_ok=True)
        (work / name / "precious").write_text("mine")
    elif existing == "file":
        (work / name).write_text("mine")
    elif existing == "symlink":
        (work / name).symlink_to(work / "keep")
    monkeypatch.chdir(work / "keep" if name == "." else work)
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    with pytest.raises(SmithError) as err:
        write_image(trees.small_tree(), ImageConfig(), name)
    assert message in str(err.value) and repr(name) in str(err.value)
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == before


def test_output_replaces_an_empty_directory_and_a_layout(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    write_image(trees.small_tree(), ImageConfig(), str(tmp_path / "empty"))
    write_image(trees.awkward_tree(), ImageConfig(), str(tmp_path / "empty"))
    write_image(trees.awkward_tree(), ImageConfig(), str(tmp_path / "empty"), fmt="oci-archive")
    assert (tmp_path / "empty").is_file()


def test_unwritable_output_directory_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SmithError, match="does not exist"):
        write_image(trees.small_tree(), ImageConfig(), str(tmp_path / "missing" / "img"))


# -- readers: hostile and broken inputs -------------------------------------------------------


def tar_with(members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data else None)
    return buf.getvalue()


def info(
    name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", link: str = ""
) -> tuple[tarfile.TarInfo, bytes]:
    ti = tarfile.TarInfo(name)
    ti.type, ti.size, ti.linkname = kind, len(data), link
    return ti, data


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ([info("../escape", data=b"x")], "climbs out"),
        ([info("/etc/evil", data=b"x")], "absolute name"),
        ([info("blobs", tarfile.SYMTYPE, link="/etc")], "link or special file"),
        ([info("index.json", tarfile.LNKTYPE, link="../../etc/passwd")], "link or special file"),
        ([info("dev", tarfile.CHRTYPE)], "link or special file"),
    ],
)
def test_hostile_archives_are_refused(
    tmp_path: Path, members: list[tuple[tarfile.TarInfo, bytes]], message: str
) -> None:
    archive = tmp_path / "evil.tar"
    archive.write_bytes(tar_with(members))
    with pytest.raises(UnsafePathError, match=message), open_image(str(archive)):
        pass
    assert not (tmp_path.parent / "escape").exists()


def corrupt_layer(layout: Path, how: str) -> str:
    index = json.loads((layout / "index.json").read_text())
    blobs = layout / "blobs" / "sha256"
    manifest = json.loads((blobs / index["manifests"][0]["digest"][7:]).read_text())
    digest: str = manifest["layers"][0]["digest"]
    blob = blobs / digest[7:]
    data = blob.read_bytes()
    if how == "truncated":
        blob.write_bytes(data[:-10])
    elif how == "corrupt":
        blob.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    else:
        blob.unlink()
    return digest


@pytest.mark.parametrize(
    ("how", "message"),
    [("truncated", "is truncated"), ("corrupt", "is corrupt"), ("missing", "is missing")],
)
def test_broken_blobs_are_named(tmp_path: Path, how: str, message: str) -> None:
    """A blob that is missing or of the wrong size is refused when the image is opened; one
    with other bytes of the right size where its content is first read: in the pass that
    inflates it, or before it is used as stored."""
    out = tmp_path / "img"
    write_image(trees.small_tree(), ImageConfig(), str(out))
    digest = corrupt_layer(out, how)
    match = f"{out}: layer {digest} {message}"
    if how != "corrupt":
        with pytest.raises(ImageFormatError, match=match), open_image(str(out)):
            pass
        return
    with open_image(str(out)) as image, pytest.raises(ImageFormatError, match=match):
        apply_layers(image, str(tmp_path / "store"))
    with open_image(str(out)) as image, pytest.raises(ImageFormatError, match=match):
        image.layers[0].verified_path()
    with open_image(str(out)) as image, pytest.raises(ImageFormatError, match=match):
        write_image(trees.small_tree(), ImageConfig(), str(tmp_path / "child"), parent=image)
    assert not (tmp_path / "child").exists()


def test_a_blob_read_once_is_not_checked_again(tmp_path: Path) -> None:
    """The pass that inflates a layer checks its blob: what uses the blob as stored later
    (a parent's layers, push) does not read it again."""
    out = tmp_path / "img"
    write_image(trees.small_tree(), ImageConfig(), str(out))
    with open_image(str(out)) as image:
        layer = image.layers[0]
        assert not layer.check.done
        apply_layers(image, str(tmp_path / "store"))
        assert layer.check.done
        corrupt_layer(out, "corrupt")  # a second read would see this
        assert layer.verified_path() == layer.unchecked_path
    with open_image(str(out)) as image, pytest.raises(ImageFormatError, match="is corrupt"):
        image.layers[0].verified_path()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not a tar at all" * 100, "not a readable image archive"),
        (b"", "not a readable image archive"),
    ],
)
def test_garbage_archives(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "junk.tar"
    path.write_bytes(content)
    with pytest.raises(ImageFormatError, match=message) as err, open_image(str(path)):
        pass
    assert "\n" not in str(err.value)  # tarfile's reason per decompressor is several lines


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ([info("blobs", data=b"x"), info("blobs/sha256", tarfile.DIRTYPE)], "'blobs/sha256'"),
        ([info("blobs", data=b"x"), info("blobs/f", data=b"x")], "'blobs/f'"),
        ([info("blobs", tarfile.DIRTYPE), info("blobs", data=b"x")], "'blobs'"),
    ],
)
def test_archive_entry_that_is_a_file_and_a_directory(
    tmp_path: Path, members: list[tuple[tarfile.TarInfo, bytes]], message: str
) -> None:
    """Named by archive and entry, not by smith's temporary directory."""
    archive = tmp_path / "odd.tar"
    archive.write_bytes(tar_with(members))
    with pytest.raises(ImageFormatError) as err, open_image(str(archive)):
        pass
    assert str(err.value) == f"{archive}: entry {message} is a file and a directory"


def test_docker_archive_naming_a_directory(tmp_path: Path) -> None:
    manifest = json.dumps([{"Config": "c.json", "Layers": ["d"]}]).encode()
    archive = tmp_path / "docker.tar"
    members = [info("manifest.json", data=manifest), info("c.json", data=b"{}")]
    archive.write_bytes(tar_with([*members, info("d", tarfile.DIRTYPE)]))
    with (
        pytest.raises(ImageFormatError, match=r"manifest\.json names 'd', a directory"),
        open_image(str(archive)),
    ):
        pass


def test_truncated_gzip_archive(tmp_path: Path) -> None:
    out = tmp_path / "img.tar.gz"
    write_image(trees.big_tree(), ImageConfig(), str(out))
    data = out.read_bytes()
    out.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageFormatError, match=r"img\.tar\.gz"), open_image(str(out)):
        pass


def test_layer_cache_reuses_and_never_trusts_a_damaged_entry(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = write_image(
        trees.awkward_tree(), ImageConfig(), str(tmp_path / "a"), cache_dir=str(cache)
    )
    (blob,) = (cache / "layers").glob("*.blob")
    again = write_image(
        trees.awkward_tree(), ImageConfig(), str(tmp_path / "b"), cache_dir=str(cache)
    )
    assert again == first
    blob.write_bytes(b"damaged")  # a cache entry that lies about its content
    third = write_image(
        trees.awkward_tree(), ImageConfig(), str(tmp_path / "c"), cache_dir=str(cache)
    )
    assert third == first
    with open_image(str(tmp_path / "c")):
        pass  # every blob checked against its digest
    changed = trees.awkward_tree()
    changed.add_file("new", InlineBytes(b"x"))
    other = write_image(changed, ImageConfig(), str(tmp_path / "d"), cache_dir=str(cache))
    assert other.layers[0].diff_id != first.layers[0].diff_id


def test_a_file_where_another_package_has_a_directory_names_both_packages() -> None:
    tree = FileTree()
    tree.add_file("usr/share/x", InlineBytes(b"file"), origin="alpha-1-1.x86_64")
    tree.add_file("usr/share/x/y", InlineBytes(b"below"), origin="beta-2-1.noarch")
    with pytest.raises(SmithError) as err:
        b"".join(stream_layer(tree, 0))
    assert str(err.value) == (
        "'usr/share/x/y' (from beta-2-1.noarch) is below 'usr/share/x', which is a file "
        "(from alpha-1-1.x86_64), not a directory"
    )


def test_a_docker_archive_layer_is_checked_where_it_is_read(tmp_path: Path) -> None:
    """An uncompressed docker-archive layer is named by the config's diff_id, not hashed
    when the archive is opened: the pass that reads it checks it, and a layer whose bytes
    are not the diff_id's is refused there, in one line."""
    archive = tmp_path / "img.tar"
    write_image(
        trees.small_tree(), ImageConfig(), str(archive), fmt="docker-archive",
        compression=Compression.NONE,
    )  # fmt: skip
    unpacked = tmp_path / "unpacked"
    with tarfile.open(archive) as tar:
        tar.extractall(unpacked, filter="data")
    with open_image(str(unpacked)) as image:
        layer = image.layers[0]
        assert layer.digest == layer.diff_id and not layer.check.done
        apply_layers(image, str(tmp_path / "store"))
        assert layer.check.done
    blob = Path(layer.unchecked_path)
    data = bytearray(blob.read_bytes())
    data[-1] ^= 1  # in the end-of-archive blocks: still a tar, other bytes
    blob.write_bytes(bytes(data))
    with open_image(str(unpacked)) as image, pytest.raises(ImageFormatError) as err:
        apply_layers(image, str(tmp_path / "store2"))
    assert f"layer {layer.digest} is corrupt" in str(err.value)
    assert "\n" not in str(err.value)
