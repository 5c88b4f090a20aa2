"""The architectures smith builds for, and every name each one goes by.

One architecture has many names: the RPM arch the solver matches, the ELF ABI (machine,
class, byte order) the loader matches, Debian's multiarch triplet ($LIB, default
directories), glibc's PT_INTERP, the kernel's AT_PLATFORM ($PLATFORM) and the OCI platform
of the image. They live in one table so that no module keeps its own partial copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from smith.errors import RecipeError
from smith.resolve.elf import Abi, ElfClass


class Arch(StrEnum):
    """RPM's names for the architectures (what a recipe's `arch` and `--arch` take)."""

    X86_64 = "x86_64"
    AARCH64 = "aarch64"
    I686 = "i686"
    ARMV7HL = "armv7hl"
    PPC64LE = "ppc64le"
    S390X = "s390x"


@dataclass(frozen=True)
class ArchInfo:
    arch: Arch
    abi: Abi
    triplet: str  # Debian's multiarch directory name: lib/<triplet>, usr/lib/<triplet>
    interpreters: tuple[str, ...]  # glibc's ld.so names (PT_INTERP), the usual one first
    platform: str  # AT_PLATFORM, what $PLATFORM expands to
    oci_architecture: str  # GOARCH, as in an OCI platform
    oci_variant: str = ""


def _abi(machine: str, elf_class: ElfClass, little_endian: bool = True) -> Abi:
    return Abi(elf_class, little_endian, machine)


ARCHES: dict[Arch, ArchInfo] = {
    info.arch: info
    for info in (
        ArchInfo(
            Arch.X86_64,
            _abi("EM_X86_64", ElfClass.ELF64),
            "x86_64-linux-gnu",
            ("/lib64/ld-linux-x86-64.so.2",),
            "x86_64",
            "amd64",
        ),
        ArchInfo(
            Arch.AARCH64,
            _abi("EM_AARCH64", ElfClass.ELF64),
            "aarch64-linux-gnu",
            ("/lib/ld-linux-aarch64.so.1",),
            "aarch64",
            "arm64",
            # The OCI image spec names arm64's only variant v8; registries and runtimes
            # match linux/arm64/v8 and linux/arm64 alike.
            "v8",
        ),
        ArchInfo(
            Arch.I686,
            _abi("EM_386", ElfClass.ELF32),
            "i386-linux-gnu",
            ("/lib/ld-linux.so.2",),
            "i686",
            "386",
        ),
        ArchInfo(
            Arch.ARMV7HL,
            _abi("EM_ARM", ElfClass.ELF32),
            "arm-linux-gnueabihf",
            # Hard-float glibc; ld-linux.so.3 is the soft-float (armel) loader.
            ("/lib/ld-linux-armhf.so.3", "/lib/ld-linux.so.3"),
            "v7l",
            "arm",
            "v7",
        ),
        ArchInfo(
            Arch.PPC64LE,
            _abi("EM_PPC64", ElfClass.ELF64),
            "powerpc64le-linux-gnu",
            ("/lib64/ld64.so.2",),
            "power9",
            "ppc64le",
        ),
        ArchInfo(
            Arch.S390X,
            _abi("EM_S390", ElfClass.ELF64, little_endian=False),
            "s390x-linux-gnu",
            ("/lib/ld64.so.1",),
            "z13",
            "s390x",
        ),
    )
}

# ABIs that glibc supports but smith does not build for: known to the loader (their
# triplets and platforms), not accepted as a recipe's arch.
OTHER_TRIPLETS: dict[Abi, str] = {
    _abi("EM_X86_64", ElfClass.ELF32): "x86_64-linux-gnux32",
    _abi("EM_PPC64", ElfClass.ELF64, little_endian=False): "powerpc64-linux-gnu",
    _abi("EM_RISCV", ElfClass.ELF64): "riscv64-linux-gnu",
}
OTHER_PLATFORMS: dict[str, str] = {"EM_RISCV": "riscv64"}

# `uname -m` names of machines whose RPM arch is spelled otherwise (what the host's default
# platform is read from).
MACHINE_ARCHES: dict[str, Arch] = {"i386": Arch.I686, "i586": Arch.I686, "armv7l": Arch.ARMV7HL}

_BY_ABI: dict[Abi, ArchInfo] = {info.abi: info for info in ARCHES.values()}


def arch_of_abi(abi: Abi) -> ArchInfo | None:
    return _BY_ABI.get(abi)


def triplet_of(abi: Abi) -> str:
    """Debian's multiarch triplet of an ABI, or "" if it has none."""
    info = _BY_ABI.get(abi)
    return info.triplet if info is not None else OTHER_TRIPLETS.get(abi, "")


def platform_of(machine: str) -> str:
    """AT_PLATFORM as the kernel reports it for a process of this machine ($PLATFORM)."""
    for info in ARCHES.values():
        if info.abi.machine == machine:
            return info.platform
    return OTHER_PLATFORMS.get(machine, "")


def oci_platform_of(name: str) -> tuple[str, str]:
    """(OCI architecture, variant) of an RPM arch or a `uname -m` machine name; a name smith
    does not build for (riscv64) is taken as its own OCI architecture, as Go names it."""
    arch = MACHINE_ARCHES.get(name)
    if arch is None and name in Arch._value2member_map_:
        arch = Arch(name)
    if arch is None:
        return name, ""
    return ARCHES[arch].oci_architecture, ARCHES[arch].oci_variant


def check_arch(value: str) -> Arch:
    """An architecture's name as an Arch; ValueError names an unknown one."""
    try:
        return Arch(value)
    except ValueError:
        known = ", ".join(a.value for a in Arch)
        raise ValueError(f"unknown architecture {value!r} (known: {known})") from None


def parse_arch(value: str) -> Arch:
    """A command line's architecture; RecipeError names an unknown one."""
    try:
        return check_arch(value)
    except ValueError as err:
        raise RecipeError(str(err)) from None


def describe_abi(abi: Abi) -> str:
    """An ABI for a message: its architecture's name where smith knows it."""
    info = _BY_ABI.get(abi)
    if info is not None:
        return info.arch.value
    order = "little" if abi.little_endian else "big"
    return f"{abi.machine} {abi.elf_class.value}-bit {order}-endian"
