"""Hostile inputs and faults, a row per kind: bounded, one line, nothing lost.

Every case is generated here (tests/hostile.py holds the generators and the runner) and
runs the real smith command line against real files and a real HTTP server on 127.0.0.1
that stalls, trickles, never ends, sends too much or encodes wrongly. Layer and `smith
diff` cases belong to the layer reader's own tests; crashcart's to crashcart's.
"""

from __future__ import annotations

import bz2
import gzip
import json
import os
import re
import signal
import stat
import subprocess
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import zstandard

from crashcart.target import PID_MAX
from smith.limits import MAX_ID
from tests.fault_server import FaultServer, fault_server, gzip_bomb
from tests.hostile import (
    BUILDABLE,
    LIMITS,
    OCI_MANIFEST,
    PROGRAM,
    Case,
    Outcome,
    Sandbox,
    build_args,
    check_run,
    hello_rpm,
    local_rpm_build,
    minimize_layers,
    needing_elf,
    output_members,
    primary_xml,
    recipe,
    repo_build,
    rpm_with_header,
    serve_image,
    tar_header,
    tar_member,
    tar_of,
    tiny_elf,
    write_repo,
)
from tests.rpm_craft import craft_rpm
from tests.tools import require_root

T_STRING_ARRAY = 8
ZEROS = 16 << 20


def zeros_zstd() -> bytes:
    return zstandard.ZstdCompressor(level=3).compress(b"\0" * ZEROS)


def zeros_bzip2() -> bytes:
    return bz2.compress(b"\0" * ZEROS, 9)


# -- repositories over HTTP ---------------------------------------------------------------------


class Served:
    """A case against a repository the fault server serves at `repo/`."""

    def __init__(self, box: Sandbox) -> None:
        self.box = box
        assert box.server is not None
        self.server: FaultServer = box.server
        self.root = box.inputs / "srv" / "repo"
        self.url = f"{box.url}repo/"


def served(
    prepare: Callable[[Served], None], *, baseurl: str = ""
) -> Callable[[Sandbox], list[str]]:
    def make(box: Sandbox) -> list[str]:
        s = Served(box)
        prepare(s)
        return repo_build(box, baseurl or s.url)

    return make


def fault_on(path: str, fault: str, **repo: object) -> Callable[[Served], None]:
    def prepare(s: Served) -> None:
        write_repo(s.root, **repo)  # type: ignore[arg-type]
        s.server.always(f"repo/{path}", fault)

    return prepare


def compressed_primary(compress: Callable[[], bytes]) -> Callable[[Served], None]:
    def prepare(s: Served) -> None:
        write_repo(s.root, primary=compress())

    return prepare


def primary_href(href: Callable[[Served], str]) -> Callable[[Served], None]:
    def prepare(s: Served) -> None:
        write_repo(s.root, primary_href=href(s))

    return prepare


def package_href(href: Callable[[Served], str]) -> Callable[[Served], None]:
    def prepare(s: Served) -> None:
        rpm = hello_rpm(s.box.inputs / "elsewhere.rpm")
        write_repo(s.root, primary=gzip.compress(primary_xml(rpm, href(s)), mtime=0))

    return prepare


def oversize_package(s: Served) -> None:
    write_repo(s.root)
    s.server.always("repo/Packages/crafted-1-1.x86_64.rpm", "oversize")


PKG = "Packages/crafted-1-1.x86_64.rpm"

NETWORK = [
    Case("repository-control", "control", served(lambda s: write_repo(s.root)), "", status=0),
    Case("repomd-hangs", "hang", served(fault_on("repodata/repomd.xml", "hang")), "ReadTimeout"),
    Case(
        "repomd-trickles",
        "hang",
        served(fault_on("repodata/repomd.xml", "trickle")),
        "no complete answer: over the limit of 2.5 seconds",
    ),
    Case(
        "repomd-endless",
        "memory",
        served(fault_on("repodata/repomd.xml", "endless")),
        "over the limit of 1048576 bytes",
    ),
    Case(
        "repomd-gzip-encoded-bomb",
        "memory",
        served(fault_on("repodata/repomd.xml", "gzip-bomb")),
        "over the limit of 1048576 bytes",
    ),
    Case(
        "repomd-wrong-encoding",
        "traceback",
        served(fault_on("repodata/repomd.xml", "wrong-encoding")),
        "cannot decompress",
    ),
    Case("package-hangs", "hang", served(fault_on(PKG, "hang")), "ReadTimeout"),
    Case(
        "package-trickles",
        "hang",
        served(fault_on(PKG, "trickle")),
        "no complete answer: over the limit of 2.5 seconds",
    ),
    Case(
        "package-past-declared-size",
        "memory",
        served(oversize_package),
        "bytes its metadata declares",
    ),
    Case(
        "primary-gzip-encoded-bomb",
        "memory",
        served(fault_on("repodata/primary.xml.gz", "gzip-bomb")),
        "bytes its metadata declares",
    ),
    Case(
        "primary-gzip-bomb",
        "memory",
        served(compressed_primary(gzip_bomb)),
        "decompressed: over the limit",
    ),
    Case(
        "primary-zstd-bomb",
        "memory",
        served(compressed_primary(zeros_zstd)),
        "decompressed: over the limit",
    ),
    Case(
        "primary-bzip2-bomb",
        "memory",
        served(compressed_primary(zeros_bzip2)),
        "decompressed: over the limit",
    ),
    Case(
        "repomd-size-infinity",
        "traceback",
        served(lambda s: write_repo(s.root, repomd_size="Infinity")),
        "has the size 'Infinity'",
    ),
    Case(
        "remote-repomd-names-file-url",
        "reading",
        served(primary_href(lambda s: f"file://{s.box.inputs}/srv/repo/repodata/primary.xml.gz")),
        "is outside the repository",
    ),
    Case(
        "remote-repomd-climbs-out",
        "reading",
        served(primary_href(lambda s: "../../srv/repo/repodata/primary.xml.gz")),
        "is outside the repository",
    ),
    Case(
        "remote-repomd-other-host",
        "reading",
        served(primary_href(lambda s: "http://127.0.0.2:9/repodata/primary.xml.gz")),
        "is outside the repository",
    ),
    Case(
        "remote-package-file-url",
        "reading",
        served(package_href(lambda s: f"file://{s.box.inputs}/elsewhere.rpm")),
        "is outside the repository",
    ),
    Case(
        "remote-package-climbs-out",
        "reading",
        served(package_href(lambda s: "../../elsewhere.rpm")),
        "is outside the repository",
    ),
]

# -- a registry over HTTP -----------------------------------------------------------------------


def registry(
    fault_path: str = "",
    fault: str = "",
    *,
    manifest: bytes | None = None,
    token: bool = False,
    token_body: bytes = b'{"token": "t"}',
) -> Callable[[Sandbox], list[str]]:
    """`smith download` from a one-image registry the fault server plays."""

    def make(box: Sandbox) -> list[str]:
        server = box.server
        assert server is not None
        ref, config = serve_image(server, "evil/app", [])
        if manifest is not None:
            server.routes["v2/evil/app/manifests/v1"] = (manifest, {"Content-Type": OCI_MANIFEST})
        server.routes["token"] = (token_body, {"Content-Type": "application/json"})
        if token:
            server.always("v2/", "challenge")
        if fault:
            server.always(
                f"v2/evil/app/blobs/{config}" if fault_path == "config" else fault_path, fault
            )
        return ["download", "-r", ref, "-i", str(box.out / "img"), "--retries", "1"]

    return make


def deep_json(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def infinite_size() -> bytes:
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "x", "digest": "sha256:" + "0" * 64, "size": "SIZE"},
        "layers": [],
    }
    return json.dumps(doc).encode().replace(b'"SIZE"', b"Infinity")


REGISTRY = [
    Case("registry-control", "control", registry(), "", status=0),
    Case(
        "manifest-trickles",
        "hang",
        registry("v2/evil/app/manifests/v1", "trickle"),
        "no complete answer: over the limit of 2.5 seconds",
    ),
    Case(
        "manifest-endless",
        "memory",
        registry("v2/evil/app/manifests/v1", "endless"),
        "over the limit of 1048576 bytes",
    ),
    Case(
        "blob-trickles",
        "hang",
        registry("config", "trickle"),
        "no complete answer: over the limit of 2.5 seconds",
    ),
    Case(
        "blob-past-descriptor-size",
        "memory",
        registry("config", "oversize"),
        "bytes its metadata declares",
    ),
    Case(
        "token-trickles",
        "hang",
        registry("token", "trickle", token=True),
        "no complete answer: over the limit of 2.5 seconds",
    ),
    Case(
        "manifest-nested-100000-deep",
        "traceback",
        registry(manifest=deep_json(100_000)),
        "JSON nesting: over the limit",
    ),
    Case(
        "token-nested-100000-deep",
        "traceback",
        registry(token=True, token_body=deep_json(100_000)),
        "JSON nesting: over the limit",
    ),
    Case(
        "manifest-size-infinity",
        "traceback",
        registry(manifest=infinite_size()),
        "is not a size in bytes",
    ),
]

# -- recipes --------------------------------------------------------------------------------------


def with_recipe(body: str | Callable[[Sandbox], str]) -> Callable[[Sandbox], list[str]]:
    def make(box: Sandbox) -> list[str]:
        return build_args(box, recipe(box, body(box) if callable(body) else body))

    return make


def merge_bomb() -> str:
    lines = ["a0: &a0 {k: v}"]
    for i in range(1, 40):
        lines.append(f"a{i}: &a{i} {{<<: *a{i - 1}, x: *a{i - 1}, y: *a{i - 1}}}")
    return "\n".join(lines) + "\npackage: crafted\n"


def local_repo(box: Sandbox) -> str:
    return str(write_repo(box.inputs / "local"))


def gpgkey_device(box: Sandbox) -> str:
    repo = local_repo(box)
    return f"{BUILDABLE}repos:\n- baseurl: {repo}\n  gpgcheck: true\n  gpgkey: /dev/zero\n"


def rootfs_link(box: Sandbox) -> list[str]:
    (box.inputs / "rootfs").symlink_to("/etc")
    return build_args(box, recipe(box, f"{BUILDABLE}repos: [{local_repo(box)}]\n"))


def local_href_climbs_out(box: Sandbox) -> list[str]:
    rpm = hello_rpm(box.inputs / "elsewhere.rpm")
    root = box.inputs / "local"
    write_repo(root, primary=gzip.compress(primary_xml(rpm, "../elsewhere.rpm"), mtime=0))
    return build_args(box, recipe(box, f"package: crafted\nrepos: [{root}]\n"))


def output_special(kind: str) -> Callable[[Sandbox], list[str]]:
    def make(box: Sandbox) -> list[str]:
        target = box.inputs / kind
        if kind == "fifo":
            os.mkfifo(target)
        else:
            os.mknod(target, 0o600 | stat.S_IFCHR, os.makedev(1, 3))  # as /dev/null
        path = recipe(box, f"{BUILDABLE}repos: [{local_repo(box)}]\n")
        return ["build", path, "-o", str(target), "-q"]

    return make


RECIPES = [
    Case("yaml-merge-key-bomb", "hang", with_recipe(merge_bomb()), "SMITH_LIMIT_YAML_NODES"),
    Case(
        "yaml-nested-100000-deep",
        "traceback",
        with_recipe("paths: " + "[" * 100_000 + "]" * 100_000 + "\n"),
        "SMITH_LIMIT_YAML_DEPTH",
    ),
    Case(
        "yaml-unhashable-key",
        "traceback",
        with_recipe("? {a: 1}\n: x\npackage: crafted\n"),
        "unhashable",
    ),
    Case(
        "recipe-of-5-mib-paths",
        "hang",
        with_recipe("paths:\n" + "- /usr/bin/x\n" * 500_000),
        "SMITH_LIMIT_RECIPE_BYTES",
    ),
    Case(
        "parent-dev-zero",
        "hang",
        with_recipe(lambda b: f"{BUILDABLE}repos: [{local_repo(b)}]\nparent: /dev/zero\n"),
        "is not an image",
    ),
    Case(
        "gpgkey-dev-zero",
        "hang",
        with_recipe(gpgkey_device),
        "/dev/zero is not a regular file",
    ),
    Case(
        "library-path-climbs-out",
        "accepted",
        with_recipe("package: crafted\nlibrary_path: [/usr/../../etc]\n"),
        "cannot climb out",
    ),
    Case(
        "dir-climbs-out",
        "accepted",
        with_recipe("package: crafted\ndir: /srv/../..\n"),
        "cannot climb out",
    ),
    Case(
        "mounts-climb-out",
        "accepted",
        with_recipe("package: crafted\nmounts: [/write/../../host]\n"),
        "cannot climb out",
    ),
    Case(
        "env-without-equals",
        "accepted",
        with_recipe("package: crafted\nenv: [JUSTANAME]\n"),
        "an environment entry is NAME=VALUE",
    ),
    Case(
        "user-negative",
        "accepted",
        with_recipe(lambda b: f"{BUILDABLE}repos: [{local_repo(b)}]\nuser: '-5'\n"),
        "user id out of range",
        status=2,
    ),
    Case(
        "user-id-2-32-minus-1",
        "accepted",
        with_recipe(lambda b: f"{BUILDABLE}repos: [{local_repo(b)}]\nuser: '4294967295'\n"),
        "user id out of range",
        status=2,
    ),
    Case("rootfs-symlink-to-host", "reading", rootfs_link, "is a symbolic link"),
    Case("local-repo-href-climbs-out", "reading", local_href_climbs_out, "outside the repository"),
    Case("output-is-a-fifo", "loss", output_special("fifo"), "FIFO"),
    Case("output-is-a-device", "loss", output_special("device"), "device"),
    Case(
        "package-name-of-10000-chars",
        "message",
        with_recipe(lambda b: f"package: {'n' * 10_000}\nrepos: [{local_repo(b)}]\n"),
        "no package provides",
    ),
]


def with_flags(make: Callable[[Sandbox], list[str]], *flags: str) -> Callable[[Sandbox], list[str]]:
    return lambda box: [*make(box), *flags]


# The bounds as flags (--set-limit NAME=VALUE): the same names, the same line, over the variable.
LIMIT_FLAGS = [
    Case(
        "limit-flag-lowers-a-bound",
        "hang",
        with_flags(with_recipe(merge_bomb()), "--set-limit", "YAML_NODES=1000"),
        "over the limit of 1000 nodes with aliases expanded "
        "(raise it with --set-limit YAML_NODES=N or SMITH_LIMIT_YAML_NODES)",
    ),
    Case(
        "limit-flag-over-the-variable",
        "control",
        with_flags(registry(), "--set-limit", f"DOCUMENT_BYTES={1 << 20}"),
        "",
        status=0,
        env={"SMITH_LIMIT_DOCUMENT_BYTES": "16"},  # too small for the manifest
    ),
    Case(
        "limit-flag-not-a-number",
        "accepted",
        with_flags(with_recipe(BUILDABLE), "--set-limit", "JSON_DEPTH=inf"),
        "--set-limit JSON_DEPTH='inf' is not a positive number",
        status=2,
    ),
]

# -- RPM files -----------------------------------------------------------------------------------


def header_bomb(kind: str) -> Callable[[Sandbox], list[str]]:
    def make(box: Sandbox) -> list[str]:
        if kind == "tags":
            index = [(1000 + i, T_STRING_ARRAY, 0, 1) for i in range(100_000)]
            rpm = rpm_with_header(index, b"x\0")
        elif kind == "strings":
            # One string array of 2^31 strings over a megabyte of NULs.
            rpm = rpm_with_header([(1000, T_STRING_ARRAY, 0, 1 << 31)], b"\0" * (1 << 20))
        else:
            # A thousand tags over the same 100,000 strings: overlapping, a billion to parse.
            index = [(1000 + i, T_STRING_ARRAY, 0, 100_000) for i in range(1000)]
            rpm = rpm_with_header(index, b"a\0" * 100_000)
        return local_rpm_build(box, rpm)

    return make


def cpio_bomb(codec: str) -> bytes:
    """A cpio entry for the package's one file claiming 64 MiB, then the zeros: valid up
    to the bound, so only the expansion limit stops it."""
    name = b"./usr/share/hello/greeting\0"
    fields = [1, 0o100644, 0, 0, 1, 0, 64 << 20, 0, 0, 0, 0, len(name), 0]
    head = b"070701" + b"".join(b"%08X" % f for f in fields) + name
    head += b"\0" * ((-len(head)) % 4)
    zeros = b"\0" * (1 << 20)
    if codec == "zstd":
        comp = zstandard.ZstdCompressor(level=3).compressobj()
        return (
            comp.compress(head) + b"".join(comp.compress(zeros) for _ in range(64)) + comp.flush()
        )
    gz = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return gz.compress(head) + b"".join(gz.compress(zeros) for _ in range(64)) + gz.flush()


def payload(data: Callable[[], bytes]) -> Callable[[Sandbox], list[str]]:
    def make(box: Sandbox) -> list[str]:
        return local_rpm_build(box, hello_rpm(box.tmp / "x.rpm", payload=data()))

    return make


def clean_tmp(make: Callable[[Sandbox], list[str]]) -> Callable[[Sandbox], list[str]]:
    def wrapped(box: Sandbox) -> list[str]:
        argv = make(box)
        for leftover in box.tmp.iterdir():
            leftover.unlink()
        return argv

    return wrapped


def symlink_out(box: Sandbox) -> list[str]:
    return local_rpm_build(
        box, hello_rpm(box.inputs / "link.rpm", target="../../../../../../etc/passwd")
    )


RPMS = [
    Case("rpm-header-100000-tags", "hang", header_bomb("tags"), "SMITH_LIMIT_RPM_HEADER_TAGS"),
    Case(
        "rpm-header-string-array-bomb",
        "hang",
        header_bomb("strings"),
        "SMITH_LIMIT_RPM_HEADER_ITEMS",
    ),
    Case("rpm-header-overlapping-tags", "memory", header_bomb("overlap"), "tags overlap"),
    Case(
        "rpm-payload-gzip-bomb",
        "memory",
        clean_tmp(payload(lambda: cpio_bomb("gzip"))),
        "payload: decompressed: over the limit",
    ),
    Case(
        "rpm-payload-zstd-bomb",
        "memory",
        clean_tmp(payload(lambda: cpio_bomb("zstd"))),
        "payload: decompressed: over the limit",
    ),
    Case(
        "rpm-payload-not-compressed",
        "traceback",
        clean_tmp(payload(lambda: b"\x1f\x8b" + os.urandom(4096))),
        "cannot decompress",
    ),
    Case("rpm-symlink-out-of-root", "accepted", symlink_out, "leaves the root"),
]

# -- images on disk (minimize) ---------------------------------------------------------------------


def layout_with_index(index: bytes) -> Callable[[Sandbox], list[str]]:
    def make(box: Sandbox) -> list[str]:
        layout = box.inputs / "layout"
        (layout / "blobs" / "sha256").mkdir(parents=True)
        (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
        (layout / "index.json").write_bytes(index)
        return ["minimize", str(layout), "-o", str(box.out / "min.tar"), "--path", "/x"]

    return make


IMAGES = [
    Case(
        "layout-index-nested-100000-deep",
        "traceback",
        layout_with_index(deep_json(100_000)),
        "JSON nesting: over the limit",
        status=1,
    ),
    Case(
        "layout-index-size-infinity",
        "traceback",
        layout_with_index(
            b'{"schemaVersion": 2, "manifests": [{"mediaType": "%s", "digest": "sha256:%s",'
            b' "size": Infinity}]}' % (OCI_MANIFEST.encode(), b"0" * 64)
        ),
        "is not a size in bytes",
    ),
]

# -- layers (minimize) and rootfs/ (build) ----------------------------------------------------


def hostile_layer(member: bytes) -> Callable[[Sandbox], list[str]]:
    """An image of the program /x and `member` (under /etc, which the case keeps)."""

    def make(box: Sandbox) -> list[str]:
        return minimize_layers(box, tar_of(tar_member("x", PROGRAM), member))

    return make


def program_layer(entrypoint: str, *members: bytes) -> Callable[[Sandbox], list[str]]:
    def make(box: Sandbox) -> list[str]:
        argv = minimize_layers(box, tar_of(*members, tar_member("etc/kept", b"1")))
        argv[argv.index("--entrypoint") + 1] = entrypoint
        return argv

    return make


def layer_bomb(codec: str) -> Callable[[Sandbox], list[str]]:
    """A layer of one 64 MiB file of zeros, compressed to some 64 KiB: only the expansion
    bound stops it (the tar is valid to its end)."""

    def make(box: Sandbox) -> list[str]:
        head = tar_header(b"etc/zeros", 64 << 20)
        zeros = b"\0" * (1 << 20)
        if codec == "zstd":
            comp: Any = zstandard.ZstdCompressor(level=3).compressobj()
        else:
            comp = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        blob = comp.compress(head) + b"".join(comp.compress(zeros) for _ in range(65))
        return minimize_layers(box, blobs=(codec, blob + comp.flush()))

    return make


def evil_member_kept(size: int) -> Callable[[Sandbox], None]:
    """The output layer carries /etc/evil as smith writes every entry: its real size, owner
    in range, mtime SOURCE_DATE_EPOCH (0), no PAX record the input had."""

    def verify(box: Sandbox) -> None:
        members = output_members(box.out / "min.tar")
        evil = [m for m in members if m.name == "etc/evil"]
        assert len(evil) == 1 and evil[0].size == size, [m.name for m in members]
        for member in members:
            assert member.mtime == 0, (member.name, member.mtime)
            assert 0 <= member.uid <= MAX_ID and 0 <= member.gid <= MAX_ID, member.name
            assert not set(member.pax_headers) & {"mtime", "uid", "gid", "size"}, member.name

    return verify


def deep_directories(root: Path, levels: int) -> None:
    """`levels` nested directories `d` below root, made relative to an open directory: the
    full path soon passes PATH_MAX."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(levels):
        os.mkdir("d", dir_fd=fd)
        child = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = child
    os.close(fd)


def rootfs_build(program: bytes, levels: int = 0) -> Callable[[Sandbox], list[str]]:
    """`smith build` of a recipe that is only a rootfs/: the program /x, and `levels`
    nested directories."""

    def make(box: Sandbox) -> list[str]:
        rootfs = box.inputs / "rootfs"
        rootfs.mkdir()
        (rootfs / "x").write_bytes(program)
        (rootfs / "x").chmod(0o755)
        deep_directories(rootfs, levels)
        return build_args(box, recipe(box, "cmd: [/x]\n"))

    return make


def script(name: str, interpreter: str) -> bytes:
    return tar_member(name, f"#!{interpreter}\n".encode())


CHAIN = [script(f"s{i}", f"/s{i + 1}") for i in range(1000)] + [tar_member("s1000", PROGRAM)]
B256 = b"\x80"  # GNU's base-256 number: a marker byte, then big-endian

LAYERS = [
    Case(
        "layer-control",
        "control",
        hostile_layer(tar_member("etc/evil", b"xyz")),
        "",
        status=0,
        verify=evil_member_kept(3),
    ),
    Case(
        "layer-pax-uid-minus-5",
        "accepted",
        hostile_layer(tar_member("etc/evil", b"x", pax={"uid": b"-5"})),
        "invalid PAX uid '-5'",
    ),
    Case(
        "layer-pax-gid-10-30",
        "accepted",
        hostile_layer(tar_member("etc/evil", b"x", pax={"gid": b"1" + b"0" * 30})),
        "invalid PAX gid '1000000000000000000000000000000'",
    ),
    Case(
        "layer-pax-uid-arabic-indic-digits",
        "accepted",
        hostile_layer(tar_member("etc/evil", b"x", pax={"uid": "١٢".encode()})),
        "invalid PAX uid",
    ),
    Case(
        "layer-base-256-uid-2-40",
        "accepted",
        hostile_layer(tar_member("etc/evil", b"x", uid=B256 + (1 << 40).to_bytes(7, "big"))),
        "has the owner 1099511627776:0: out of range (0 to 4294967294)",
    ),
    Case(
        "layer-base-256-size",
        "accepted",
        hostile_layer(tar_member("etc/evil", b"xyz", size=B256 + (3).to_bytes(11, "big"))),
        "",
        status=0,
        verify=evil_member_kept(3),
    ),
    Case(
        "layer-base-256-size-2-80",
        "memory",
        hostile_layer(tar_member("etc/evil", b"x", size=B256 + (1 << 80).to_bytes(11, "big"))),
        "unexpected end of data",
    ),
    Case(
        "layer-mtime-huge-and-negative",
        "accepted",
        hostile_layer(
            tar_member("etc/evil", b"x", pax={"mtime": b"-99999999999.5"})
            + tar_member(
                "etc/later", b"y", pax={"mtime": b"1" + b"0" * 30}, mtime=B256 + b"\xff" * 11
            )
        ),
        "",
        status=0,
        verify=evil_member_kept(1),
    ),
    Case(
        "layer-pax-header-of-2-mib",
        "memory",
        hostile_layer(tar_member("etc/evil", b"x", pax={"comment": b"c" * (2 << 20)})),
        "extended header of 2097",
    ),
    Case(
        "layer-pax-path-with-nul",
        "accepted",
        hostile_layer(tar_member("etc/evil", b"x", pax={"path": b"etc/ev\0il"})),
        "has a NUL in its name or link",
    ),
    Case(
        "layer-name-of-10000-chars",
        "message",
        hostile_layer(tar_member("etc/evil", b"x", pax={"path": b"etc/" + b"n" * 10_000})),
        "is 10004 bytes",
    ),
    Case(
        "layer-4000-levels",
        "accepted",
        hostile_layer(tar_member("etc/evil", b"x", pax={"path": b"etc/" + b"d/" * 4000 + b"f"})),
        "4002 levels deep (at most 4096 bytes and 256 levels)",
    ),
    Case(
        "layer-gzip-bomb",
        "memory",
        layer_bomb("gzip"),
        "decompressed: over the limit of 100 times the compressed size",
    ),
    Case(
        "layer-zstd-bomb",
        "memory",
        layer_bomb("zstd"),
        "decompressed: over the limit of 100 times the compressed size",
    ),
    Case(
        "layer-of-2000-entries-over-a-limit-of-1000",
        "hang",
        with_flags(
            hostile_layer(b"".join(tar_member(f"etc/{n}", b"") for n in range(2000))),
            "--set-limit",
            "LAYER_ENTRIES=1000",
        ),
        "entries of the image's layers: over the limit of 1000 entries",
    ),
    Case(
        "elf-32-bit-header-in-64-bit-image",
        "accepted",
        program_layer("/x", tar_member("x", tiny_elf(elf_class=1))),
        "malformed ELF file /x: a 32-bit header of 0 bytes, not 52",
    ),
    Case(
        "shebang-loop-of-two-scripts",
        "accepted",
        program_layer("/a", script("a", "/b"), script("b", "/a")),
        "a loop of #! interpreters: /a -> /b -> /a",
    ),
    Case(
        "shebang-names-itself",
        "accepted",
        program_layer("/a", script("a", "/a -x")),
        "a loop of #! interpreters: /a -> /a",
    ),
    Case(
        "shebang-chain-of-1000",
        "hang",
        program_layer("/s0", *CHAIN),
        "too many levels of #! interpreters at /s4",
    ),
    Case(
        "needed-of-10000-chars",
        "message",
        program_layer("/x", tar_member("x", needing_elf(b"lib" + b"n" * 10_000 + b".so"))),
        ".so' needed by /x is not in the root",
    ),
    Case(
        "shebang-interpreter-of-10000-chars",
        "message",
        program_layer("/x", script("x", "/" + "i" * 10_000)),
        "/x: its #! interpreter runs past the 256 bytes Linux reads",
    ),
    Case("rootfs-control", "control", rootfs_build(PROGRAM), "", status=0),
    Case(
        "rootfs-elf-32-bit-header",
        "accepted",
        rootfs_build(tiny_elf(elf_class=1)),
        "a 32-bit header of 0 bytes, not 52",
    ),
    Case(
        "rootfs-4000-levels",
        "accepted",
        rootfs_build(PROGRAM, 4000),
        "rootfs/ goes deeper than a path can name",
    ),
    Case(
        "rootfs-300-levels",
        "hang",
        rootfs_build(PROGRAM, 300),
        "is 257 levels deep (at most 4096 bytes and 256 levels)",
    ),
]

# -- crashcart: what the user types -------------------------------------------------------------


def crashcart(*argv: str) -> Callable[[Sandbox], list[str]]:
    return lambda box: list(argv)


def record_onto(kind: str) -> Callable[[Sandbox], list[str]]:
    def make(box: Sandbox) -> list[str]:
        target = box.inputs / kind
        if kind == "fifo":
            os.mkfifo(target)
        elif kind == "symlink":
            target.symlink_to(box.inputs / "elsewhere")
        else:
            os.mknod(target, 0o600 | stat.S_IFCHR, os.makedev(1, 3))  # as /dev/null
        # A pid no process has: a refusal that came late would say so instead.
        return ["attach", "--record", str(target), str(PID_MAX), "--", "true"]

    return make


def crash(case_id: str, make: Callable[[Sandbox], list[str]], message: str) -> Case:
    return Case(case_id, "crashcart", make, message, status=2, program="crashcart")


CRASHCART = [
    crash("pid-arabic-indic-digits", crashcart("١٢٣"), "the pid '١٢٣' is not written in ASCII"),
    crash("pid-superscript-two", crashcart("attach", "²"), "is not written in ASCII digits"),
    crash("pid-0", crashcart("0"), "the pid 0 is out of range"),
    crash("pid-minus-1", crashcart("attach", "--", "-1"), "the pid -1 is out of range"),
    crash("pid-2-64", crashcart(str(1 << 64)), f"the pid {1 << 64} is out of range"),
    crash("container-id-of-20000-chars", crashcart("c" * 20_000), "is 20000 characters long"),
    crash("container-name-with-slashes", crashcart("a/b/c"), "is no pid, container name"),
    crash("container-name-dot-dot", crashcart("attach", ".."), "is no pid, container name"),
    crash("container-name-climbs", crashcart("k8s.io/.."), "is no pid, container name"),
    crash("container-name-newline", crashcart("web\nroot"), "contains a control character"),
    crash("container-name-escape", crashcart("web\x1b[2J"), "contains a control character"),
    crash("record-onto-a-fifo", record_onto("fifo"), "is a FIFO: name a regular file"),
    crash("record-onto-a-device", record_onto("device"), "is a device: name a regular file"),
    crash("record-onto-a-symlink", record_onto("symlink"), "is a symbolic link: name a regular"),
]

# -- full disks: the cache, TMPDIR, the output's directory ------------------------------------
# Each a tmpfs of 1 MiB for the run; what the step would write is declared (a package's size
# in primary.xml, its files' in its header, a layer file's in its tar header, blobs' in the
# manifest) and refused before it is written, or else (an output, compressed as it is
# written) the write that meets ENOSPC. Either way: one line naming the directory and what
# to do, nothing left there.

SMALL = 1 << 20
BIG = os.urandom(2 << 20)  # incompressible: 2 MiB stay 2 MiB in every codec


def big_rpm(path: Path) -> bytes:
    craft_rpm(path, [("./usr/share/hello/greeting", "file", BIG.hex())])
    return path.read_bytes()


def big_package(box: Sandbox) -> list[str]:
    root = box.inputs / "local"
    write_repo(root, rpm=big_rpm(box.inputs / "big.rpm"))
    return build_args(box, recipe(box, f"{BUILDABLE}repos: [{root}]\n"))


def big_served_package(s: Served) -> None:
    write_repo(s.root, rpm=big_rpm(s.box.inputs / "big.rpm"))


def big_layer(box: Sandbox) -> list[str]:
    return minimize_layers(box, tar_of(tar_member("x", PROGRAM), tar_member("etc/big", BIG)))


def big_archive(box: Sandbox) -> list[str]:
    """The big layer's image as an oci-archive, which minimize unpacks into TMPDIR."""
    argv = big_layer(box)
    layout = box.inputs / "layout"
    subprocess.run(
        ["tar", "-cf", str(box.inputs / "image.tar"), "-C", str(layout), "."], check=True
    )
    subprocess.run(["rm", "-rf", str(layout)], check=True)
    argv[1] = str(box.inputs / "image.tar")
    return argv


def big_archive_diff(box: Sandbox) -> list[str]:
    """`smith diff` of the archive with itself: both unpacked into TMPDIR first."""
    image = big_archive(box)[1]
    return ["diff", image, image]


def big_blob_download(box: Sandbox) -> list[str]:
    assert box.server is not None
    ref, _ = serve_image(box.server, "big/app", [tar_of(tar_member("big", BIG))])
    return ["download", "-r", ref, "-i", str(box.out / "img"), "--retries", "1"]


FULL_DISKS = [
    Case(
        "cache-full-package-files",
        "loss",
        big_package,
        "/cache/smith/content/tmp' for the files of crafted-1-1.x86_64.rpm: 4194304 bytes needed",
        disks={"cache": SMALL},
    ),
    Case(
        "cache-full-package-download",
        "loss",
        served(big_served_package),
        "/cache/smith/blobs/sha256' for http://",
        disks={"cache": SMALL},
    ),
    Case(
        "output-full-build",
        "loss",
        big_package,
        "/out': No space left on device (free space there, or write elsewhere)",
        disks={"out": SMALL},
    ),
    Case(
        "tmpdir-full-minimize-layer",
        "loss",
        big_layer,
        "' for the files of layer",
        disks={"tmp": SMALL},
    ),
    Case(
        "tmpdir-full-minimize-archive",
        "loss",
        big_archive,
        "(set TMPDIR to a larger disk)",
        disks={"tmp": SMALL},
    ),
    Case(
        "tmpdir-full-diff",
        "loss",
        big_archive_diff,
        "(set TMPDIR to a larger disk)",
        status=2,  # diff's trouble, never "they differ"
        disks={"tmp": SMALL},
    ),
    Case(
        "output-full-minimize",
        "loss",
        big_layer,
        "/out': No space left on device",
        disks={"out": SMALL},
    ),
    Case(
        "output-full-download",
        "loss",
        big_blob_download,
        "/out' for the blobs of",
        disks={"out": SMALL},
    ),
]

CASES = NETWORK + REGISTRY + RECIPES + LIMIT_FLAGS + RPMS + IMAGES + LAYERS + FULL_DISKS + CRASHCART
WORKERS = 4  # cases mostly wait (timeouts, servers): run side by side, each still measured


def run_case(case: Case, root: Path) -> Outcome | BaseException | None:
    if case.disks and os.geteuid() != 0:
        return None  # the test skips it (or fails, in CI): require_root
    sandbox = Sandbox(root)
    try:
        with fault_server(sandbox.inputs / "srv") as server:
            sandbox.server, sandbox.url = server, server.url
            return check_run(sandbox, case)
    except (AssertionError, OSError) as err:
        return err
    finally:
        # rm, not shutil.rmtree: a case's tree may be deeper than Python's recursion limit.
        subprocess.run(["rm", "-rf", str(root)], check=False)


@pytest.fixture(scope="module")
def outcomes(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Outcome | BaseException | None]:
    """Every selected case, run WORKERS at a time; each test then reads its own outcome."""
    params = [getattr(item, "callspec", None) for item in request.session.items]
    wanted = {p.params["case"].id for p in params if p and isinstance(p.params.get("case"), Case)}
    # Made once, before any server answers with it: made inside an answer, on a loaded
    # machine with the cases running side by side, it outlasted the client's idle timeout.
    gzip_bomb()
    base = tmp_path_factory.mktemp("hostile")
    chosen = [c for c in CASES if c.id in wanted]
    with ThreadPoolExecutor(WORKERS) as pool:
        done = pool.map(lambda c: run_case(c, base / c.id), chosen)
        return dict(zip((c.id for c in chosen), done, strict=True))


def test_every_kind_of_the_issue_has_cases() -> None:
    kinds = {c.kind for c in CASES}
    assert kinds == {
        "control",
        "hang",
        "memory",
        "traceback",
        "accepted",
        "reading",
        "loss",
        "message",
        "crashcart",
    }
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input(outcomes: dict[str, Outcome | BaseException | None], case: Case) -> None:
    if case.disks:
        require_root()
    outcome = outcomes[case.id]
    if isinstance(outcome, BaseException):
        raise outcome
    assert outcome is not None
    print(
        f"{case.id}: exit {outcome.status}, {outcome.seconds:.1f} s, "
        f"{outcome.peak_mib:.0f} MiB peak, {outcome.written} bytes written"
    )


@pytest.mark.parametrize(
    ("marker", "digest"),
    [
        (b'{"digest": "sha256:abc"}', "sha256:abc"),
        (b"[]", "unknown"),  # was an AttributeError traceback, mid-session
        (b'{"digest": 5}', "unknown"),
        (b"[" * 100_000 + b"]" * 100_000, "unknown"),
        (b" " * (1 << 20) + b'{"digest": "sha256:abc"}', "unknown"),  # not read whole
        (b"\xff\xfe", "unknown"),
        (b'{"digest": "' + b"d" * 10_000 + b'"}', "d" * 100),
    ],
    ids=["valid", "a list", "a number", "deep", "huge", "not utf-8", "long"],
)
def test_a_hostile_toolbox_marker_is_unknown(tmp_path: Path, marker: bytes, digest: str) -> None:
    """crashcart reads the marker of a toolbox (an image anyone built) into the --record
    transcript's header: bounded, and whatever it holds, a digest or "unknown"."""
    from crashcart.prefix import MANIFEST
    from crashcart.transcript import toolbox_digest

    (tmp_path / MANIFEST).write_bytes(marker)
    assert toolbox_digest(str(tmp_path)) == digest


def test_a_toolbox_image_that_is_a_gzip_bomb_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """crashcart unpacks a toolbox image (--toolbox IMAGE) into its image cache with the
    layer reader: a bomb is refused by the expansion bound, and the cache keeps nothing."""
    import crashcart.image
    from smith.errors import LimitError

    for name in ("EXPANSION_RATIO", "EXPANSION_FLOOR", "UNPACKED_BYTES"):
        monkeypatch.setenv(f"SMITH_LIMIT_{name}", LIMITS[f"SMITH_LIMIT_{name}"])
    cache = tmp_path / "images"
    monkeypatch.setattr(crashcart.image, "IMAGE_CACHE", str(cache))
    box = Sandbox(tmp_path / "box")
    layer_bomb("gzip")(box)
    with pytest.raises(LimitError, match="decompressed: over the limit of 100 times"):
        crashcart.image.toolbox_from_image(str(box.inputs / "layout"))
    assert list(cache.iterdir()) == []


def test_a_toolbox_image_that_cannot_fit_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """crashcart's image cache on a full disk (a tmpfs of 1 MiB, mounted here): the toolbox
    image's 2 MiB file is refused by its declared size, naming the cache; nothing stays."""
    require_root()
    import crashcart.image
    from smith.errors import NoSpaceError

    cache = tmp_path / "images"
    cache.mkdir()
    box = Sandbox(tmp_path / "box")
    big_layer(box)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SMALL}", "tmpfs", str(cache)], check=True)
    try:
        monkeypatch.setattr(crashcart.image, "IMAGE_CACHE", str(cache))
        where = re.escape(f"no space in '{cache}/")
        with pytest.raises(NoSpaceError, match=f"{where}.*' for the files of layer 1"):
            crashcart.image.toolbox_from_image(str(box.inputs / "layout"))
        assert list(cache.iterdir()) == []
    finally:
        subprocess.run(["umount", str(cache)], check=True)


def test_a_declared_size_past_the_free_space_is_refused_before_writing(tmp_path: Path) -> None:
    """SpaceBudget (the layer applier's, the archive unpacker's): a file that cannot fit is
    refused by its declared size; a size past what the stream can bring is the reader's
    to name (a truncated layer), not a disk too small."""
    from smith.diskspace import SpaceBudget, free_bytes
    from smith.errors import NoSpaceError

    free = free_bytes(tmp_path)
    assert free is not None
    SpaceBudget(tmp_path, "a layer", most=1 << 20).claim(free + (1 << 40))  # clamped: fits
    budget = SpaceBudget(tmp_path, "the files of layer 1", most=1 << 62)
    budget.claim(1)
    with pytest.raises(NoSpaceError, match=r"for the files of layer 1: \d+ bytes needed"):
        budget.claim(free + (1 << 40))
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_no_step_named_is_still_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """ENOSPC from a write outside every writing_in: the CLI names the file's directory."""
    import errno

    from smith.cli.reporting import exit_reporting

    def body() -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/var/lib/x/blob")

    mask = signal.pthread_sigmask(signal.SIG_BLOCK, ())
    try:
        with pytest.raises(SystemExit) as stop:
            exit_reporting("smith", False, body)
    finally:  # exit_reporting holds the stop signals for the exit: not this process's
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    assert stop.value.code == 1
    line = "smith: error: no space left in '/var/lib/x': No space left on device"
    assert capsys.readouterr().err == f"{line} (free space there, or write elsewhere)\n"
