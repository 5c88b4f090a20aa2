"""Closures in roots that are not the host: a FileTree in lib64 layout with binaries
compiled here (RUNPATH=$ORIGIN/../lib, RPATH, hwcaps), and a directory root made of the
i686 Fedora packages of ../shared/rpm-corpus, where 32-bit objects must never be matched
to 64-bit libraries."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from smith.errors import ElfError
from smith.resolve.closure import LoaderEnv, Reason
from smith.resolve.dependencies import Extras, compute_closure
from smith.resolve.elfcache import ElfCache
from smith.resolve.loader import Step
from smith.resolve.roots import TreeRoot
from smith.tree import FileTree, HostFile, InlineBytes
from tests.elf_builders import compile_c, lib32
from tests.tools import require_root, require_tool

HOST_LIBC = Path("/lib/x86_64-linux-gnu/libc.so.6")
HOST_LDSO = Path("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")

FOO = "int foo(void) { return 42; }\n"
APP = "int foo(void);\nint main(void) { return foo() == 42 ? 0 : 1; }\n"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("elf")
    libfoo = compile_c(out / "libfoo.so.1.0", FOO, "-Wl,-soname,libfoo.so.1", shared=True)
    (out / "libfoo.so").symlink_to("libfoo.so.1.0")
    app = compile_c(
        out / "app", APP, f"-L{out}", "-lfoo", "-Wl,--enable-new-dtags,-rpath,$ORIGIN/../lib"
    )
    # An RPATH (old tags) on the program is inherited by the libraries it loads.
    libbaz = compile_c(
        out / "libbaz.so", "int baz(void){return 1;}\n", "-Wl,-soname,libbaz.so", shared=True
    )
    libbar = compile_c(
        out / "libbar.so",
        "int baz(void);\nint bar(void){return baz();}\n",
        f"-L{out}",
        "-lbaz",
        "-Wl,-soname,libbar.so",
        shared=True,
    )
    rapp = compile_c(
        out / "rapp",
        "int bar(void);\nint main(void){return bar();}\n",
        f"-L{out}",
        "-lbar",
        f"-Wl,-rpath-link,{out}",
        "-Wl,--disable-new-dtags,-rpath,/opt/r/lib:/opt/r/private",
    )
    ldso = compile_c(out / "ld.so", FOO, "-Wl,-soname,ld-linux-x86-64.so.2", shared=True)
    return {
        "libfoo": libfoo,
        "app": app,
        "libbar": libbar,
        "libbaz": libbaz,
        "rapp": rapp,
        "ldso": ldso,
    }


def lib64_tree(built: dict[str, Path]) -> FileTree:
    """A Fedora-like root: /lib64 -> /usr/lib64 (absolute: it must be re-rooted, the host
    has its own /usr/lib64), the app in /opt/app/bin with its library in /opt/app/lib.

    The interpreter is a stand-in built here: the host's is Debian's, whose built-in
    directories are not /lib64 and /usr/lib64 (see test_interpreter_decides_defaults).
    """
    tree = FileTree()
    tree.add_symlink("lib64", "/usr/lib64")
    tree.add_file("usr/lib64/ld-linux-x86-64.so.2", HostFile(str(built["ldso"])), 0o755)
    tree.add_file("usr/lib64/libc.so.6", HostFile(str(HOST_LIBC)), 0o755)
    # A decoy with the same soname on the default path: DT_RUNPATH must win.
    tree.add_file("usr/lib64/libfoo.so.1", HostFile(str(HOST_LIBC)), 0o755)
    tree.add_file("opt/app/bin/app", HostFile(str(built["app"])), 0o755)
    tree.add_file("opt/app/lib/libfoo.so.1.0", HostFile(str(built["libfoo"])))
    tree.add_symlink("opt/app/lib/libfoo.so.1", "libfoo.so.1.0")
    tree.add_file("usr/share/doc/unrelated", InlineBytes(b"not kept"))
    return tree


def test_runpath_origin_in_lib64_tree(built: dict[str, Path]) -> None:
    closure = compute_closure(lib64_tree(built), ["/opt/app/bin/app"])
    assert closure.paths() == [
        "lib64",
        "opt/app/bin/app",
        "opt/app/lib/libfoo.so.1",
        "opt/app/lib/libfoo.so.1.0",
        "usr/lib64/ld-linux-x86-64.so.2",
        "usr/lib64/libc.so.6",
    ]
    kept = closure.kept
    assert kept["opt/app/bin/app"] == Reason(Step.START)
    assert kept["opt/app/lib/libfoo.so.1.0"] == Reason(
        Step.RUNPATH, "opt/app/bin/app", "libfoo.so.1"
    )
    assert kept["usr/lib64/libc.so.6"].step is Step.DEFAULT
    assert kept["usr/lib64/ld-linux-x86-64.so.2"].step is Step.INTERPRETER
    assert kept["lib64"].step is Step.SYMLINK
    assert closure.explain("/opt/app/lib/libfoo.so.1.0") == [
        "/opt/app/lib/libfoo.so.1.0: DT_NEEDED libfoo.so.1 of /opt/app/bin/app,"
        " found by DT_RUNPATH",
        "/opt/app/bin/app: start",
    ]


def test_symlinked_program_uses_its_real_origin(built: dict[str, Path]) -> None:
    tree = lib64_tree(built)
    tree.add_symlink("usr/bin/app", "/opt/app/bin/app")
    closure = compute_closure(tree, ["usr/bin/app"])
    assert "opt/app/lib/libfoo.so.1.0" in closure.kept
    assert closure.kept["usr/bin/app"].step is Step.SYMLINK


def test_ld_library_path_comes_before_runpath(built: dict[str, Path]) -> None:
    tree = lib64_tree(built)
    tree.add_file("srv/lib/libfoo.so.1", HostFile(str(built["libfoo"])))
    closure = compute_closure(
        tree, ["opt/app/bin/app"], env=LoaderEnv.from_env(["LD_LIBRARY_PATH=/srv/lib"])
    )
    assert closure.kept["srv/lib/libfoo.so.1"].step is Step.LD_LIBRARY_PATH
    assert "opt/app/lib/libfoo.so.1.0" not in closure.kept


def test_rpath_of_the_program_serves_its_libraries(built: dict[str, Path]) -> None:
    tree = lib64_tree(built)
    tree.add_file("opt/r/bin/rapp", HostFile(str(built["rapp"])), 0o755)
    tree.add_file("opt/r/lib/libbar.so", HostFile(str(built["libbar"])))
    tree.add_file("opt/r/private/libbaz.so", HostFile(str(built["libbaz"])))
    closure = compute_closure(tree, ["opt/r/bin/rapp"])
    # libbar has no RPATH of its own: libbaz is found through the loader chain's (rapp's).
    assert closure.kept["opt/r/private/libbaz.so"] == Reason(
        Step.RPATH, "opt/r/lib/libbar.so", "libbaz.so"
    )


def test_hwcaps_variants_are_all_kept(built: dict[str, Path]) -> None:
    tree = lib64_tree(built)
    tree.add_file("opt/app/lib/glibc-hwcaps/x86-64-v3/libfoo.so.1", HostFile(str(built["libfoo"])))
    tree.add_file("opt/app/lib/glibc-hwcaps/x86-64-v2/libfoo.so.1", HostFile(str(built["libfoo"])))
    closure = compute_closure(tree, ["opt/app/bin/app"])
    for level in ("v2", "v3"):
        assert (
            closure.kept[f"opt/app/lib/glibc-hwcaps/x86-64-{level}/libfoo.so.1"].step is Step.HWCAPS
        )


def test_ld_so_conf_include_globs(built: dict[str, Path]) -> None:
    tree = lib64_tree(built)
    tree.remove("opt/app/lib")
    tree.add_file("etc/ld.so.conf", InlineBytes(b"# comment\ninclude ld.so.conf.d/*.conf\n"))
    tree.add_file("etc/ld.so.conf.d/b.conf", InlineBytes(b"/opt/b\n"))
    tree.add_file("etc/ld.so.conf.d/a.conf", InlineBytes(b"/opt/a\n"))
    tree.add_file("opt/a/libfoo.so.1", HostFile(str(built["libfoo"])))
    tree.add_file("opt/b/libfoo.so.1", HostFile(str(built["libfoo"])))
    closure = compute_closure(tree, ["opt/app/bin/app"])
    assert closure.kept["opt/a/libfoo.so.1"].step is Step.LD_SO_CONF  # a.conf sorts first
    assert "opt/b/libfoo.so.1" not in closure.kept


def test_scripts_keep_their_interpreters(built: dict[str, Path]) -> None:
    tree = lib64_tree(built)
    tree.add_file("usr/bin/env", HostFile(str(built["app"])), 0o755)
    tree.add_file("usr/local/bin/runner", HostFile(str(built["app"])), 0o755)
    tree.add_file("srv/run.sh", InlineBytes(b"#!/usr/../usr/bin/env -S runner -x\necho\n"), 0o755)
    closure = compute_closure(
        tree, ["srv/run.sh"], env=LoaderEnv.from_env({"PATH": "/usr/local/bin:/usr/bin"})
    )
    assert closure.kept["usr/bin/env"] == Reason(Step.SCRIPT, "srv/run.sh", "/usr/../usr/bin/env")
    assert closure.kept["usr/local/bin/runner"] == Reason(Step.SCRIPT, "srv/run.sh", "env runner")
    assert "opt/app/lib/libfoo.so.1.0" not in closure.kept  # env's own $ORIGIN is /usr/bin


def test_extras_nss_gconv_and_globs(built: dict[str, Path]) -> None:
    tree = lib64_tree(built)
    tree.add_file("etc/nsswitch.conf", InlineBytes(b"passwd: files foo [NOTFOUND=return] bar\n"))
    tree.add_file("usr/lib64/libnss_foo.so.2", HostFile(str(built["libfoo"])))
    tree.add_file("usr/lib64/gconv/gconv-modules", InlineBytes(b"module X// Y// X 1\n"))
    tree.add_file("usr/lib64/gconv/UTF-16.so", HostFile(str(built["libfoo"])))
    tree.add_file("usr/lib64/gconv/EUC-JP.so", HostFile(str(built["libfoo"])))
    tree.add_file("usr/share/zoneinfo/UTC", InlineBytes(b"TZif"))
    extras = Extras(nss=True, gconv=("utf-16",), globs=("/usr/share/zoneinfo",))
    closure = compute_closure(tree, ["opt/app/bin/app"], extras=extras)
    assert closure.kept["usr/lib64/libnss_foo.so.2"].step is Step.NSS
    assert closure.kept["usr/lib64/gconv/UTF-16.so"].step is Step.GCONV
    assert "usr/lib64/gconv/EUC-JP.so" not in closure.kept
    assert closure.kept["usr/share/zoneinfo/UTC"].step is Step.EXTRA
    assert any("bar" in w for w in closure.warnings)  # glibc skips a missing module


def test_needed_loop_terminates(tmp_path: Path) -> None:
    """ld.so accepts mutual DT_NEEDED (each is loaded once), so the closure does too."""
    a = compile_c(
        tmp_path / "liba.so", "int a(void){return 0;}\n", "-Wl,-soname,liba.so", shared=True
    )
    b = compile_c(
        tmp_path / "libb.so", "int b(void){return 0;}\n", "-Wl,-soname,libb.so", shared=True
    )
    patchelf = require_tool("patchelf")
    subprocess.run([patchelf, "--add-needed", "libb.so", str(a)], check=True)
    subprocess.run([patchelf, "--add-needed", "liba.so", str(b)], check=True)
    tree = FileTree()
    tree.add_file("usr/lib64/liba.so", HostFile(str(a)))
    tree.add_file("usr/lib64/libb.so", HostFile(str(b)))
    closure = compute_closure(tree, ["usr/lib64/liba.so"])
    assert closure.paths() == ["usr/lib64/liba.so", "usr/lib64/libb.so"]


# -- errors -----------------------------------------------------------------------------------


def error_cases(built: dict[str, Path]) -> list[tuple[str, FileTree, str]]:
    missing_lib = lib64_tree(built)
    missing_lib.remove("opt/app/lib")
    missing_lib.remove("usr/lib64/libfoo.so.1")
    loop = lib64_tree(built)
    loop.add_symlink("opt/app/lib/libfoo.so.1", "libfoo.so.1")  # replaces the good link
    truncated = lib64_tree(built)
    data = built["libfoo"].read_bytes()[:200]
    truncated.add_file("opt/app/lib/libfoo.so.1.0", InlineBytes(data))
    no_start = lib64_tree(built)
    return [
        ("missing NEEDED", missing_lib, r"libfoo\.so\.1 needed by /opt/app/bin/app"),
        ("symlink loop", loop, r"symbolic links resolving /opt/app/lib/libfoo\.so\.1"),
        ("truncated ELF", truncated, r"malformed ELF file /opt/app/lib/libfoo\.so\.1\.0"),
        ("missing start", no_start, r"/opt/app/bin/nothing does not exist"),
    ]


def test_errors_name_the_offending_value(built: dict[str, Path]) -> None:
    for what, tree, message in error_cases(built):
        start = "/opt/app/bin/nothing" if what == "missing start" else "/opt/app/bin/app"
        with pytest.raises(ElfError, match=message):
            compute_closure(tree, [start])


def test_keep_going_records_the_chain(built: dict[str, Path]) -> None:
    tree = lib64_tree(built)
    tree.remove("opt/app/lib")
    tree.remove("usr/lib64/libfoo.so.1")
    closure = compute_closure(tree, ["opt/app/bin/app"], keep_going=True)
    assert [(m.name, m.chain) for m in closure.missing] == [("libfoo.so.1", ("opt/app/bin/app",))]
    assert "usr/lib64/libc.so.6" in closure.kept


# -- i686 Fedora packages -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def i686_root(rpm_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    rpm2cpio, cpio = require_tool("rpm2cpio"), require_tool("cpio")
    root = tmp_path_factory.mktemp("i686-root")
    for rpm in sorted(rpm_corpus.glob("*.fc14.i686.rpm")):
        payload = subprocess.run([rpm2cpio, str(rpm)], check=True, capture_output=True).stdout
        subprocess.run([cpio, "-idm", "--quiet"], input=payload, cwd=root, check=True)
    stubs = tmp_path_factory.mktemp("stubs")
    (root / "lib").mkdir(exist_ok=True)
    (root / "usr/lib").mkdir(parents=True, exist_ok=True)
    # 64-bit libraries with the very names the 32-bit programs need, first on their path...
    shutil.copy(HOST_LIBC, root / "lib/libc.so.6")
    shutil.copy("/lib/x86_64-linux-gnu/libz.so.1", root / "lib/libz.so.1")
    # ...and the 32-bit ones further down: only these may be chosen.
    for name in ("libc.so.6", "libz.so.1", "libncurses.so.5", "libtinfo.so.5"):
        shutil.copy(lib32(stubs / name, name), root / "usr/lib" / name)
    shutil.copy(lib32(stubs / "ld-linux.so.2", "ld-linux.so.2"), root / "lib/ld-linux.so.2")
    return root


def test_i686_programs_skip_64_bit_libraries(i686_root: Path) -> None:
    starts = ["/sbin/install-info", "/usr/bin/info", "/usr/bin/infokey", "/usr/bin/icedax"]
    closure = compute_closure(str(i686_root), starts)
    assert closure.kept["usr/lib/libz.so.1"] == Reason(
        Step.DEFAULT, "sbin/install-info", "libz.so.1"
    )
    assert closure.kept["usr/lib/libc.so.6"].step is Step.DEFAULT
    assert "lib/libc.so.6" not in closure.kept
    assert "lib/libz.so.1" not in closure.kept
    assert closure.kept["lib/ld-linux.so.2"].step is Step.INTERPRETER
    assert {"usr/lib/libncurses.so.5", "usr/lib/libtinfo.so.5"} <= set(closure.kept)


def test_i686_missing_libraries_are_named(i686_root: Path) -> None:
    with pytest.raises(ElfError, match=r"libimsettings\.so\.4 needed by /usr/bin/imsettings-info"):
        compute_closure(str(i686_root), ["/usr/bin/imsettings-info"])
    closure = compute_closure(str(i686_root), ["/usr/bin/imsettings-info"], keep_going=True)
    names = {m.name for m in closure.missing}
    assert "libglib-2.0.so.0" in names and "libc.so.6" not in names


def test_directory_root_reroots_absolute_links(built: dict[str, Path], tmp_path: Path) -> None:
    """An absolute link in a directory root names a path in that root, never on the host
    (the host has its own /usr/lib64 and /lib64; here they must not be read)."""
    root = tmp_path / "root"
    (root / "usr/lib64").mkdir(parents=True)
    (root / "opt/app/bin").mkdir(parents=True)
    (root / "opt/app/lib").mkdir(parents=True)
    (root / "lib64").symlink_to("/usr/lib64")
    shutil.copy(built["ldso"], root / "usr/lib64/ld-linux-x86-64.so.2")
    shutil.copy(HOST_LIBC, root / "usr/lib64/libc.so.6")
    shutil.copy(built["app"], root / "opt/app/bin/app")
    shutil.copy(built["libfoo"], root / "opt/app/lib/libfoo.so.1")
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/app").symlink_to("/opt/app/bin/app")
    closure = compute_closure(str(root), ["/usr/bin/app"])
    assert closure.paths() == [
        "lib64",
        "opt/app/bin/app",
        "opt/app/lib/libfoo.so.1",
        "usr/bin/app",
        "usr/lib64/ld-linux-x86-64.so.2",
        "usr/lib64/libc.so.6",
    ]
    (root / "opt/app/lib/libfoo.so.1").unlink()
    (root / "opt/app/lib/libfoo.so.1").symlink_to("/opt/app/lib/libfoo.so.1")
    with pytest.raises(ElfError, match="symbolic links"):
        compute_closure(str(root), ["/usr/bin/app"])


def test_hard_links_keep_their_first_name(built: dict[str, Path]) -> None:
    tree = lib64_tree(built)
    tree.add_file("opt/app/lib/a-first-name", HostFile(str(built["libfoo"])))
    tree.add_hardlink("opt/app/lib/libfoo.so.1.0", "opt/app/lib/a-first-name")
    closure = compute_closure(tree, ["opt/app/bin/app"])
    assert closure.kept["opt/app/lib/libfoo.so.1.0"].step is Step.RUNPATH
    assert closure.kept["opt/app/lib/a-first-name"] == Reason(
        Step.HARDLINK, "opt/app/lib/libfoo.so.1.0"
    )


def test_each_file_is_parsed_once(built: dict[str, Path]) -> None:
    cache = ElfCache()
    tree = lib64_tree(built)
    first = compute_closure(tree, ["opt/app/bin/app"], cache=cache)
    root = TreeRoot(tree)
    info = cache.info(root, "usr/lib64/libc.so.6")
    second = compute_closure(tree, ["opt/app/bin/app"], cache=cache)
    assert cache.info(root, "usr/lib64/libc.so.6") is info  # the same object: not re-read
    assert first.kept == second.kept


def test_ld_so_conf_that_includes_itself_ends(built: dict[str, Path]) -> None:
    tree = lib64_tree(built)
    tree.remove("opt/app/lib")
    tree.add_file("etc/ld.so.conf", InlineBytes(b"include /etc/ld.so.conf\ninclude /etc/*.conf\n"))
    tree.add_file("etc/more.conf", InlineBytes(b"include /etc/*.conf\n/opt/more\n"))
    tree.add_file("opt/more/libfoo.so.1", HostFile(str(built["libfoo"])))
    closure = compute_closure(tree, ["opt/app/bin/app"])
    assert closure.kept["opt/more/libfoo.so.1"].step is Step.LD_SO_CONF


def test_needed_with_a_slash_is_a_path(built: dict[str, Path], tmp_path: Path) -> None:
    app = tmp_path / "app"
    shutil.copy(built["app"], app)
    patchelf = require_tool("patchelf")
    subprocess.run(
        [patchelf, "--replace-needed", "libfoo.so.1", "$ORIGIN/../lib/libfoo.so.1", str(app)],
        check=True,
    )
    tree = lib64_tree(built)
    tree.add_file("opt/app/bin/app", HostFile(str(app)), 0o755)
    closure = compute_closure(tree, ["opt/app/bin/app"])
    assert closure.kept["opt/app/lib/libfoo.so.1.0"] == Reason(
        Step.NEEDED_PATH, "opt/app/bin/app", "$ORIGIN/../lib/libfoo.so.1"
    )


def test_static_program_is_kept_alone(tmp_path: Path) -> None:
    static = compile_c(tmp_path / "static", "int main(void){return 0;}\n", "-static")
    tree = FileTree()
    tree.add_file("usr/bin/static", HostFile(str(static)), 0o755)
    closure = compute_closure(tree, ["usr/bin/static"])
    assert closure.paths() == ["usr/bin/static"]


def test_interpreter_decides_defaults(built: dict[str, Path]) -> None:
    """Debian's ld.so was built to search /lib/x86_64-linux-gnu, /usr/lib/x86_64-linux-gnu,
    /lib and /usr/lib: with it as interpreter, a libc in /usr/lib64 is not found, exactly
    as the real loader fails in such a root."""
    tree = lib64_tree(built)
    tree.add_file("usr/lib64/ld-linux-x86-64.so.2", HostFile(str(HOST_LDSO)), 0o755)
    with pytest.raises(ElfError, match=r"libc\.so\.6 needed by /opt/app/bin/app"):
        compute_closure(tree, ["opt/app/bin/app"])
    tree.add_file("usr/lib/libc.so.6", HostFile(str(HOST_LIBC)), 0o755)
    closure = compute_closure(tree, ["opt/app/bin/app"])
    assert closure.kept["usr/lib/libc.so.6"].step is Step.DEFAULT


def debian_tree(built: dict[str, Path]) -> FileTree:
    tree = FileTree()
    tree.add_symlink("lib64", "usr/lib64")
    tree.add_symlink("lib", "usr/lib")
    tree.add_symlink("usr/lib64/ld-linux-x86-64.so.2", "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
    tree.add_file("usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", HostFile(str(HOST_LDSO)), 0o755)
    tree.add_file("usr/lib/x86_64-linux-gnu/libc.so.6", HostFile(str(HOST_LIBC)), 0o755)
    tree.add_file("opt/app/bin/app", HostFile(str(built["app"])), 0o755)
    tree.add_file("opt/app/lib/libfoo.so.1.0", HostFile(str(built["libfoo"])))
    tree.add_symlink("opt/app/lib/libfoo.so.1", "libfoo.so.1.0")
    tree.add_symlink("usr/bin/app", "/opt/app/bin/app")
    tree.add_file("usr/share/doc/unrelated", InlineBytes(b"not kept"))
    return tree


def test_the_kept_files_alone_run(built: dict[str, Path], tmp_path: Path) -> None:
    """The proof that matters: a root holding only the closure runs the program under the
    real loader (with /proc mounted, as in a container: $ORIGIN comes from /proc/self/exe)."""
    require_root()
    unshare = require_tool("unshare")
    tree = debian_tree(built)
    closure = compute_closure(tree, ["/usr/bin/app"])
    assert closure.kept["usr/lib/x86_64-linux-gnu/libc.so.6"].step is Step.DEFAULT
    assert "usr/share/doc/unrelated" not in closure.kept
    root = tmp_path / "root"
    for path in closure.paths():
        entry = tree.get(path)
        assert entry is not None
        dest = root / path
        dest.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(entry.content, HostFile):
            shutil.copy(entry.content.path, dest)
            dest.chmod(0o755)
        else:
            dest.symlink_to(entry.target)
    (root / "proc").mkdir()
    script = f"mount -t proc proc {root}/proc && exec chroot {root} /usr/bin/app"
    proc = subprocess.run([unshare, "-m", "sh", "-c", script], capture_output=True, check=False)
    assert proc.returncode == 0, proc.stderr
