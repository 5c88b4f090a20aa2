"""Bad recipes and bad situations: one line on stderr, a non-zero exit, nothing partial."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import yaml

from smith.oci.reading import open_image
from tests.fault_server import fault_server
from tests.rpm_craft import craft_rpm
from tests.rpm_universe import Universe

HELLO = {"package": "hello", "cmd": ["/usr/bin/hello"]}


def run_smith(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "smith", *args], cwd=cwd, capture_output=True, text=True, check=False
    )


def make_recipe(
    tmp_path: Path, universe: Universe, text: str | None = None, **changes: object
) -> Path:
    recipe_dir = tmp_path / "recipe"
    recipe_dir.mkdir(exist_ok=True)
    if text is None:
        doc = {**HELLO, "repos": [{"name": "u", "baseurl": universe.repo_url("main")}], **changes}
        text = yaml.safe_dump({k: v for k, v in doc.items() if v is not None})
    (recipe_dir / "smith.yaml").write_text(text)
    return recipe_dir


def assert_clean_failure(
    proc: subprocess.CompletedProcess[str], message: str, out_dir: Path
) -> None:
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("smith: error: ") or lines[0] == "smith: interrupted", lines[0]
    assert message in lines[0], lines[0]
    assert "Traceback" not in proc.stderr
    leftovers = [p.name for p in out_dir.iterdir() if p.name != "recipe" and p.name != "cache"]
    assert leftovers == [], leftovers


CASES = {
    "yaml-syntax": ({"text": "package: [hello\ncmd: x\n"}, "smith.yaml:2:4: YAML syntax error"),
    # YAML keeps the last of two equal keys: the first would be dropped without a word.
    "duplicate-key": (
        {"text": "package: hello\ncmd: [/usr/bin/hello]\npackage: curl\n"},
        "smith.yaml:3:1: YAML syntax error: the key 'package' is given twice",
    ),
    "unknown-key": ({"pakage": "hello"}, "unknown key 'pakage' (did you mean 'package'?)"),
    "wrong-type": ({"nss": "sometimes"}, "nss: input should be a valid boolean, got 'sometimes'"),
    "no-such-package": ({"package": "nginx-nope"}, "no package provides 'nginx-nope'"),
    "path-no-package-provides": (
        {"paths": ["/usr/bin/nope"]},
        "paths: '/usr/bin/nope' matches nothing",
    ),
    "glob-matching-nothing": (
        {"paths": ["/usr/share/*.mo"]},
        "paths: '/usr/share/*.mo' matches nothing",
    ),
    "program-missing": (
        {"cmd": ["/usr/bin/missing"]},
        "the program '/usr/bin/missing' is in none of the packages",
    ),
    "program-excluded": (
        {"excludes": ["/usr/*"]},
        "excludes: '/usr/*' leaves out the program /usr/bin/hello",
    ),
    "unsatisfiable": ({"packages": ["broken"]}, "cannot install hello, broken"),
    # The arch is named, and where the package is to be had.
    "arch-the-repo-lacks": (
        {"arch": "aarch64"},
        "no package provides 'hello' for aarch64 in 'u' (it is there for x86_64: set `arch:`",
    ),
    "conflicting": ({"packages": ["conflicts-glibc"]}, "cannot install hello, conflicts-glibc"),
    "missing-local-rpm": ({"packages": ["./nope-1.0.rpm"]}, "no such RPM file: "),
    "missing-parent": ({"parent": "./nope.oci"}, "parent: no image at "),
    # A ':' or a newline in a name would write a broken line into /etc/passwd or /etc/group.
    "user-name-with-colon": ({"user": "app:wheel:x"}, "'wheel:x' in 'app:wheel:x'"),
    "group-name-with-newline": ({"groups": ["audio\nroot"]}, "'audio\\nroot'"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_recipe(case: str, tmp_path: Path, rpm_universe: Universe) -> None:
    changes, message = CASES[case]
    text = changes.pop("text", None) if "text" in changes else None
    recipe = make_recipe(tmp_path, rpm_universe, text, **changes)  # type: ignore[arg-type]
    proc = run_smith(
        "build",
        str(recipe),
        "-o",
        str(tmp_path / "img.tar"),
        "--cache-dir",
        str(tmp_path / "cache"),
    )
    assert_clean_failure(proc, message, tmp_path)


def test_rootfs_symlink_pointing_outside(tmp_path: Path, rpm_universe: Universe) -> None:
    recipe = make_recipe(tmp_path, rpm_universe)
    (recipe / "rootfs" / "etc").mkdir(parents=True)
    os.symlink("../../../../etc/shadow", recipe / "rootfs" / "etc" / "escape")
    proc = run_smith(
        "build",
        str(recipe),
        "-o",
        str(tmp_path / "img.tar"),
        "--cache-dir",
        str(tmp_path / "cache"),
    )
    assert_clean_failure(
        proc, "rootfs/etc/escape is a symlink to '../../../../etc/shadow'", tmp_path
    )


def test_unwritable_output(tmp_path: Path, rpm_universe: Universe) -> None:
    recipe = make_recipe(tmp_path, rpm_universe)
    proc = run_smith(
        "build",
        str(recipe),
        "-o",
        str(tmp_path / "no" / "such" / "img.tar"),
        "--cache-dir",
        str(tmp_path / "cache"),
    )
    assert_clean_failure(proc, "the output's directory does not exist", tmp_path)


def test_output_where_no_file_can_be_made(tmp_path: Path, rpm_universe: Universe) -> None:
    # /proc passes the writable check as root but refuses new files: the error names the
    # output the user asked for, not smith's temporary name.
    recipe = make_recipe(tmp_path, rpm_universe)
    proc = run_smith(
        "build", str(recipe), "-o", "/proc/img.tar", "--cache-dir", str(tmp_path / "cache")
    )
    assert_clean_failure(proc, "cannot write the output '/proc/img.tar' in '/proc'", tmp_path)
    assert "smith-tmp" not in proc.stderr


def test_debug_shows_the_traceback(tmp_path: Path, rpm_universe: Universe) -> None:
    recipe = make_recipe(tmp_path, rpm_universe, paths=["/nope"])
    proc = run_smith(
        "--debug",
        "build",
        str(recipe),
        "-o",
        str(tmp_path / "img.tar"),
        "--cache-dir",
        str(tmp_path / "cache"),
    )
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_ctrl_c_in_the_middle_leaves_nothing(tmp_path: Path, rpm_universe: Universe) -> None:
    repo = rpm_universe.repo_dir("main")
    package = "repos/main/glibc-1.0-1.x86_64.rpm"
    with fault_server(rpm_universe.root) as server:
        server.plan(package, "stall")  # the download hangs: the build is mid-way
        recipe = make_recipe(
            tmp_path, rpm_universe, repos=[{"name": "u", "baseurl": server.url + "repos/main"}]
        )
        cache = tmp_path / "cache"
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "smith",
                "build",
                str(recipe),
                "-o",
                str(tmp_path / "img.tar.gz"),
                "--cache-dir",
                str(cache),
            ],
            stderr=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 60
        while server.hits[package] == 0 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    result = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    assert proc.returncode == 130
    assert_clean_failure(result, "smith: interrupted", tmp_path)
    assert repo.exists()
    # Whatever reached the cache is complete: every blob's name is its digest.
    for blob in (
        (cache / "blobs" / "sha256").glob("*") if (cache / "blobs" / "sha256").exists() else []
    ):
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name


def test_local_rpm_with_names_that_are_not_utf8_or_xml(tmp_path: Path) -> None:
    # rpm never promised UTF-8 file names: such a name (and one with a control character,
    # which XML cannot carry) still builds from a local file, byte for byte.
    recipe = tmp_path / "recipe"
    recipe.mkdir()
    odd = ["usr/share/caf\udce9/\udcff\udcfe", "usr/share/bell\x07"]
    craft_rpm(
        recipe / "odd.rpm",
        [("./usr/bin/p", "file", "x"), *((f"./{name}", "file", "y") for name in odd)],
    )
    doc = {"packages": ["./odd.rpm"], "cmd": ["/usr/bin/p"], "paths": ["/usr/share/**"]}
    (recipe / "smith.yaml").write_text(yaml.safe_dump(doc))
    out = tmp_path / "img"
    proc = run_smith("build", str(recipe), "-o", str(out), "--cache-dir", str(tmp_path / "c"))
    assert proc.returncode == 0, proc.stderr
    with (
        open_image(str(out)) as image,
        tarfile.open(image.layers[0].verified_path()) as layer,
    ):
        names = {m.name.encode("utf-8", "surrogateescape") for m in layer.getmembers()}
    assert {name.encode("utf-8", "surrogateescape") for name in odd} <= names


def test_a_repository_without_a_name_is_named_by_its_url(
    tmp_path: Path, rpm_universe: Universe
) -> None:
    url = rpm_universe.repo_url("main")
    text = yaml.safe_dump({**HELLO, "package": "nope", "repos": [url]})
    recipe = make_recipe(tmp_path, rpm_universe, text)
    proc = run_smith("build", str(recipe), "-o", str(tmp_path / "img.tar"),
                     "--cache-dir", str(tmp_path / "cache"))  # fmt: skip
    assert_clean_failure(proc, f"no package provides 'nope' for x86_64 in {url}", tmp_path)
    assert "repo0" not in proc.stderr


@pytest.mark.parametrize(("retries", "attempts"), [("0", "1 attempt:"), ("1", "2 attempts:")])
def test_a_repository_that_is_down(
    retries: str, attempts: str, tmp_path: Path, rpm_universe: Universe
) -> None:
    with socket.socket() as s:  # a port nothing listens on: bound, never listening
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/repo"
        recipe = make_recipe(tmp_path, rpm_universe, yaml.safe_dump({**HELLO, "repos": [url]}))
        started = time.monotonic()
        proc = run_smith("build", str(recipe), "-o", str(tmp_path / "img.tar"),
                         "--retries", retries, "--cache-dir", str(tmp_path / "cache"))  # fmt: skip
    assert_clean_failure(proc, f"download of {url}/repodata/repomd.xml failed after", tmp_path)
    assert f"{attempts} connection refused" in proc.stderr
    assert time.monotonic() - started < 30


def test_lock_honours_retries_too(tmp_path: Path, rpm_universe: Universe) -> None:
    with socket.socket() as s:  # bound, never listening: connection refused
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/repo"
        recipe = make_recipe(tmp_path, rpm_universe, yaml.safe_dump({**HELLO, "repos": [url]}))
        proc = run_smith("lock", str(recipe / "smith.yaml"), "--retries", "0",
                         "--cache-dir", str(tmp_path / "cache"))  # fmt: skip
    assert_clean_failure(proc, "failed after 1 attempt: connection refused", tmp_path)
