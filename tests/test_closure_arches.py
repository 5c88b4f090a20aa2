"""The closure on every architecture smith knows: a table of ELF headers per architecture,
and a root of Debian's real arm64 packages (apt-get download PKG:arm64) next to the host's
x86_64 files, where neither may ever load a library of the other; what the closure keeps
for the aarch64 program runs under qemu-aarch64-static."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import pytest

from smith.arch import (
    ARCHES,
    Arch,
    arch_of_abi,
    describe_abi,
    oci_platform_of,
    parse_arch,
    triplet_of,
)
from smith.errors import ElfError, RecipeError
from smith.oci import image
from smith.resolve import elf
from smith.resolve.dependencies import compute_closure
from smith.resolve.elf import parse_elf
from smith.resolve.loader import Step, default_dirs, interpreter_system_dirs
from tests.rpm_universe import debian_package
from tests.test_elf_reader import craft
from tests.tools import require_tool

MACHINE_NUMBERS = {name: number for number, name in elf.MACHINES.items()}
HOST_LIBC = Path("/lib/x86_64-linux-gnu/libc.so.6")
ARM64_PACKAGES = ("libc6", "libgcc-s1", "zlib1g", "coreutils", "busybox-static")

# (arch, e_machine, ELF class, little-endian, triplet, the usual PT_INTERP, OCI platform)
TABLE = [
    (Arch.X86_64, 62, 64, True, "x86_64-linux-gnu", "/lib64/ld-linux-x86-64.so.2", "amd64"),
    (Arch.AARCH64, 183, 64, True, "aarch64-linux-gnu", "/lib/ld-linux-aarch64.so.1", "arm64/v8"),
    (Arch.I686, 3, 32, True, "i386-linux-gnu", "/lib/ld-linux.so.2", "386"),
    (Arch.ARMV7HL, 40, 32, True, "arm-linux-gnueabihf", "/lib/ld-linux-armhf.so.3", "arm/v7"),
    (Arch.PPC64LE, 21, 64, True, "powerpc64le-linux-gnu", "/lib64/ld64.so.2", "ppc64le"),
    (Arch.S390X, 22, 64, False, "s390x-linux-gnu", "/lib/ld64.so.1", "s390x"),
]


@pytest.mark.parametrize(("arch", "machine", "bits", "little", "triplet", "interp", "oci"), TABLE)
def test_each_architecture_by_its_elf_header(
    arch: Arch, machine: int, bits: int, little: bool, triplet: str, interp: str, oci: str
) -> None:
    info = parse_elf(io.BytesIO(craft(bits == 64, little, machine=machine)), "/t")
    known = arch_of_abi(info.abi)
    assert known is not None and known.arch is arch
    assert MACHINE_NUMBERS[known.abi.machine] == machine
    assert triplet_of(info.abi) == triplet
    assert known.interpreters[0] == interp
    assert "/".join(p for p in (known.oci_architecture, known.oci_variant) if p) == oci
    assert "/".join(p for p in oci_platform_of(arch.value) if p) == oci
    dirs = default_dirs(info.abi)
    assert dirs[:2] == (f"lib/{triplet}", f"usr/lib/{triplet}")
    assert ("lib64" in dirs) is (bits == 64)


def test_the_table_is_complete() -> None:
    assert sorted(ARCHES) == sorted(Arch) == sorted(row[0] for row in TABLE)


def test_other_endianness_is_another_abi() -> None:
    """Big-endian ppc64 is not ppc64le: neither the architecture nor its directories."""
    info = parse_elf(io.BytesIO(craft(True, False, machine=21)), "/t")
    assert arch_of_abi(info.abi) is None
    assert triplet_of(info.abi) == "powerpc64-linux-gnu"
    assert describe_abi(info.abi) == "EM_PPC64 64-bit big-endian"


@pytest.mark.parametrize(
    ("machine", "platform"),
    [("i386", ("386", "")), ("armv7l", ("arm", "v7")), ("riscv64", ("riscv64", ""))],
)
def test_machine_names_have_oci_platforms(machine: str, platform: tuple[str, str]) -> None:
    """`uname -m` names (the host's default platform) go through the same table; a machine
    smith does not build for is its own OCI architecture."""
    assert oci_platform_of(machine) == platform


def test_the_host_default_asks_for_arm64_without_its_variant(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """arm64's one variant (v8) is often left out of an index: the host default, which
    must match such an index too, leaves it out; arm's v7 stays."""
    for machine, want in (("aarch64", "linux/arm64"), ("armv7l", "linux/arm/v7")):
        monkeypatch.setattr(image.host_platform, "machine", lambda m=machine: m)
        assert str(image.host_platform_default()) == want


@pytest.mark.parametrize("value", ["arm64", "amd64", "x86-64", "", "AARCH64"])
def test_unknown_architectures_are_named(value: str) -> None:
    with pytest.raises(RecipeError, match=f"unknown architecture '{value}'"):
        parse_arch(value)


# -- Debian's arm64 packages ------------------------------------------------------------------


@pytest.fixture(scope="module")
def mixed_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Debian's arm64 glibc, zlib and coreutils as they unpack, plus the host's x86_64 cat,
    libc and ld.so; an ld.so.conf lists a directory of x86_64 libraries with the arm64
    programs' names first, so only the ABI check keeps the aarch64 program from them."""
    require_tool("dpkg-deb")
    root = tmp_path_factory.mktemp("mixed-root")
    for package in ARM64_PACKAGES:
        _, unpacked = debian_package(package, "arm64")
        shutil.copytree(unpacked, root, symlinks=True, dirs_exist_ok=True)
    (root / "opt/x86").mkdir(parents=True)
    shutil.copy(HOST_LIBC, root / "opt/x86/libc.so.6")
    (root / "lib/x86_64-linux-gnu").mkdir(parents=True)
    shutil.copy(HOST_LIBC, root / "lib/x86_64-linux-gnu/libc.so.6")
    (root / "lib64").mkdir()
    shutil.copy("/lib64/ld-linux-x86-64.so.2", root / "lib64/ld-linux-x86-64.so.2")
    shutil.copy("/usr/bin/cat", root / "opt/x86/cat")
    (root / "etc/ld.so.conf").write_text("/opt/x86\ninclude /etc/ld.so.conf.d/*.conf\n")
    return root


def test_aarch64_program_loads_only_aarch64_libraries(mixed_root: Path) -> None:
    closure = compute_closure(str(mixed_root), ["/bin/cat", "/opt/x86/cat"])
    kept = closure.kept
    assert kept["lib/aarch64-linux-gnu/libc.so.6"].by == "bin/cat"
    assert kept["lib/aarch64-linux-gnu/libc.so.6"].step is Step.LD_SO_CONF
    assert kept["lib/aarch64-linux-gnu/ld-linux-aarch64.so.1"].step is Step.INTERPRETER
    # The x86_64 program finds its libc first on the ld.so.conf path, the arm64 one never.
    assert kept["opt/x86/libc.so.6"].by == "opt/x86/cat"
    assert "lib/x86_64-linux-gnu/libc.so.6" not in kept
    for path, reason in kept.items():
        if reason.by == "bin/cat" and path.endswith(".so.6"):
            assert "aarch64" in path, path


def test_aarch64_interpreter_brings_its_own_defaults(mixed_root: Path) -> None:
    """Debian's arm64 ld.so is built with its own system directories: read from its bytes."""
    ldso = (mixed_root / "lib/aarch64-linux-gnu/ld-linux-aarch64.so.1").read_bytes()
    info = parse_elf(io.BytesIO(ldso), "ld.so")
    dirs = interpreter_system_dirs(ldso, info.abi)
    assert dirs == ("lib/aarch64-linux-gnu", "usr/lib/aarch64-linux-gnu", "lib", "usr/lib")
    # Without ld.so.conf, libc is found through them (not the loader's generic table).
    (mixed_root / "etc/ld.so.conf").rename(mixed_root / "etc/ld.so.conf.off")
    try:
        closure = compute_closure(str(mixed_root), ["/bin/cat"])
    finally:
        (mixed_root / "etc/ld.so.conf.off").rename(mixed_root / "etc/ld.so.conf")
    assert closure.kept["lib/aarch64-linux-gnu/libc.so.6"].step is Step.DEFAULT


def test_interpreter_of_another_machine_is_refused(mixed_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(mixed_root, root, symlinks=True)
    # The arm64 program's PT_INTERP now names the host's x86_64 ld.so.
    target = root / "lib/aarch64-linux-gnu/ld-linux-aarch64.so.1"
    target.unlink()
    shutil.copy("/lib64/ld-linux-x86-64.so.2", target)
    with pytest.raises(
        ElfError,
        match=r"interpreter /lib/ld-linux-aarch64\.so\.1 of /bin/cat "
        r"is x86_64, the program aarch64",
    ):
        compute_closure(str(root), ["/bin/cat"])


def test_kept_aarch64_files_run_under_qemu(mixed_root: Path, tmp_path: Path) -> None:
    qemu = require_tool("qemu-aarch64-static")
    closure = compute_closure(str(mixed_root), ["/bin/cat"])
    root = tmp_path / "kept"
    for path in sorted(closure.kept):
        source, dest = mixed_root / path, root / path
        dest.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            dest.symlink_to(source.readlink())
        elif source.is_file():
            shutil.copy2(source, dest)
    (tmp_path / "greeting").write_text("hello from aarch64\n")
    assert not (root / "opt").exists()
    out = subprocess.run(
        [qemu, "-L", str(root), str(root / "bin/cat"), str(tmp_path / "greeting")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout == "hello from aarch64\n"
