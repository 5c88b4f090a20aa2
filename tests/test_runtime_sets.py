"""The rule-based run-time sets (smith/resolve/runtime_sets.py) with real programs: a C
program calling pthread_cancel and one loading OpenSSL's legacy provider, compiled here,
put in an image with the host's libraries, minimized, and run by runc on a read-only root.
Each runs only with its rule; switched off, it fails the way a user would see it."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from smith.resolve.dependencies import Extras, compute_closure
from smith.resolve.runtime_sets import ALL_RULES, rules_without
from tests.containers import configure_bundle, run_bundle, unpack_bundle
from tests.imagekit import M, layer_tar, write_layout
from tests.tools import PROJECT, require_root, require_tool

TRIPLET = "usr/lib/x86_64-linux-gnu"
LIBS = (
    "libc.so.6",
    "libgcc_s.so.1",
    "libcrypto.so.3",
    "ossl-modules/legacy.so",
    "engines-3/afalg.so",
)

CANCEL = rb"""
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>
static void *sleeper(void *arg) { for (;;) pause(); return arg; }
int main(void) {
    pthread_t t;
    void *result;
    if (pthread_create(&t, NULL, sleeper, NULL)) return 2;
    pthread_cancel(t);
    pthread_join(t, &result);
    puts(result == PTHREAD_CANCELED ? "cancelled" : "not cancelled");
    return result == PTHREAD_CANCELED ? 0 : 3;
}
"""

LEGACY = rb"""
#include <openssl/evp.h>
#include <openssl/provider.h>
#include <stdio.h>
int main(void) {
    OSSL_PROVIDER *legacy = OSSL_PROVIDER_load(NULL, "legacy");
    if (legacy == NULL) { puts("no legacy provider"); return 4; }
    EVP_MD *md4 = EVP_MD_fetch(NULL, "MD4", NULL);
    puts(md4 != NULL ? "legacy MD4" : "no MD4");
    return md4 != NULL ? 0 : 5;
}
"""


def smith(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PROJECT / ".venv/bin/smith"), *args], capture_output=True, text=True, check=False
    )


def host_image(tmp_path: Path, name: str, source: bytes, flags: list[str]) -> Path:
    """An image of a program compiled here and the host's libc, libgcc_s, libcrypto and
    OpenSSL's module directories (more than it needs: minimize picks)."""
    gcc = require_tool("gcc")
    src = tmp_path / f"{name}.c"
    src.write_bytes(source)
    binary = tmp_path / name
    subprocess.run([gcc, "-O1", "-o", str(binary), str(src), *flags], check=True)
    members = [
        M("lib64", "symlink", link="usr/lib64"),
        M("usr", "dir"),
        M("usr/lib64", "dir"),
        M(
            "usr/lib64/ld-linux-x86-64.so.2",
            data=read_host("/lib64/ld-linux-x86-64.so.2"),
            mode=0o755,
        ),
        M("usr/lib", "dir"),
        M(TRIPLET, "dir"),
        M(f"{TRIPLET}/ossl-modules", "dir"),
        M(f"{TRIPLET}/engines-3", "dir"),
        M("usr/local", "dir"),
        M("usr/local/bin", "dir"),
        M(f"usr/local/bin/{name}", data=binary.read_bytes(), mode=0o755),
    ]
    for lib in LIBS:
        path = f"/{TRIPLET}/{lib}"
        if not os.path.exists(path):
            pytest.fail(f"{path} is not on this machine (Debian's libc6, libgcc-s1, libssl3)")
        members.append(M(path[1:], data=read_host(path), mode=0o755))
    layout = tmp_path / f"{name}-image"
    write_layout(str(layout), [layer_tar(members)], {"Entrypoint": [f"/usr/local/bin/{name}"]})
    return layout


def read_host(path: str) -> bytes:
    with open(os.path.realpath(path), "rb") as f:
        return f.read()


def minimize_and_run(tmp_path: Path, layout: Path, label: str, *flags: str) -> dict[str, Any]:
    out = tmp_path / f"out-{label}"
    proc = smith(
        "minimize", str(layout), "-o", str(out), "--tag", "t", "--json", "--explain", *flags
    )
    assert proc.returncode == 0, proc.stderr
    summary: dict[str, Any] = json.loads(proc.stdout)
    bundle = unpack_bundle(f"{out}:t", tmp_path / f"bundle-{label}")
    configure_bundle(bundle, readonly=True, uid=0)
    summary["run"] = run_bundle("runc", bundle)
    return summary


@pytest.fixture
def as_root() -> None:
    require_root()
    require_tool("runc")


def test_pthread_cancel_runs_only_with_the_libgcc_s_rule(tmp_path: Path, as_root: None) -> None:
    layout = host_image(tmp_path, "cancel", CANCEL, ["-pthread"])
    kept = f"/{TRIPLET}/libgcc_s.so.1"

    on = minimize_and_run(tmp_path, layout, "on")
    assert on["run"].returncode == 0, on["run"].stderr
    assert on["run"].stdout == "cancelled\n"
    why = on["kept"][kept]
    assert (
        why
        == f"dlopened by /{TRIPLET}/libc.so.6 for pthread_cancel (called by /usr/local/bin/cancel)"
    )

    off = minimize_and_run(tmp_path, layout, "off", "--no-runtime", "libgcc_s")
    assert kept not in off["kept"]
    assert off["run"].returncode != 0
    assert "libgcc_s.so.1 must be installed for pthread_cancel to work" in off["run"].stderr
    # Nothing else in the program calls for OpenSSL: that rule kept nothing.
    assert not any("ossl-modules" in path for path in on["kept"])


def test_openssl_legacy_provider_runs_only_with_the_openssl_rule(
    tmp_path: Path, as_root: None
) -> None:
    layout = host_image(tmp_path, "legacy", LEGACY, ["-lcrypto"])
    module = f"/{TRIPLET}/ossl-modules/legacy.so"

    on = minimize_and_run(tmp_path, layout, "on")
    assert on["run"].returncode == 0, on["run"].stderr
    assert on["run"].stdout == "legacy MD4\n"
    assert on["kept"][module] == f"dlopened by /{TRIPLET}/libcrypto.so.3 for its providers"
    assert f"/{TRIPLET}/engines-3/afalg.so" in on["kept"]
    # The program neither cancels threads nor exits one: no libgcc_s.
    assert f"/{TRIPLET}/libgcc_s.so.1" not in on["kept"]

    off = minimize_and_run(tmp_path, layout, "off", "--no-runtime", "openssl")
    assert module not in off["kept"]
    assert off["run"].returncode == 4, off["run"].stderr
    assert off["run"].stdout == "no legacy provider\n"


def test_a_rule_name_that_does_not_exist_is_one_line(tmp_path: Path) -> None:
    proc = smith("minimize", str(tmp_path), "-o", str(tmp_path / "o"), "--no-runtime", "jvm")
    assert proc.returncode == 2
    assert "'jvm' is not one of" in proc.stderr
    assert "Traceback" not in proc.stderr


def host_root(tmp_path: Path, program: str, binary: str = "/usr/bin/true") -> Path:
    """A directory root: `program` (a copy of a host ELF program) with libc and ld.so."""
    root = tmp_path / "root"
    for path, source in (
        (f"usr/bin/{program}", binary),
        ("usr/lib64/ld-linux-x86-64.so.2", "/lib64/ld-linux-x86-64.so.2"),
        (f"{TRIPLET}/libc.so.6", f"/{TRIPLET}/libc.so.6"),
    ):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(read_host(source))
    (root / "lib64").symlink_to("usr/lib64")
    return root


def touch(root: Path, *paths: str) -> None:
    for path in paths:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text("")


@pytest.mark.parametrize(
    ("program", "kept", "left"),
    [
        (
            "perl",
            [f"{TRIPLET}/perl-base/strict.pm", "usr/share/perl/5.36/Carp.pm"],
            ["usr/share/perl5/vendor_perl/Extra.pm", "usr/local/share/perl/5.36/Site.pm"],
        ),
        (
            "ruby3.1",
            ["usr/lib/ruby/3.1.0/set.rb", f"{TRIPLET}/ruby/3.1.0/etc.so"],
            ["usr/lib/ruby/gems/3.1.0/gems/rake.rb", "usr/lib/ruby/vendor_ruby/x.rb"],
        ),
        (
            "python3",  # no version in the file name: every python3.N tree with an os.py
            ["usr/lib/python3.11/os.py", "usr/lib/python3.12/os.py"],
            ["usr/lib/python3.11/site-packages/pkg.py", "usr/lib/python3/dist-packages/d.py"],
        ),
        ("node", [], ["usr/share/nodejs/left-pad/index.js"]),  # node's stdlib is built in
    ],
)
def test_interpreter_trees_are_the_stdlib_only(
    tmp_path: Path, program: str, kept: list[str], left: list[str]
) -> None:
    root = host_root(tmp_path, program)
    touch(root, *kept, *left)
    closure = compute_closure(str(root), [f"/usr/bin/{program}"], extras=Extras(rules=ALL_RULES))
    for path in kept:
        assert path in closure.kept, path
        assert str(closure.kept[path]).startswith(f"dlopened by /usr/bin/{program} for import")
    for path in left:
        assert path not in closure.kept, path
    off = compute_closure(
        str(root), [f"/usr/bin/{program}"], extras=Extras(rules=rules_without(("interpreter",)))
    )
    assert not any(path in off.kept for path in kept)


def test_a_pthread_cancel_caller_without_libgcc_s_is_a_warning(tmp_path: Path) -> None:
    gcc = require_tool("gcc")
    src = tmp_path / "cancel.c"
    src.write_bytes(CANCEL)
    binary = tmp_path / "cancel"
    subprocess.run([gcc, "-O1", "-o", str(binary), str(src), "-pthread"], check=True)
    root = host_root(tmp_path, "cancel", str(binary))
    closure = compute_closure(str(root), ["/usr/bin/cancel"], extras=Extras(rules=ALL_RULES))
    assert closure.warnings == (
        "/usr/bin/cancel calls pthread_cancel, which needs libgcc_s.so.1: not in the root",
    )


def test_an_elf_module_of_a_kept_standard_library_brings_its_libraries(tmp_path: Path) -> None:
    """A kept tree is listed once, however many programs and links lead to it, and only its
    ELF files (told by their first bytes) are walked: here a module that needs libcrypto."""
    root = host_root(tmp_path, "perl")
    (root / "usr/bin/perl5.36.0").write_bytes((root / "usr/bin/perl").read_bytes())
    module = "usr/share/perl/5.36.0/auto/Digest/Digest.so"
    touch(root, "usr/share/perl/5.36.0/Carp.pm", "usr/share/perl/5.36.0/empty.so")
    (root / module).parent.mkdir(parents=True, exist_ok=True)
    (root / module).write_bytes(read_host(f"/{TRIPLET}/libssl.so.3"))
    (root / TRIPLET / "libcrypto.so.3").write_bytes(read_host(f"/{TRIPLET}/libcrypto.so.3"))
    (root / "usr/share/perl/5.36").symlink_to("5.36.0")
    closure = compute_closure(
        str(root), ["/usr/bin/perl", "/usr/bin/perl5.36.0"], extras=Extras(rules=ALL_RULES)
    )
    stdlib = "dlopened by /usr/bin/perl for import: its standard library"
    for path in ("usr/share/perl/5.36.0/Carp.pm", "usr/share/perl/5.36.0/empty.so", module):
        assert str(closure.kept[path]).startswith(stdlib), path
    assert str(closure.kept[f"{TRIPLET}/libcrypto.so.3"]) == (
        f"DT_NEEDED libcrypto.so.3 of /{module}, found by default directory"
    )
    assert str(closure.kept["usr/share/perl/5.36"]) == (
        "symlink on the way to /usr/share/perl/5.36 (for /usr/bin/perl)"
    )


def test_only_files_named_as_extension_modules_of_a_standard_library_are_read(
    tmp_path: Path,
) -> None:
    """An interpreter dlopens `.so` files only (its extension modules): any other file of its
    tree is kept unread, even one that is a dynamic ELF file, so its libraries are not."""
    root = host_root(tmp_path, "python3.11")
    touch(root, "usr/lib/python3.11/os.py")
    for path in (
        "usr/lib/python3.11/config-3.11/python.o",
        "usr/lib/python3.11/lib-dynload/_ssl.so",
    ):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(read_host(f"/{TRIPLET}/libssl.so.3"))
    (root / TRIPLET / "libcrypto.so.3").write_bytes(read_host(f"/{TRIPLET}/libcrypto.so.3"))
    on = compute_closure(str(root), ["/usr/bin/python3.11"], extras=Extras(rules=ALL_RULES))
    assert str(on.kept["usr/lib/python3.11/config-3.11/python.o"]).startswith(
        "dlopened by /usr/bin/python3.11 for import: its standard library"
    )
    assert str(on.kept[f"{TRIPLET}/libcrypto.so.3"]) == (
        "DT_NEEDED libcrypto.so.3 of /usr/lib/python3.11/lib-dynload/_ssl.so, found by default"
        " directory"
    )
    (root / "usr/lib/python3.11/lib-dynload/_ssl.so").unlink()
    off = compute_closure(str(root), ["/usr/bin/python3.11"], extras=Extras(rules=ALL_RULES))
    assert "usr/lib/python3.11/config-3.11/python.o" in off.kept
    assert f"{TRIPLET}/libcrypto.so.3" not in off.kept
