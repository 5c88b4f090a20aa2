"""`smith diff`: each kind of difference is named by its role, entry and field.

The images are hand-made (tests/imagekit.py) from tars written with Python's tarfile, so
every header field can be set to exactly the bad value a careless writer produces. Two real
images built by `smith build` are compared in tests/test_verify.py.
"""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
import zstandard

from smith.diff import diff_images
from tests.imagekit import compress, put_blob, sha256, write_layout
from tests.test_unpack import HOSTILE, broken_blobs


def tar_of(*members: tuple[str, dict[str, Any]], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    """A tar of (name, TarInfo attributes) members; `data` gives a file's content."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        for name, attrs in members:
            info = tarfile.TarInfo(name)
            data = attrs.get("data", b"")
            for key, value in attrs.items():
                if key != "data":
                    setattr(info, key, value)
            if info.type == tarfile.REGTYPE:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return out.getvalue()


FILE = {"mode": 0o644, "data": b"one"}
SYMLINK = {"type": tarfile.SYMTYPE, "linkname": "target"}
DIR = {"type": tarfile.DIRTYPE, "mode": 0o755}

# (case, A's members, B's members, expected (subject, field) of the first cause)
CASES = [
    ("mode", [("a", FILE)], [("a", FILE | {"mode": 0o755})], ("a", "mode")),
    ("uid", [("a", FILE)], [("a", FILE | {"uid": 1000})], ("a", "uid")),
    ("gid", [("a", FILE)], [("a", FILE | {"gid": 1000})], ("a", "gid")),
    ("uname", [("a", FILE)], [("a", FILE | {"uname": "builder"})], ("a", "uname")),
    ("gname", [("a", FILE)], [("a", FILE | {"gname": "staff"})], ("a", "gname")),
    ("mtime", [("a", FILE)], [("a", FILE | {"mtime": 1700000000})], ("a", "mtime")),
    ("float mtime", [("a", FILE)], [("a", FILE | {"mtime": 0.5})], ("a", "mtime")),
    ("name form ./", [("a", FILE)], [("./a", FILE)], ("a", "name form")),
    ("link target", [("l", SYMLINK)], [("l", SYMLINK | {"linkname": "other"})],
     ("l", "link target")),
    ("size", [("a", FILE)], [("a", FILE | {"data": b"one!"})], ("a", "size")),
    ("content", [("a", FILE)], [("a", FILE | {"data": b"two"})], ("a", "content")),
    ("pax records", [("a", FILE)], [("a", FILE | {"pax_headers": {"comment": "hi"}})],
     ("a", "PAX records")),
    ("type", [("a", FILE)], [("a", DIR)], ("a", "type")),
    ("added", [("a", FILE)], [("a", FILE), ("b", FILE)], ("b", "added")),
    ("removed", [("a", FILE), ("b", FILE)], [("a", FILE)], ("b", "removed")),
    ("order", [("a", FILE), ("b", FILE)], [("b", FILE), ("a", FILE)], ("a", "order")),
]  # fmt: skip


def diff_json(a: Path, b: Path) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "smith", "diff", str(a), str(b), "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode in (0, 1), proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    assert (proc.returncode == 0) == result["identical"]
    return result


@pytest.mark.parametrize(
    ("case", "members_a", "members_b", "expected"), CASES, ids=[c[0] for c in CASES]
)
def test_entry_field_is_named(
    case: str,
    members_a: list[tuple[str, dict[str, Any]]],
    members_b: list[tuple[str, dict[str, Any]]],
    expected: tuple[str, str],
    tmp_path: Path,
) -> None:
    write_layout(str(tmp_path / "a"), [tar_of(*members_a)])
    write_layout(str(tmp_path / "b"), [tar_of(*members_b)])
    report = diff_images(str(tmp_path / "a"), str(tmp_path / "b"))
    first = report.first_cause()
    assert first is not None
    assert (first.role, first.subject, first.field) == ("layer 1", *expected), report.render()
    # The digests that changed because the layer did are consequences, never the cause.
    derived = {(f.role, f.subject) for f in report.findings if f.derived}
    assert ("config", ".rootfs.diff_ids[0]") in derived
    assert ("manifest", ".layers[0].digest") in derived


def test_float_mtime_names_the_pax_record(tmp_path: Path) -> None:
    write_layout(str(tmp_path / "a"), [tar_of(("a", FILE))])
    write_layout(str(tmp_path / "b"), [tar_of(("a", FILE | {"mtime": 0.5}))])
    result = diff_json(tmp_path / "a", tmp_path / "b")
    assert result["first_cause"]["a"] == "0"
    assert result["first_cause"]["b"] == "0.5 (PAX record)"
    fields = [(f["subject"], f["field"]) for f in result["findings"] if not f["derived"]]
    assert ("a", "PAX records") in fields


def test_name_form_ustar_prefix_against_pax_path(tmp_path: Path) -> None:
    name = "deep/" * 25 + "file"  # 129 bytes: ustar splits it, tarfile's PAX writer does not
    write_layout(str(tmp_path / "a"), [tar_of((name, FILE), fmt=tarfile.USTAR_FORMAT)])
    write_layout(str(tmp_path / "b"), [tar_of((name, FILE))])
    first = diff_images(str(tmp_path / "a"), str(tmp_path / "b")).first_cause()
    assert first is not None and (first.subject, first.field) == (name, "name form")
    assert first.a.endswith("(ustar prefix)") and first.b.endswith("(PAX)")


def test_tar_format_gnu_against_pax(tmp_path: Path) -> None:
    write_layout(str(tmp_path / "a"), [tar_of(("a", FILE))])
    write_layout(str(tmp_path / "b"), [tar_of(("a", FILE), fmt=tarfile.GNU_FORMAT)])
    first = diff_images(str(tmp_path / "a"), str(tmp_path / "b")).first_cause()
    assert first is not None and (first.subject, first.field) == ("a", "tar format")


def layout_with_blob(root: Path, tar: bytes, blob: bytes, media_type: str) -> None:
    """A layout whose one layer is `blob` (the compressed `tar`), written by hand."""
    write_layout(str(root), [tar], how="none")
    index = json.loads((root / "index.json").read_text())
    manifest_path = root / "blobs" / "sha256" / index["manifests"][0]["digest"][7:]
    manifest = json.loads(manifest_path.read_text())
    manifest["layers"] = [{"mediaType": media_type, "digest": put_blob(str(root), blob),
                           "size": len(blob)}]  # fmt: skip
    raw = json.dumps(manifest).encode()
    index["manifests"][0].update(digest=put_blob(str(root), raw), size=len(raw))
    (root / "index.json").write_text(json.dumps(index))


GZ = "application/vnd.oci.image.layer.v1.tar+gzip"
ZST = "application/vnd.oci.image.layer.v1.tar+zstd"


def gzip_named(data: bytes, name: str) -> bytes:
    out = io.BytesIO()
    with gzip.GzipFile(filename=name, mode="wb", fileobj=out, mtime=0) as f:
        f.write(data)
    return out.getvalue()


COMPRESSION_CASES = [
    ("gzip file name", gzip.compress, GZ, lambda t: gzip_named(t, "layer.tar"), GZ,
     "gzip header FNAME", "'layer.tar'"),
    ("gzip mtime", lambda t: gzip.compress(t, mtime=0), GZ,
     lambda t: gzip.compress(t, mtime=1234), GZ, "gzip header MTIME", "1234"),
    ("gzip level", lambda t: gzip.compress(t, 9, mtime=0), GZ,
     lambda t: gzip.compress(t, 1, mtime=0), GZ, "gzip header XFL", "4"),
    ("gzip against zstd", lambda t: gzip.compress(t, mtime=0), GZ,
     zstandard.ZstdCompressor().compress, ZST, "compression", "zstd"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "make_a", "type_a", "make_b", "type_b", "field", "value_b"),
    COMPRESSION_CASES,
    ids=[c[0] for c in COMPRESSION_CASES],
)
def test_only_the_compression_differs(
    case: str, make_a: Any, type_a: str, make_b: Any, type_b: str, field: str, value_b: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    tar = tar_of(("a", FILE), ("b", FILE | {"data": bytes(range(256)) * 64}))
    layout_with_blob(tmp_path / "a", tar, make_a(tar), type_a)
    layout_with_blob(tmp_path / "b", tar, make_b(tar), type_b)
    result = diff_json(tmp_path / "a", tmp_path / "b")
    first = result["first_cause"]
    assert first["role"] == "layer 1"
    assert first["subject"] == "compression (same uncompressed tar)"
    assert (first["field"], first["b"]) == (field, value_b)
    # The diff_ids match, so no config difference is reported at all.
    assert not [f for f in result["findings"] if f["role"] == "config"]


def test_config_value_and_key_order(tmp_path: Path) -> None:
    tar = tar_of(("a", FILE))
    write_layout(str(tmp_path / "a"), [tar], {"Env": ["A=1"], "Cmd": ["x"]})
    write_layout(str(tmp_path / "b"), [tar], {"Env": ["A=2"], "Cmd": ["x"]})
    write_layout(str(tmp_path / "c"), [tar], {"Cmd": ["x"], "Env": ["A=1"]})
    first = diff_images(str(tmp_path / "a"), str(tmp_path / "b")).first_cause()
    assert first is not None
    assert (first.role, first.subject, first.field) == ("config", ".config.Env[0]", "value")
    first = diff_images(str(tmp_path / "a"), str(tmp_path / "c")).first_cause()
    assert first is not None
    assert (first.role, first.subject, first.field) == ("config", ".config", "key order")
    assert (first.a, first.b) == ("Env,Cmd", "Cmd,Env")


def test_identical_images_exit_zero(tmp_path: Path) -> None:
    tar = tar_of(("a", FILE))
    write_layout(str(tmp_path / "a"), [tar])
    write_layout(str(tmp_path / "b"), [tar])
    proc = subprocess.run(
        [sys.executable, "-m", "smith", "diff", str(tmp_path / "a"), str(tmp_path / "b")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert (proc.returncode, proc.stdout.split(":")[0]) == (0, "identical")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nowhere-a", "nowhere-b"], "no image at 'nowhere-a'"),
        (["-", "--json"], "Missing argument"),
        (["a", "b", "--limit", "-1"], "-1 is not in the range x>=0"),
    ],
)
def test_bad_input_is_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "smith", "diff", *args],
        capture_output=True, text=True, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2  # 1 means "they differ"
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert message in proc.stderr


def test_an_image_that_cannot_be_read_is_trouble_not_a_difference(tmp_path: Path) -> None:
    """Exit 2, as diff(1) and smith verify --against: a script testing for 1 must not take
    a corrupt image for a different one."""
    tar = tar_of(("a", FILE))
    write_layout(str(tmp_path / "a"), [tar])
    write_layout(str(tmp_path / "b"), [tar])
    (tmp_path / "b" / "index.json").write_text("{")
    for args in (["diff", "a", "b"], ["verify", "--against", "b", "--minimize", "a"]):
        proc = subprocess.run(
            [sys.executable, "-m", "smith", *args],
            capture_output=True, text=True, check=False, cwd=tmp_path,
        )  # fmt: skip
        assert proc.returncode == 2, (args, proc.stderr)
        assert proc.stderr.count("\n") == 1 and "b: index.json is not valid JSON" in proc.stderr


def test_sha256_helper_matches_layer_digest(tmp_path: Path) -> None:
    # The compressed-layer cases rely on put_blob naming blobs by their own digest.
    assert put_blob(str(tmp_path), b"x") == sha256(b"x")


def malformed_pax() -> bytes:
    """A PAX record whose length is not a number (tarscan once raised a bare ValueError)."""
    tar = bytearray(tar_of(("a", FILE | {"pax_headers": {"comment": "x"}})))
    start = tar.index(b" comment=")
    tar[start - 2 : start] = b"zz"
    tar[148:156] = b" " * 8
    tar[148:156] = b"%06o\x00 " % sum(tar[:512])
    return bytes(tar)


def hostile_images() -> list[tuple[str, list[bytes], list[str], str]]:
    """(case, layer blobs, diff_ids, message): tests/test_unpack.py's hostile and broken
    layers, and a malformed PAX record."""
    cases = [(n, [compress(t, "gzip") for t in tars], [sha256(t) for t in tars], message)
             for n, tars, message in HOSTILE]  # fmt: skip
    cases += broken_blobs()
    bad = malformed_pax()
    return [*cases, ("malformed PAX", [bad], [sha256(bad)], "malformed PAX record length")]


@pytest.mark.parametrize(
    ("blobs", "diff_ids", "message"),
    [c[1:] for c in hostile_images()],
    ids=[c[0] for c in hostile_images()],
)
def test_hostile_layers_are_trouble_for_diff(
    tmp_path: Path, blobs: list[bytes], diff_ids: list[str], message: str
) -> None:
    """What minimize refuses (tests/test_unpack.py's hostile and broken layers), smith diff
    refuses with the same one line and exit 2, against a benign image: never exit 1 ("they
    differ") and never a traceback."""
    write_layout(str(tmp_path / "a"), [], blobs=blobs, diff_ids=diff_ids)
    write_layout(str(tmp_path / "b"), [tar_of(("a", FILE))])
    for args in (["a", "b"], ["b", "a"]):
        proc = subprocess.run(
            [sys.executable, "-m", "smith", "diff", *args],
            capture_output=True, text=True, check=False, cwd=tmp_path,
        )  # fmt: skip
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr


def test_shared_lower_layers_are_applied_too(tmp_path: Path) -> None:
    """A layer both images share is read once and applied to both: a hard link in a layer
    that differs may point into it, and a hostile shared layer is still refused."""
    base = tar_of(("f", FILE))
    link = {"type": tarfile.LNKTYPE, "linkname": "f"}
    write_layout(str(tmp_path / "a"), [base, tar_of(("h", link), ("x", FILE))])
    write_layout(str(tmp_path / "b"), [base, tar_of(("h", link), ("x", FILE | {"data": b"2"}))])
    report = diff_images(str(tmp_path / "a"), str(tmp_path / "b"))
    cause = report.first_cause()
    assert cause is not None and (cause.role, cause.subject) == ("layer 2", "x")
    hostile = tar_of(("../escape", FILE))
    write_layout(str(tmp_path / "c"), [hostile, tar_of(("x", FILE))])
    write_layout(str(tmp_path / "d"), [hostile, tar_of(("x", FILE | {"data": b"2"}))])
    proc = subprocess.run(
        [sys.executable, "-m", "smith", "diff", "c", "d"],
        capture_output=True, text=True, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2 and "'../escape' climbs out of the root" in proc.stderr
