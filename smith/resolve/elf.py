"""Read what the dynamic loader reads from one ELF file, and nothing more.

pyelftools parses the ELF header and the program headers (it knows every class, byte order
and machine); the dynamic table and its string table are then read in one block each with
`struct`, because that is where a large closure spends its time and where a malformed file
hides its absurd counts. Every bound is checked against the file's size before anything is
read, so a hostile file ends in ElfError, never in a traceback, a huge allocation or a hang.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import BinaryIO

from elftools.common.exceptions import ELFError as PyElfError
from elftools.elf.elffile import ELFFile

from smith.errors import ElfError

ELF_MAGIC = b"\x7fELF"

# The dynamic tags the loader acts on (elf.h). Values, not pyelftools' names, because the
# table is read with struct.
DT_NULL = 0
DT_NEEDED = 1
DT_STRTAB = 5
DT_STRSZ = 10
DT_SONAME = 14
DT_RPATH = 15
DT_RUNPATH = 29
DT_FLAGS_1 = 0x6FFFFFFB
DF_1_NODEFLIB = 0x800

# A real dynamic table has a few dozen entries and a string table of some kilobytes; these
# caps only exist so that a forged size cannot make us read or loop without end.
MAX_DYNAMIC_BYTES = 1 << 20
MAX_STRTAB_BYTES = 64 << 20


class ElfClass(IntEnum):
    ELF32 = 32
    ELF64 = 64


@dataclass(frozen=True)
class Abi:
    """What must match between an object and a library it loads (as ld.so's open_verify)."""

    elf_class: ElfClass
    little_endian: bool
    machine: str  # pyelftools' name, e.g. "EM_X86_64"; unknown machines keep their number


@dataclass(frozen=True)
class ElfInfo:
    """The loader-relevant facts of one ELF file.

    `rpath` and `runpath` are the colon-separated lists exactly as written (unexpanded:
    $ORIGIN depends on where the file is found, not on its bytes). As in glibc's
    get_dynamic_info, an object with DT_RUNPATH has its DT_RPATH ignored: `rpath` is then
    empty.
    """

    abi: Abi
    elf_type: str
    interpreter: str
    needed: tuple[str, ...]
    rpath: tuple[str, ...]
    runpath: tuple[str, ...]
    soname: str
    nodeflib: bool
    dynamic: bool  # has a PT_DYNAMIC segment


def is_elf(head: bytes) -> bool:
    return head[:4] == ELF_MAGIC


def parse_elf(stream: BinaryIO, name: str) -> ElfInfo:
    """Parse an ELF file; `name` is only used in error messages. Raises ElfError."""
    try:
        return _parse(stream, name)
    except ElfError:
        raise
    # pyelftools and construct signal malformed input with a variety of exceptions; they all
    # mean the same thing here: the bytes are not a loadable ELF file.
    except (
        PyElfError,
        struct.error,
        ValueError,
        IndexError,
        KeyError,
        TypeError,
        AssertionError,
        OverflowError,
        EOFError,
        UnicodeDecodeError,
        RecursionError,
    ) as err:
        raise ElfError(f"malformed ELF file {name}: {err or type(err).__name__}") from None
    except Exception as err:  # construct's own StreamError/ConstructError family
        if type(err).__module__.startswith(("elftools.construct", "construct")):
            raise ElfError(f"malformed ELF file {name}: {err}") from None
        raise


def _parse(stream: BinaryIO, name: str) -> ElfInfo:
    elf = ELFFile(stream)
    size = elf.stream_len
    header = elf.header
    abi = Abi(ElfClass(elf.elfclass), bool(elf.little_endian), str(header["e_machine"]))

    phoff, phnum, phentsize = header["e_phoff"], header["e_phnum"], header["e_phentsize"]
    if phnum and phentsize != elf.structs.Elf_Phdr.sizeof():
        raise ElfError(f"malformed ELF file {name}: program header size {phentsize}")
    if phoff + phnum * phentsize > size:
        raise ElfError(f"malformed ELF file {name}: {phnum} program headers exceed the file")

    interpreter = ""
    dynamic: tuple[int, int] | None = None
    loads: list[tuple[int, int, int]] = []  # (vaddr, filesz, offset)
    for index in range(phnum):
        ph = elf._get_segment_header(index)
        kind = ph["p_type"]
        if kind == "PT_LOAD":
            loads.append((ph["p_vaddr"], ph["p_filesz"], ph["p_offset"]))
        elif kind == "PT_INTERP":
            interpreter = _read_cstring_at(stream, size, ph["p_offset"], ph["p_filesz"], name)
        elif kind == "PT_DYNAMIC" and dynamic is None:
            dynamic = (ph["p_offset"], ph["p_filesz"])

    tags: list[tuple[int, int]] = []
    if dynamic is not None:
        tags = _read_dynamic(stream, size, dynamic, elf, name)

    strtab = b""
    if any(tag in (DT_NEEDED, DT_SONAME, DT_RPATH, DT_RUNPATH) for tag, _ in tags):
        strtab = _read_strtab(stream, size, tags, loads, name)

    def string(offset: int) -> str:
        if offset >= len(strtab):
            raise ElfError(f"malformed ELF file {name}: string offset {offset} out of range")
        end = strtab.find(b"\0", offset)
        raw = strtab[offset:] if end < 0 else strtab[offset:end]
        # Names are bytes to the loader; keep undecodable ones exactly, as paths are kept.
        return raw.decode("utf-8", "surrogateescape")

    needed: list[str] = []
    rpath: list[str] = []
    runpath: list[str] = []
    soname = ""
    flags_1 = 0
    for tag, value in tags:
        if tag == DT_NEEDED:
            needed.append(string(value))
        elif tag == DT_RPATH:
            rpath.append(string(value))
        elif tag == DT_RUNPATH:
            runpath.append(string(value))
        elif tag == DT_SONAME:
            soname = string(value)
        elif tag == DT_FLAGS_1:
            flags_1 = value
    return ElfInfo(
        abi=abi,
        elf_type=str(header["e_type"]),
        interpreter=interpreter,
        needed=tuple(needed),
        rpath=() if runpath else tuple(rpath),
        runpath=tuple(runpath),
        soname=soname,
        nodeflib=bool(flags_1 & DF_1_NODEFLIB),
        dynamic=dynamic is not None,
    )


def _read_exact(stream: BinaryIO, size: int, offset: int, length: int, what: str) -> bytes:
    if offset < 0 or length < 0 or offset + length > size:
        raise ElfError(f"{what} lies outside the file ({offset}+{length} > {size} bytes)")
    stream.seek(offset)
    data = stream.read(length)
    if len(data) != length:
        raise ElfError(f"{what} is truncated")
    return data


def _read_cstring_at(stream: BinaryIO, size: int, offset: int, length: int, name: str) -> str:
    length = min(length, 4096)  # PATH_MAX: a longer interpreter name cannot be opened anyway
    data = _read_exact(stream, size, offset, length, f"malformed ELF file {name}: PT_INTERP")
    return data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _read_dynamic(
    stream: BinaryIO, size: int, segment: tuple[int, int], elf: ELFFile, name: str
) -> list[tuple[int, int]]:
    offset, length = segment
    length = min(length, MAX_DYNAMIC_BYTES)
    data = _read_exact(stream, size, offset, length, f"malformed ELF file {name}: PT_DYNAMIC")
    order = "<" if elf.little_endian else ">"
    fmt = order + ("qQ" if elf.elfclass == 64 else "iI")
    entry = struct.calcsize(fmt)
    tags: list[tuple[int, int]] = []
    for tag, value in struct.iter_unpack(fmt, data[: len(data) - len(data) % entry]):
        if tag == DT_NULL:
            break
        tags.append((tag, value))
    return tags


def _read_strtab(
    stream: BinaryIO,
    size: int,
    tags: list[tuple[int, int]],
    loads: list[tuple[int, int, int]],
    name: str,
) -> bytes:
    """The dynamic string table, found as ld.so finds it: DT_STRTAB through the PT_LOADs."""
    addresses = [value for tag, value in tags if tag == DT_STRTAB]
    lengths = [value for tag, value in tags if tag == DT_STRSZ]
    if not addresses:
        raise ElfError(f"malformed ELF file {name}: dynamic section has no DT_STRTAB")
    address = addresses[0]
    for vaddr, filesz, offset in loads:
        if vaddr <= address < vaddr + filesz:
            file_offset = offset + (address - vaddr)
            available = vaddr + filesz - address
            break
    else:
        raise ElfError(f"malformed ELF file {name}: DT_STRTAB {address:#x} is in no PT_LOAD")
    length = min(lengths[0] if lengths else available, available, MAX_STRTAB_BYTES)
    what = f"malformed ELF file {name}: dynamic string table"
    return _read_exact(stream, size, file_offset, length, what)
