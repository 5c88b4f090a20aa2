"""`smith probe` and profiles with real Debian software run by runc on a read-only root:

- python3 with an app importing json, sqlite3, ssl, decimal and hashlib: minimized from
  its ELF closure alone it cannot start; with the interpreter rule it runs; with a probe's
  profile it runs and is smaller than with the whole standard library;
- nginx minimized with no --path at all, only a probe of `nginx -t` and a GET: it serves;
- the profile is the same bytes from two probes; the host and a noisy neighbour container
  reading files at the same time never appear in it;
- a probe that times out, exits non-zero, or whose check fails says so in one line and
  writes no profile.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from smith.profile import read_profile
from tests.containers import configure_bundle, run_bundle, unpack_bundle
from tests.debian_image import DebianImages
from tests.debian_python import EXPECTED
from tests.test_minimize_debian import Bundle, free_port, serve_and_get
from tests.tools import PROJECT, require_root, require_tool


@pytest.fixture(scope="session")
def python_layout(debian: DebianImages) -> Path:
    return debian.python_layout


@pytest.fixture(scope="session")
def nginx_images(debian: DebianImages) -> DebianImages:
    return debian


def smith(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PROJECT / ".venv/bin/smith"), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def minimize(layout: Path, out: Path, *flags: str) -> dict[str, Any]:
    proc = smith(
        "minimize", str(layout), "-o", str(out), "--tag", "t", "--json", "--explain", *flags
    )
    assert proc.returncode == 0, proc.stderr
    summary: dict[str, Any] = json.loads(proc.stdout)
    return summary


def run_image(out: Path, bundle: Path) -> Any:
    unpack_bundle(f"{out}:t", bundle)
    configure_bundle(bundle, readonly=True)
    return run_bundle("runc", bundle)


@pytest.fixture
def root_and_runc() -> None:
    require_root()
    require_tool("runc")
    require_tool("umoci")


def test_python_app_runs_with_the_interpreter_rule_and_smaller_with_a_profile(
    python_layout: Path, tmp_path: Path, root_and_runc: None
) -> None:
    static = minimize(python_layout, tmp_path / "static", "--no-runtime", "interpreter")
    ran = run_image(tmp_path / "static", tmp_path / "b-static")
    assert ran.returncode != 0
    assert "encodings" in ran.stderr  # the interpreter cannot even initialise

    rule = minimize(python_layout, tmp_path / "rule")
    ran = run_image(tmp_path / "rule", tmp_path / "b-rule")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith(EXPECTED + " OpenSSL"), ran.stdout
    why = rule["kept"]["/usr/lib/python3.11/json/__init__.py"]
    assert why == (
        "dlopened by /usr/bin/python3.11 for import: its standard library /usr/lib/python3.11"
    )
    assert not any("-packages/" in path for path in rule["kept"])  # the stdlib only

    profile = tmp_path / "app.profile"
    probed = smith("probe", str(python_layout), "-o", str(profile))
    assert probed.returncode == 0, probed.stderr
    paths = read_profile(str(profile)).paths()
    assert "/usr/lib/python3.11/lib-dynload/_sqlite3.cpython-311-x86_64-linux-gnu.so" in paths
    assert "/app/app.py" in paths
    again = tmp_path / "again.profile"
    assert smith("probe", str(python_layout), "-o", str(again)).returncode == 0
    assert again.read_bytes() == profile.read_bytes()

    profiled = minimize(python_layout, tmp_path / "profiled", "--profile", str(profile))
    ran = run_image(tmp_path / "profiled", tmp_path / "b-profiled")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith(EXPECTED + " OpenSSL"), ran.stdout
    assert profiled["kept"]["/usr/lib/python3.11/json/__init__.py"] == "profile open by python3"
    assert "/usr/lib/python3.11/tomllib/__init__.py" not in profiled["kept"]  # not imported

    sizes = {
        "full": rule["before"]["bytes"],
        "rule": rule["after"]["bytes"],
        "profile": profiled["after"]["bytes"],
        "static": static["after"]["bytes"],
    }
    print(f"python app image bytes: {sizes}")
    assert sizes["static"] < sizes["profile"] < sizes["rule"] < sizes["full"]

    # The same profile gives the same image, byte for byte.
    twice = minimize(python_layout, tmp_path / "profiled2", "--profile", str(profile))
    assert twice["manifest"] == profiled["manifest"]


@pytest.fixture
def site(tmp_path: Path) -> tuple[Path, int]:
    port = free_port()
    read_dir = tmp_path / "read"
    read_dir.mkdir()
    (read_dir / "site.conf").write_text(
        f"server {{ listen 127.0.0.1:{port}; root /usr/share/nginx/html; }}\n"
    )
    return read_dir, port


def test_nginx_minimized_from_a_probe_alone_serves(
    nginx_images: DebianImages, site: tuple[Path, int], tmp_path: Path, root_and_runc: None
) -> None:
    read_dir, port = site
    probe = [str(nginx_images.nginx_layout), "--bind", f"{read_dir}:/read"]
    probe += ["--get", str(port), "--check", "nginx -e stderr -t"]
    first, second = tmp_path / "first.profile", tmp_path / "second.profile"
    for dest in (first, second):
        proc = smith("probe", *probe, "-o", str(dest))
        assert proc.returncode == 0, proc.stderr
    assert first.read_bytes() == second.read_bytes()
    paths = read_profile(str(first)).paths()
    assert "/usr/share/nginx/html/index.html" in paths  # the GET
    assert any(p.startswith("/usr/lib/nginx/modules/") for p in paths)  # nginx -t's modules

    out = tmp_path / "image"
    proc = smith(
        "minimize",
        str(nginx_images.nginx_layout),
        "-o",
        str(out),
        "--tag",
        "nginx",
        "--profile",
        str(first),
    )
    assert proc.returncode == 0, proc.stderr
    bundle = Bundle(out, "nginx", tmp_path / "bundle", read_dir)
    try:
        check = bundle.run("nginx-t", ["nginx", "-e", "stderr", "-t"])
        assert check.returncode == 0, check.stderr
        assert b"Welcome to nginx" in serve_and_get(bundle, port)
    finally:
        bundle.cleanup()


@pytest.fixture
def neighbour(tmp_path: Path) -> Iterator[None]:
    """Another container (busybox, its own root) and a host thread, both reading
    /etc/debian_version over and over while the probe runs."""
    require_tool("runc")
    busybox = require_tool("busybox")  # scripts/setup.sh installs busybox-static
    bundle = tmp_path / "neighbour"
    rootfs = bundle / "rootfs"
    for sub in ("bin", "etc", "proc", "dev", "sys", "tmp"):
        (rootfs / sub).mkdir(parents=True)
    shutil.copy(busybox, rootfs / "bin" / "busybox")
    (rootfs / "bin" / "sh").symlink_to("busybox")
    (rootfs / "etc" / "debian_version").write_text("neighbour\n")
    subprocess.run(["runc", "spec", "--bundle", str(bundle)], check=True)
    loop = "while :; do /bin/busybox cat /etc/debian_version >/dev/null; done"
    configure_bundle(bundle, args=["/bin/sh", "-c", loop])
    state = tmp_path / "neighbour-state"
    name = f"smith-neighbour-{tmp_path.name[-12:]}"
    container = subprocess.Popen(
        ["runc", "--root", str(state), "run", "--bundle", str(bundle), name],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    stop = threading.Event()

    def host_reader() -> None:
        while not stop.is_set():
            with open("/etc/debian_version", "rb") as f:
                f.read()

    thread = threading.Thread(target=host_reader, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        subprocess.run(["runc", "--root", str(state), "kill", name, "KILL"], capture_output=True)
        container.wait(timeout=30)
        subprocess.run(
            ["runc", "--root", str(state), "delete", "--force", name], capture_output=True
        )


def test_the_profile_holds_only_the_container_files(
    python_layout: Path, tmp_path: Path, root_and_runc: None, neighbour: None
) -> None:
    dest = tmp_path / "p.profile"
    script = "cat /etc/os-release > /dev/null; sleep 2"
    proc = smith("probe", str(python_layout), "-o", str(dest), "--", "/bin/sh", "-c", script)
    assert proc.returncode == 0, proc.stderr
    profile = read_profile(str(dest))
    assert profile.command == ("/bin/sh", "-c", script)
    paths = profile.paths()
    assert "/usr/lib/os-release" in paths  # what the probed container read
    assert "/etc/debian_version" not in paths  # what the neighbour and the host read
    assert "/usr/bin/sleep" in paths
    assert not any("python" in p for p in paths)  # nothing of the image's own command
    assert not any(p.startswith(("/proc", "/sys", "/dev", str(tmp_path))) for p in paths)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--", "/bin/sh", "-c", "echo broken >&2; exit 3"],
            "`/bin/sh -c echo broken >&2; exit 3` exited 3: broken",
        ),
        (
            ["--run-timeout", "2", "--", "/bin/sleep", "30"],
            "`/bin/sleep 30` did not end within 2 s",
        ),
        (["--check", "false", "--", "/bin/sleep", "30"], "the check `false` exited 1"),
        (
            ["--get", "1", "--run-timeout", "2", "--", "/bin/sleep", "30"],
            "GET http://127.0.0.1:1/ timed out",
        ),
    ],
)
def test_a_failed_probe_is_one_line_and_writes_no_profile(
    python_layout: Path, tmp_path: Path, root_and_runc: None, args: list[str], message: str
) -> None:
    dest = tmp_path / "p.profile"
    proc = smith("probe", str(python_layout), "-o", str(dest), *args)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert message in proc.stderr
    assert not dest.exists()
    assert list(tmp_path.iterdir()) == []
