"""`smith build` end to end: the example recipes, built from the fixture universe and run."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import tarfile
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from smith.oci.reading import open_image
from tests.containers import CRUN_WRAPPER, configure_bundle, run_bundle, unpack_bundle
from tests.fault_server import fault_server
from tests.rpm_universe import Universe
from tests.tls import self_signed
from tests.tools import PROJECT, require_root, require_tool

RECIPES = PROJECT / "recipes"
RUNTIME = ["dev", "proc", "read", "run", "sys", "write"]


def smith(
    *args: str, cwd: Path | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "smith", *args], cwd=cwd, capture_output=True, text=True, check=False
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def recipe_copy(name: str, tmp_path: Path, universe: Universe) -> Path:
    """The example recipe, with its repository pointed at the session's HTTP server."""
    dest = tmp_path / name
    shutil.copytree(RECIPES / name, dest)
    recipe = yaml.safe_load((dest / "smith.yaml").read_text())
    recipe["repos"] = [{"name": "universe", "baseurl": universe.repo_url("main")}]
    (dest / "smith.yaml").write_text(yaml.safe_dump(recipe))
    return dest


def build_example(name: str, tmp_path: Path, universe: Universe, *extra: str) -> Path:
    recipe = recipe_copy(name, tmp_path, universe)
    out = tmp_path / f"{name}-image"
    smith(
        "build",
        str(recipe),
        "-o",
        str(out),
        "--tag",
        name,
        "--cache-dir",
        str(tmp_path / "cache"),
        *extra,
    )
    return out


def image_paths(layout: Path, tag: str, tmp_path: Path) -> Path:
    return unpack_bundle(f"{layout}:{tag}", tmp_path / f"bundle-{tag}")


def listing(rootfs: Path) -> list[str]:
    return sorted(str(p.relative_to(rootfs)) for p in rootfs.rglob("*"))


@pytest.mark.parametrize("runtime", ["runc", "crun"])
def test_hello_runs_read_only(runtime: str, tmp_path: Path, rpm_universe: Universe) -> None:
    out = build_example("hello", tmp_path, rpm_universe)
    bundle = image_paths(out, "hello", tmp_path)
    configure_bundle(bundle, readonly=True)
    result = run_bundle(runtime, bundle)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello from smith\n"


def test_hello_keeps_exactly_the_closure(tmp_path: Path, rpm_universe: Universe) -> None:
    out = build_example("hello", tmp_path, rpm_universe)
    rootfs = image_paths(out, "hello", tmp_path) / "rootfs"
    assert listing(rootfs) == [
        "dev", "lib", "lib64", "proc", "read", "run", "sys",
        "usr", "usr/bin", "usr/bin/hello",
        "usr/lib", "usr/lib/x86_64-linux-gnu",
        "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", "usr/lib/x86_64-linux-gnu/libc.so.6",
        "usr/lib64", "usr/lib64/ld-linux-x86-64.so.2",
        "write",
    ]  # fmt: skip
    for path in rootfs.rglob("*"):
        st = path.lstat()
        assert (st.st_uid, st.st_gid) == (10, 10), path
        assert st.st_mode & 0o7000 == 0, path


@pytest.mark.parametrize("runtime", ["runc", "crun"])
def test_the_originals_cat_example(runtime: str, tmp_path: Path, rpm_universe: Universe) -> None:
    out = build_example("cat", tmp_path, rpm_universe)
    bundle = image_paths(out, "cat", tmp_path)
    rootfs = bundle / "rootfs"
    assert (rootfs / "read" / "data").read_text() == "Hello World!\n"
    kept = [p for p in listing(rootfs) if not Path(rootfs, p).is_dir()]
    assert "usr/bin/ls" not in kept and "usr/bin/cat" in kept
    configure_bundle(bundle, readonly=True)
    result = run_bundle(runtime, bundle)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Hello World!\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("runtime", ["runc", "crun"])
def test_http_server_with_nss_answers(runtime: str, tmp_path: Path, rpm_universe: Universe) -> None:
    require_root()
    require_tool(runtime)
    out = build_example("tinyhttpd", tmp_path, rpm_universe)
    bundle = image_paths(out, "tinyhttpd", tmp_path)
    rootfs = bundle / "rootfs"
    passwd = (rootfs / "etc" / "passwd").read_text()
    assert passwd.endswith("\n") and "www:x:10:10:www:/write:" in passwd
    assert (rootfs / "usr/lib/x86_64-linux-gnu/libnss_files.so.2").exists()
    port = free_port()
    config = json.loads((bundle / "config.json").read_text())
    args = ["/usr/sbin/tinyhttpd", str(port), "/srv", "www"]
    configure_bundle(bundle, args=args, readonly=True, host_network=True)
    before = sorted((p, p.stat().st_mtime_ns) for p in rootfs.rglob("*") if not p.is_symlink())
    base = CRUN_WRAPPER if runtime == "crun" else ["runc"]
    cid = f"smith-http-{port}"
    proc = subprocess.Popen(
        [*base, "run", "--bundle", str(bundle), cid],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        body = ""
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=2) as r:
                    body = r.read().decode()
                break
            except OSError:
                if proc.poll() is not None:
                    break
                time.sleep(0.1)
        assert "served by a smith microcontainer" in body, (
            proc.stderr.read() if proc.poll() is not None else ""
        )
    finally:
        subprocess.run([runtime, "kill", cid, "KILL"], capture_output=True, check=False)
        proc.wait(timeout=30)
        subprocess.run([runtime, "delete", "--force", cid], capture_output=True, check=False)
    after = sorted((p, p.stat().st_mtime_ns) for p in rootfs.rglob("*") if not p.is_symlink())
    assert before == after  # nothing written to the image's root
    assert config["process"]["user"] == {"uid": 10, "gid": 10}


def test_curl_runs_and_keeps_its_whole_closure(tmp_path: Path, rpm_universe: Universe) -> None:
    out = build_example("curl", tmp_path, rpm_universe)
    bundle = image_paths(out, "curl", tmp_path)
    configure_bundle(bundle, readonly=True)
    result = run_bundle("runc", bundle)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("curl ") and "OpenSSL" in result.stdout
    assert (bundle / "rootfs/etc/ssl/certs/ca-certificates.crt").exists()


def test_explain_and_json(tmp_path: Path, rpm_universe: Universe) -> None:
    recipe = recipe_copy("hello", tmp_path, rpm_universe)
    out = tmp_path / "img.tar"
    proc = smith(
        "build",
        str(recipe),
        "-o",
        str(out),
        "--explain",
        "--json",
        "--cache-dir",
        str(tmp_path / "c"),
    )
    summary = json.loads(proc.stdout)  # --explain goes into the JSON, nothing else on stdout
    assert summary["kept"]["/usr/lib/x86_64-linux-gnu/libc.so.6"]
    text = smith(
        "build", str(recipe), "-o", str(tmp_path / "img2.tar"), "--explain",
        "--cache-dir", str(tmp_path / "c"),
    )  # fmt: skip
    assert "/usr/lib/x86_64-linux-gnu/libc.so.6\t[glibc-1.0-1.x86_64]\t" in text.stdout
    assert summary["packages_kept"] == [
        "filesystem-1.0-1.noarch",
        "glibc-1.0-1.x86_64",
        "hello-1.0-1.x86_64",
        "microcontainer conventions",
    ]
    with open_image(str(out)) as img:
        owners = json.loads(img.manifest["annotations"]["org.smith.package-files"])
        assert owners["hello-1.0-1.x86_64"] == ["/usr/bin/hello"]


def test_rebuild_is_bit_identical(tmp_path: Path, rpm_universe: Universe) -> None:
    recipe = recipe_copy("curl", tmp_path, rpm_universe)
    first = smith(
        "build", str(recipe), "-o", str(tmp_path / "a.tar.gz"), "--cache-dir", str(tmp_path / "c1")
    )
    second = smith(
        "build", str(recipe), "-o", str(tmp_path / "b.tar.gz"), "--cache-dir", str(tmp_path / "c2")
    )
    assert first.returncode == second.returncode == 0
    assert (tmp_path / "a.tar.gz").read_bytes() == (tmp_path / "b.tar.gz").read_bytes()


def test_build_without_argument_reads_smith_yaml_here(
    tmp_path: Path, rpm_universe: Universe
) -> None:
    recipe = recipe_copy("hello", tmp_path, rpm_universe)
    smith("build", "--cache-dir", str(tmp_path / "c"), cwd=recipe)
    assert (recipe / "image.tar.gz").exists()  # the original's default output


def test_recipe_format_is_the_output_format(tmp_path: Path, rpm_universe: Universe) -> None:
    # The recipe's `format` is honoured like --format (it was read and then ignored).
    recipe = recipe_copy("hello", tmp_path, rpm_universe)
    doc = yaml.safe_load((recipe / "smith.yaml").read_text())
    (recipe / "smith.yaml").write_text(yaml.safe_dump({**doc, "format": "docker-archive"}))
    out = tmp_path / "hello.tar"
    smith("build", str(recipe), "-o", str(out), "--cache-dir", str(tmp_path / "c"))
    with tarfile.open(out) as archive:
        assert "manifest.json" in archive.getnames()  # what `docker load` reads
    (recipe / "smith.yaml").write_text(yaml.safe_dump({**doc, "format": "zip"}))
    bad = smith(
        "build", str(recipe), "-o", str(out), "--cache-dir", str(tmp_path / "c"), check=False
    )
    assert bad.returncode != 0 and "unknown output format 'zip'" in bad.stderr, bad.stderr


@pytest.mark.parametrize("pattern", ["/etc/ssl", "/etc/ss?/certs", "/etc/*", "/"])
def test_paths_may_name_a_directory_no_package_owns(
    pattern: str, tmp_path: Path, rpm_universe: Universe
) -> None:
    # ca-certificates ships /etc/ssl/certs/ca-certificates.crt without owning /etc/ssl or
    # /etc/ssl/certs: the directories are there all the same, as they are on disk after an
    # install (where the original smith copied them from).
    recipe = recipe_copy("curl", tmp_path, rpm_universe)
    doc = yaml.safe_load((recipe / "smith.yaml").read_text())
    (recipe / "smith.yaml").write_text(yaml.safe_dump({**doc, "paths": [pattern]}))
    proc = smith(
        "build", str(recipe), "-o", str(tmp_path / "img"), "--explain",
        "--cache-dir", str(tmp_path / "c"),
    )  # fmt: skip
    kept = dict(line.split("\t", 1) for line in proc.stdout.splitlines())
    assert "/etc/ssl/certs/ca-certificates.crt" in kept
    assert f"named by paths: {pattern}" in kept["/etc/ssl/certs/ca-certificates.crt"]


def test_local_rpm_file_with_dependencies_from_a_repository(
    tmp_path: Path, rpm_universe: Universe
) -> None:
    recipe_dir = tmp_path / "local"
    recipe_dir.mkdir()
    shutil.copy(rpm_universe.repo_dir("main") / "hello-1.0-1.x86_64.rpm", recipe_dir)
    (recipe_dir / "smith.yaml").write_text(
        yaml.safe_dump(
            {
                "package": "./hello-1.0-1.x86_64.rpm",
                "repos": [{"id": "main", "baseurl": rpm_universe.repo_url("main")}],
                "cmd": ["/usr/bin/hello"],
            }
        )
    )
    cache = str(tmp_path / "cache")
    first = smith(
        "build", str(recipe_dir), "-o", str(tmp_path / "a.tar"), "--json", "--cache-dir", cache
    )
    summary = json.loads(first.stdout)
    assert "hello-1.0-1.x86_64" in summary["packages_kept"]
    smith("lock", str(recipe_dir / "smith.yaml"), "--cache-dir", cache)
    lock = json.loads((recipe_dir / "smith.lock").read_text())
    assert lock["requests"] == ["./hello-1.0-1.x86_64.rpm"]
    smith("build", str(recipe_dir), "-o", str(tmp_path / "b.tar"), "--locked", "--cache-dir", cache)
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()


@pytest.mark.parametrize("runtime", ["runc", "crun"])
def test_curl_fetches_over_tls(runtime: str, tmp_path: Path, rpm_universe: Universe) -> None:
    out = build_example("curl", tmp_path, rpm_universe)
    bundle = image_paths(out, "curl", tmp_path)
    ca_dir = tmp_path / "ca"
    ca_dir.mkdir(mode=0o755)
    ca_dir.chmod(0o755)  # the container's user (uid 10) must be able to read it
    cert, key = self_signed(ca_dir)
    cert.chmod(0o644)
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "secret.txt").write_text("delivered over TLS\n")
    config = json.loads((bundle / "config.json").read_text())
    # The per-instance CA goes to /read, as the microcontainer rules say.
    config["mounts"].append(
        {
            "destination": "/read",
            "type": "bind",
            "source": str(cert.parent),
            "options": ["rbind", "ro"],
        }
    )
    (bundle / "config.json").write_text(json.dumps(config))
    with fault_server(tmp_path / "www", tls=(cert, key)) as server:
        args = ["/usr/bin/curl", "-sS", "--cacert", f"/read/{cert.name}", server.url + "secret.txt"]
        configure_bundle(bundle, args=args, readonly=True, host_network=True)
        result = run_bundle(runtime, bundle)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "delivered over TLS\n"


def test_parent_image_keeps_its_layers_and_the_new_one_goes_on_top(
    tmp_path: Path, rpm_universe: Universe
) -> None:
    parent = build_example("cat", tmp_path, rpm_universe)
    recipe = recipe_copy("hello", tmp_path, rpm_universe)
    doc = yaml.safe_load((recipe / "smith.yaml").read_text())
    doc["parent"] = str(parent)
    (recipe / "smith.yaml").write_text(yaml.safe_dump(doc))
    out = tmp_path / "child"
    smith(
        "build",
        str(recipe),
        "-o",
        str(out),
        "--tag",
        "child",
        "--cache-dir",
        str(tmp_path / "cache"),
    )
    with open_image(str(parent)) as base, open_image(str(out)) as child:
        assert len(child.layers) == 2
        assert child.layers[0] == base.layers[0]
        assert child.diff_ids[0] == base.diff_ids[0]
        assert len(child.config["history"]) == 2
    bundle = image_paths(out, "child", tmp_path)
    assert (bundle / "rootfs" / "read" / "data").exists()  # from the parent's layer
    configure_bundle(bundle, readonly=True)
    result = run_bundle("runc", bundle)
    assert result.stdout == "hello from smith\n", result.stderr
