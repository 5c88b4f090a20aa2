"""Push and pull against a real docker-registry over plain HTTP, checked with skopeo; the
fault-injecting proxy in front of it shows retries, resumption and digest checks."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import signal
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from smith.errors import ImageFormatError, RegistryError, SmithError
from smith.oci.image import ImageConfig
from smith.oci.output import write_image
from smith.oci.pull import pull_image
from smith.oci.push import push_image
from smith.oci.reading import open_image
from smith.oci.registry import RegistryOptions
from smith.tree import FileTree, InlineBytes
from tests.http_proxy import http_proxy
from tests.registry_fixtures import (
    SMITH,
    layout_manifest_digest,
    make_image,
    make_multi_platform,
    run_skopeo,
    run_smith,
)
from tests.registry_servers import PRESIGNED, FaultProxy, Registry, start_registry
from tests.tools import require_tool

FAST = RegistryOptions(insecure=True, retries=3, backoff=0.05, timeout=1.5)


@pytest.fixture(scope="session")
def skopeo() -> str:
    return require_tool("skopeo")


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    binary = require_tool("docker-registry")
    reg = start_registry(tmp_path_factory.mktemp("plain-registry"), binary)
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def proxy(registry: Registry) -> Iterator[FaultProxy]:
    fault_proxy = FaultProxy(registry.host, stall_seconds=4.0)
    yield fault_proxy
    fault_proxy.stop()


@pytest.fixture
def faults(proxy: FaultProxy) -> Iterator[FaultProxy]:
    proxy.clear()
    yield proxy
    proxy.clear()


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str]]:
    directory = tmp_path_factory.mktemp("images")
    return {
        "app": make_image(directory, "app", seed=1),
        "other": make_image(directory, "other", big=5 << 20, seed=2),
    }


@pytest.fixture(scope="session")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


def test_smith_push_is_read_and_copied_by_skopeo(
    registry: Registry, images: dict[str, tuple[Path, str]], skopeo: str, home: Path, tmp_path: Path
) -> None:
    layout, digest = images["app"]
    ref = f"docker://{registry.host}/smith/app:v1"
    out = run_smith("upload", "-i", str(layout), "-r", ref, "--insecure", home=home)
    assert out.stdout.strip() == f"{registry.host}/smith/app@{digest}"
    raw = run_skopeo(skopeo, "inspect", "--tls-verify=false", "--raw", ref, home=home).stdout
    assert raw == (layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes()
    copy = tmp_path / "copy"
    run_skopeo(
        skopeo,
        "copy",
        "--preserve-digests",
        "--src-tls-verify=false",
        ref,
        f"oci:{copy}",
        home=home,
    )
    assert layout_manifest_digest(copy) == digest
    for blob in (layout / "blobs" / "sha256").iterdir():
        assert (copy / "blobs" / "sha256" / blob.name).read_bytes() == blob.read_bytes()


def test_second_push_uploads_no_blob_bytes(
    faults: FaultProxy, images: dict[str, tuple[Path, str]], home: Path
) -> None:
    layout, digest = images["app"]
    ref = f"http://{faults.host}/count/app:v1"
    run_smith("upload", "-i", str(layout), "-r", ref, home=home)
    blob_bytes = sum(p.stat().st_size for p in (layout / "blobs" / "sha256").iterdir())
    assert faults.upload_bytes > 3 << 20
    assert faults.upload_bytes <= blob_bytes
    faults.clear()
    out = run_smith("upload", "-i", str(layout), "-r", ref, home=home)
    assert out.stdout.strip().endswith(digest)
    assert faults.upload_bytes == 0
    result = push_image(str(layout), ref, options=FAST)
    assert result.uploaded == 0 and len(result.skipped) == 3
    assert faults.upload_bytes == 0


def test_skopeo_push_is_pulled_by_smith(
    registry: Registry, images: dict[str, tuple[Path, str]], skopeo: str, home: Path, tmp_path: Path
) -> None:
    layout, digest = images["other"]
    ref = f"docker://{registry.host}/skopeo/other:v2"
    run_skopeo(skopeo, "copy", "--dest-tls-verify=false", f"oci:{layout}", ref, home=home)
    raw = run_skopeo(skopeo, "inspect", "--tls-verify=false", "--raw", ref, home=home).stdout
    pushed = "sha256:" + hashlib.sha256(raw).hexdigest()
    assert pushed == digest  # skopeo kept the bytes, so smith must find the same digest
    for out_name, extra in (
        ("dir", []),
        ("image.tar", []),
        ("image.tar.gz", ["--format", "docker-archive"]),
    ):
        out = tmp_path / out_name
        proc = run_smith("download", "-r", ref, "-i", str(out), "--insecure", *extra, home=home)
        assert proc.stdout.strip() == digest
        with open_image(str(out)) as image, open_image(str(layout)) as original:
            assert image.diff_ids == original.diff_ids
            assert image.layers == original.layers
    # The pulled layout is the pushed one, byte for byte.
    for path in layout.rglob("*"):
        if path.is_file():
            assert (tmp_path / "dir" / path.relative_to(layout)).read_bytes() == path.read_bytes()


def test_pull_index_by_platform_and_digest(
    registry: Registry, skopeo: str, home: Path, tmp_path: Path
) -> None:
    multi, digests = make_multi_platform(tmp_path / "src")
    ref = f"docker://{registry.host}/multi/app:v1"
    run_skopeo(
        skopeo, "copy", "--all", "--dest-tls-verify=false", f"oci:{multi}:multi", ref, home=home
    )
    for arch in ("arm64", "amd64"):
        out = tmp_path / f"out-{arch}"
        platform = f"linux/{arch}"
        proc = run_smith(
            "download", "-r", ref, "-i", str(out), "--platform", platform, "--insecure", home=home
        )
        assert proc.stdout.strip() == digests[arch]
        with open_image(str(out)) as image:
            assert image.platform.architecture == arch
    by_digest = f"docker://{registry.host}/multi/app@{digests['arm64']}"
    proc = run_smith(
        "download", "-r", by_digest, "-i", str(tmp_path / "d"), "--insecure", home=home
    )
    assert proc.stdout.strip() == digests["arm64"]
    missing = tmp_path / "none"
    proc = run_smith(
        "download", "-r", ref, "-i", str(missing), "--platform", "linux/s390x", "--insecure",
        home=home, check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "no image for platform linux/s390x" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not missing.exists()


def test_chunked_upload_mount_and_docker_media(
    faults: FaultProxy, images: dict[str, tuple[Path, str]], skopeo: str, home: Path
) -> None:
    layout, digest = images["other"]
    options = RegistryOptions(insecure=True, chunk_size=1 << 20)
    result = push_image(str(layout), f"http://{faults.host}/chunks/other:v1", options=options)
    assert result.digest == digest and result.uploaded > 5 << 20
    assert sum(1 for r in faults.seen if r.startswith("PATCH")) >= 5
    ref = f"docker://{faults.host}/chunks/other:v1"
    raw = run_skopeo(skopeo, "inspect", "--tls-verify=false", "--raw", ref, home=home).stdout
    assert (
        json.loads(raw)["layers"]
        == json.loads((layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes())[
            "layers"
        ]
    )
    faults.clear()
    mounted = push_image(
        str(layout), f"http://{faults.host}/mounted/other:v1", options=options,
        mount_from=["missing/repo", "chunks/other"],
    )  # fmt: skip
    assert mounted.uploaded == 0 and len(mounted.mounted) == 3
    assert faults.upload_bytes == 0
    # The first repository lacked the blobs: its upload sessions were cancelled.
    assert sum(1 for r in faults.seen if r.startswith("DELETE /v2/mounted/")) == 3
    docker = push_image(
        str(layout), f"http://{faults.host}/docker/other:v1", options=options, docker_media=True
    )
    assert docker.digest != digest
    raw = run_skopeo(
        skopeo, "inspect", "--tls-verify=false", "--raw", f"docker://{faults.host}/docker/other:v1",
        home=home,
    ).stdout  # fmt: skip
    doc = json.loads(raw)
    assert doc["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert doc["config"]["mediaType"] == "application/vnd.docker.container.image.v1+json"


def test_fallback_to_docker_media_types_when_oci_is_refused(
    faults: FaultProxy, images: dict[str, tuple[Path, str]]
) -> None:
    # An old registry answers 400 MANIFEST_INVALID to an OCI manifest; the proxy plays one.
    layout, digest = images["app"]
    faults.add("PUT", "/manifests/", "refuse-oci", times=5)
    result = push_image(str(layout), f"http://{faults.host}/old/app:v1", options=FAST)
    assert result.media_type == "application/vnd.docker.distribution.manifest.v2+json"
    assert result.digest != digest
    assert any(f.startswith("refuse-oci") for f in faults.fired)


def test_open_image_reads_a_registry_reference(
    registry: Registry, images: dict[str, tuple[Path, str]]
) -> None:
    layout, digest = images["app"]
    push_image(str(layout), f"docker://{registry.host}/seam/app:v1", options=FAST)
    with (
        open_image(f"docker://{registry.host}/seam/app:v1", registry=FAST) as pulled,
        open_image(str(layout)) as local,
    ):
        assert pulled.manifest_descriptor.digest == digest
        assert pulled.diff_ids == local.diff_ids
        assert os.path.exists(pulled.layers[0].unchecked_path)
        assert pulled.layers[0].check.done  # checked as it arrived


def test_pull_failures_are_one_line_and_leave_nothing(
    registry: Registry, home: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    proc = run_smith(
        "download", "-r", f"docker://{registry.host}/nothing/here:v9", "-i", str(out),
        "--insecure", home=home, check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        f"smith: error: {registry.host}/nothing/here:v9: manifest v9: "
        "HTTP 404 (MANIFEST_UNKNOWN: manifest unknown)"
    )
    assert len(proc.stderr.strip().splitlines()) == 1
    assert os.listdir(tmp_path) == []
    proc = run_smith(
        "download", "-r", "http://127.0.0.1:9/a/b:c", "-i", str(out), "--retries", "0",
        home=home, check=False,
    )  # fmt: skip
    assert proc.returncode == 1 and "unreachable" in proc.stderr
    assert os.listdir(tmp_path) == []


# -- faults ----------------------------------------------------------------------------------


def test_pull_survives_500_reset_and_stall(
    faults: FaultProxy, registry: Registry, images: dict[str, tuple[Path, str]], tmp_path: Path
) -> None:
    layout, digest = images["other"]
    push_image(str(layout), f"docker://{registry.host}/faults/other:v1", options=FAST)
    ref = f"http://{faults.host}/faults/other:v1"
    faults.add("GET", "/manifests/", "stall")
    faults.add("GET", "/blobs/sha256:", "500")
    faults.add("GET", "/blobs/sha256:", "429")
    faults.add("GET", "/blobs/sha256:", "reset", times=2)
    faults.add("GET", "/blobs/sha256:", "truncate")
    result = pull_image(ref, str(tmp_path / "out"), options=FAST)
    assert result.digest == digest
    fired = sorted(f.split()[0] for f in faults.fired)
    assert fired == ["429", "500", "reset", "reset", "stall", "truncate"]
    # A blob cut off mid-way resumes where it broke off, not from the first byte.
    assert faults.ranges and all(int(r.split("=")[1].rstrip("-")) > 0 for r in faults.ranges)
    with open_image(str(tmp_path / "out")) as image:
        assert image.manifest_descriptor.digest == digest


def test_wrong_bytes_fail_cleanly(
    faults: FaultProxy, registry: Registry, images: dict[str, tuple[Path, str]], tmp_path: Path
) -> None:
    layout, _ = images["app"]
    push_image(str(layout), f"docker://{registry.host}/corrupt/app:v1", options=FAST)
    with open_image(str(layout)) as image:
        big = max(image.layers, key=lambda d: d.size).digest
    faults.add("GET", f"/blobs/{big}", "corrupt")
    out = tmp_path / "out.tar"
    with pytest.raises(RegistryError, match=f"blob {big} arrived with digest sha256:"):
        pull_image(f"http://{faults.host}/corrupt/app:v1", str(out), options=FAST)
    assert os.listdir(tmp_path) == []


def test_persistent_5xx_gives_up_with_a_clear_message(
    faults: FaultProxy, images: dict[str, tuple[Path, str]], home: Path, tmp_path: Path
) -> None:
    faults.add("GET", "/manifests/", "500", times=10)
    proc = run_smith(
        "download", "-r", f"http://{faults.host}/faults/other:v1", "-i", str(tmp_path / "o"),
        "--retries", "2", home=home, check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "HTTP 500" in proc.stderr and "faults/other:v1" in proc.stderr
    assert sum(1 for f in faults.fired if f.startswith("500")) == 3
    assert os.listdir(tmp_path) == []


def test_push_survives_500_and_resets_in_whole_and_chunked_uploads(
    faults: FaultProxy, registry: Registry, images: dict[str, tuple[Path, str]], tmp_path: Path
) -> None:
    layout, digest = images["other"]
    faults.add("PUT", "/blobs/uploads/", "500")
    faults.add("PUT", "/blobs/uploads/", "reset-upload")
    result = push_image(str(layout), f"http://{faults.host}/upfaults/whole:v1", options=FAST)
    assert result.digest == digest
    faults.add("PATCH", "/blobs/uploads/", "reset-upload")
    faults.add("PATCH", "/blobs/uploads/", "500")
    chunked = RegistryOptions(insecure=True, retries=3, backoff=0.05, chunk_size=1 << 20)
    result = push_image(str(layout), f"http://{faults.host}/upfaults/chunked:v1", options=chunked)
    assert result.digest == digest
    assert len(faults.fired) == 4
    for name in ("whole", "chunked"):
        pulled = pull_image(
            f"docker://{registry.host}/upfaults/{name}:v1", str(tmp_path / name), options=FAST
        )
        assert pulled.digest == digest


def test_push_a_multi_platform_index(
    registry: Registry, skopeo: str, home: Path, tmp_path: Path
) -> None:
    multi, digests = make_multi_platform(tmp_path / "src")
    ref = f"docker://{registry.host}/multi/smith:v1"
    out = run_smith("upload", "--all", "-i", str(multi), "-r", ref, "--insecure", home=home)
    assert out.stdout.strip() == f"{registry.host}/multi/smith@{digests['index']}"
    raw = run_skopeo(skopeo, "inspect", "--tls-verify=false", "--raw", ref, home=home).stdout
    assert (
        raw == (multi / "blobs" / "sha256" / digests["index"].removeprefix("sha256:")).read_bytes()
    )
    copy = tmp_path / "copy"
    run_skopeo(
        skopeo, "copy", "--all", "--preserve-digests", "--src-tls-verify=false", ref,
        f"oci:{copy}", home=home,
    )  # fmt: skip
    assert layout_manifest_digest(copy) == digests["index"]
    proc = run_smith(
        "download", "-r", ref, "-i", str(tmp_path / "arm"), "--platform", "linux/arm64",
        "--insecure", home=home,
    )  # fmt: skip
    assert proc.stdout.strip() == digests["arm64"]


def test_interrupted_pull_leaves_nothing(
    faults: FaultProxy, registry: Registry, images: dict[str, tuple[Path, str]], tmp_path: Path
) -> None:
    layout, _ = images["other"]
    push_image(str(layout), f"docker://{registry.host}/intr/other:v1", options=FAST)
    with open_image(str(layout)) as image:
        big = max(image.layers, key=lambda d: d.size).digest
    faults.add("GET", f"/blobs/{big}", "stall-body")
    out = tmp_path / "out" / "image.tar"
    out.parent.mkdir()
    proc = subprocess.Popen(
        [SMITH, "download", "-r", f"http://{faults.host}/intr/other:v1", "-i", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not faults.fired and time.monotonic() < deadline:  # a wait, not a timing check
        time.sleep(0.05)
    assert faults.fired and proc.poll() is None
    assert os.listdir(out.parent)  # the staging layout exists while the pull runs
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130 and stderr.strip() == "smith: interrupted"
    assert os.listdir(out.parent) == []


def test_push_a_docker_archive(registry: Registry, skopeo: str, home: Path, tmp_path: Path) -> None:
    # The classic `docker save` form: manifest.json, a config file, uncompressed layer tars.
    tree = FileTree()
    tree.add_file("hello", InlineBytes(b"hello\n"), 0o644, size=6)
    write_image(tree, ImageConfig(), str(tmp_path / "oci"))
    with open_image(str(tmp_path / "oci")) as image:
        src = tmp_path / "save"
        src.mkdir()
        (src / "config.json").write_bytes(image.config_bytes)
        with image.layers[0].open() as layer:
            (src / "layer.tar").write_bytes(b"".join(iter(layer.read_piece, b"")))
    (src / "manifest.json").write_text(
        json.dumps([{"Config": "config.json", "RepoTags": ["app:v1"], "Layers": ["layer.tar"]}])
    )
    archive = tmp_path / "docker.tar"
    with tarfile.open(archive, "w") as tar:
        for name in ("manifest.json", "config.json", "layer.tar"):
            tar.add(src / name, arcname=name)
    ref = f"docker://{registry.host}/dockerarchive/app:v1"
    out = run_smith("upload", "-i", str(archive), "-r", ref, "--insecure", home=home)
    raw = run_skopeo(skopeo, "inspect", "--tls-verify=false", "--raw", ref, home=home).stdout
    assert out.stdout.strip().endswith("sha256:" + hashlib.sha256(raw).hexdigest())
    doc = json.loads(raw)
    assert doc["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert doc["layers"][0]["mediaType"] == "application/vnd.docker.image.rootfs.diff.tar"
    pulled = pull_image(ref, str(tmp_path / "back"), options=FAST)
    with open_image(str(archive)) as original, open_image(str(tmp_path / "back")) as back:
        assert back.diff_ids == original.diff_ids
        assert back.manifest_descriptor.digest == pulled.digest


def test_push_a_flat_multi_platform_layout(registry: Registry, home: Path, tmp_path: Path) -> None:
    # index.json listing the images itself: smith pushes a new index of them, which here is
    # byte for byte the nested index make_multi_platform wrote.
    multi, digests = make_multi_platform(tmp_path / "src")
    index_blob = multi / "blobs" / "sha256" / digests["index"].removeprefix("sha256:")
    (multi / "index.json").write_bytes(index_blob.read_bytes())
    ref = f"docker://{registry.host}/multi/flat:v1"
    out = run_smith("upload", "--all", "-i", str(multi), "-r", ref, "--insecure", home=home)
    assert out.stdout.strip().endswith(digests["index"])
    single, _ = make_image(tmp_path, "single", big=1024)
    proc = run_smith(
        "upload", "--all", "-i", str(single), "-r", ref, "--insecure", home=home, check=False
    )
    assert proc.returncode == 2 and "push it without --all" in proc.stderr


def test_hostile_manifest_digests_are_refused(tmp_path: Path) -> None:
    # A registry's documents are untrusted: a digest must never become a path that climbs
    # out of the staging directory (or a URL path of smith's choosing).
    bad = "sha256:/../../../../escape"
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "x", "digest": bad, "size": 2},
            "layers": [],
        }
    ).encode()

    class Hostile(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = manifest if "/manifests/" in self.path else b"{}"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hostile)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        ref = f"http://127.0.0.1:{server.server_address[1]}/evil/app:v1"
        (tmp_path / "out").mkdir()
        with pytest.raises(ImageFormatError, match="malformed digest"):
            pull_image(ref, str(tmp_path / "out" / "img"), options=FAST)
    finally:
        server.shutdown()
        server.server_close()
    assert os.listdir(tmp_path / "out") == []
    assert not (tmp_path.parent / "escape").exists()


ENDLESS = 1 << 30  # what the hostile registry offers: more than a client should hold


@pytest.mark.parametrize(
    ("scenario", "message"),
    [
        ("manifest", "manifest v1: the answer: over the limit of 4194304 bytes"),
        ("error", "manifest v1: HTTP 404"),
        ("token", "/token: the answer: over the limit of 4194304 bytes"),
        ("retry", "manifest v1: HTTP 503"),
        ("newline", "HTTP 403 (DENIED: not you, not today)"),
    ],
)
def test_endless_or_odd_answers_are_refused_without_being_buffered(
    tmp_path: Path, scenario: str, message: str
) -> None:
    """A registry (or token server) that answers a manifest, an error or a token with a
    gigabyte body is refused after at most a few MiB, not read into memory; its error text
    never breaks smith's one line."""
    sent = [0]

    class Hostile(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def endless(self, status: int, headers: dict[str, str]) -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(ENDLESS))
            self.end_headers()
            chunk = b" " * (1 << 20)
            try:
                while sent[0] < ENDLESS:
                    self.wfile.write(chunk)
                    sent[0] += len(chunk)
            except OSError:
                pass  # the client hung up: what it wanted to know

        def do_GET(self) -> None:
            port = self.server.server_address[1]
            if self.path == "/v2/" and scenario == "token":
                realm = f'Bearer realm="http://127.0.0.1:{port}/token",service="x"'
                self.send_response(401)
                self.send_header("WWW-Authenticate", realm)
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif self.path.startswith("/token"):
                self.endless(200, {"Content-Type": "application/json"})
            elif self.path == "/v2/":
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif scenario == "manifest":
                self.endless(200, {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
            elif scenario == "error":
                self.endless(404, {})
            elif scenario == "retry":
                self.endless(503, {})
            else:
                body = b'{"errors":[{"code":"DENIED","message":"not you,\\nnot today"}]}'
                self.send_response(403)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hostile)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        ref = f"http://127.0.0.1:{server.server_address[1]}/evil/app:v1"
        (tmp_path / "out").mkdir()
        with pytest.raises(SmithError) as err:  # RegistryError, or a LimitError
            pull_image(ref, str(tmp_path / "out" / "img"), options=FAST)
    finally:
        server.shutdown()
        server.server_close()
    assert message in str(err.value) and "\n" not in str(err.value)
    assert sent[0] < 64 << 20  # socket buffers aside, the rest was never asked for
    assert os.listdir(tmp_path / "out") == []


def test_blob_redirects_are_followed_and_presigned_urls_never_printed(
    faults: FaultProxy, registry: Registry, images: dict[str, tuple[Path, str]], home: Path,
    tmp_path: Path,
) -> None:  # fmt: skip
    layout, digest = images["app"]
    push_image(str(layout), f"docker://{registry.host}/redirect/app:v1", options=FAST)
    faults.add("GET", "/blobs/sha256:", "redirect", times=10)
    proc = run_smith(
        "--debug", "download", "-r", f"http://{faults.host}/redirect/app:v1", "-i",
        str(tmp_path / "o"), home=home,
    )  # fmt: skip
    assert proc.stdout.strip() == digest
    assert sum(1 for f in faults.fired if f.startswith("redirect")) == 3
    assert len(faults.redirected_auth) == 3
    assert PRESIGNED not in proc.stdout + proc.stderr


def test_copy_from_registry_to_registry(
    registry: Registry, images: dict[str, tuple[Path, str]], home: Path
) -> None:
    layout, digest = images["app"]
    push_image(str(layout), f"docker://{registry.host}/copy/src:v1", options=FAST)
    out = run_smith(
        "upload", "-i", f"docker://{registry.host}/copy/src:v1", "-r",
        f"docker://{registry.host}/copy/dst:v1", "--insecure", home=home,
    )  # fmt: skip
    assert out.stdout.strip() == f"{registry.host}/copy/dst@{digest}"


def test_push_and_pull_go_through_the_environments_proxy(
    registry: Registry, images: dict[str, tuple[Path, str]], home: Path, tmp_path: Path
) -> None:
    """HTTP_PROXY applies to the registry as to repository downloads (smith/netpools.py):
    an upload's HEAD, POST, PATCH/PUT and the pull's GETs all go to the proxy; NO_PROXY
    naming the registry's address sends them straight to it again."""
    layout, digest = images["app"]
    ref = f"http://{registry.host}/proxied/app:v1"
    clear = {name: "" for name in ("all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY")}
    with http_proxy() as proxy:
        env = {**clear, "http_proxy": proxy.url, "HTTP_PROXY": proxy.url}
        out = run_smith("upload", "-i", str(layout), "-r", ref, home=home, env=env)
        assert out.stdout.strip() == f"{registry.host}/proxied/app@{digest}"
        assert {"HEAD", "POST", "PUT"} <= set(proxy.methods)
        assert all(url.startswith(f"http://{registry.host}/v2/") for url in proxy.asked)
        pulled = tmp_path / "pulled"
        run_smith("download", "-r", ref, "-i", str(pulled), home=home, env=env)
        assert layout_manifest_digest(pulled) == digest
        assert proxy.methods.count("GET") >= 3  # the manifest, the config and the layer
        asked = len(proxy.asked)
        bypass = {**env, "no_proxy": registry.host.partition(":")[0]}
        run_smith("download", "-r", ref, "-i", str(tmp_path / "direct"), home=home, env=bypass)
        assert len(proxy.asked) == asked
