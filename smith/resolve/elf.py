"""Read what the dynamic loader reads from one ELF file, and nothing more.

The ELF header, the program headers, the dynamic table and its string table are read with
`struct`, one block each: a closure over a whole /usr reads thousands of files, and
pyelftools' ELFFile costs ~20x more per file than the loader's own reading (it decodes every
field with construct and reads the section headers ld.so never looks at). A header this
reader does not know (another ELF version, a machine outside MACHINES, PN_XNUM program
headers) is handed to pyelftools, which knows every class, byte order and machine. Every
bound is checked against the file's size before anything is read, so a hostile file ends in
ElfError, never in a traceback, a huge allocation or a hang.
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, BinaryIO, NamedTuple

from smith.errors import ElfError

if TYPE_CHECKING:
    from elftools.elf.elffile import ELFFile

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

PT_LOAD = 1
PT_DYNAMIC = 2
PT_INTERP = 3
LOADER_SEGMENTS = frozenset((PT_LOAD, PT_DYNAMIC, PT_INTERP))
PN_XNUM = 0xFFFF  # the real count is in section 0: left to pyelftools

# e_machine numbers and the names pyelftools gives them (its ENUM_E_MACHINE; a test checks
# that both readers agree). Names, because Abi and the loader tables use them.
MACHINES = {
    2: "EM_SPARC",
    3: "EM_386",
    8: "EM_MIPS",
    20: "EM_PPC",
    21: "EM_PPC64",
    22: "EM_S390",
    40: "EM_ARM",
    43: "EM_SPARCV9",
    50: "EM_IA_64",
    62: "EM_X86_64",
    183: "EM_AARCH64",
    243: "EM_RISCV",
}
ELF_TYPES = {0: "ET_NONE", 1: "ET_REL", 2: "ET_EXEC", 3: "ET_DYN", 4: "ET_CORE"}

# After e_ident: e_type, e_machine, e_version, e_entry, e_phoff, e_shoff, e_flags, e_ehsize,
# e_phentsize, e_phnum (the section header fields that follow are not needed), and the
# program header fields in file order, per (EI_CLASS, EI_DATA).
EI_NIDENT = 16
EHDR = {
    (c, d): struct.Struct(o + f)
    for c, f in ((1, "HHIIIIIHHH"), (2, "HHIQQQIHHH"))
    for d, o in ((1, "<"), (2, ">"))
}
PHDR = {  # the eight fields of Elf32_Phdr or Elf64_Phdr (their orders differ)
    (c, d): struct.Struct(o + f)
    for c, f in ((1, "IIIIIIII"), (2, "IIQQQQQQ"))
    for d, o in ((1, "<"), (2, ">"))
}
DYN = {  # Elf32_Dyn or Elf64_Dyn (d_tag signed, d_val unsigned), by (64-bit, little-endian)
    (elf64, little): struct.Struct(("<" if little else ">") + ("qQ" if elf64 else "iI"))
    for elf64 in (False, True)
    for little in (False, True)
}
STRING_TAGS = frozenset((DT_NEEDED, DT_SONAME, DT_RPATH, DT_RUNPATH))
LOADER_TAGS = STRING_TAGS | {DT_NULL, DT_STRTAB, DT_STRSZ, DT_FLAGS_1}

# A real dynamic table has a few dozen entries and a string table of some kilobytes; these
# caps only exist so that a forged size cannot make us read or loop without end.
MAX_DYNAMIC_BYTES = 1 << 20
MAX_STRTAB_BYTES = 64 << 20
# Read past the last loader string of a dynamic string table, for its end (a SONAME or a
# DT_NEEDED name is a few dozen bytes; a longer string, such as a long RPATH, reads the rest).
STRING_SPAN_SLACK = 256
# Read at once from the start of the file: the ELF header and a dozen program headers take
# under 1 KiB; a page is what one read costs anyway.
PREFIX_BYTES = 4096


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
    # Where the dynamic string table lies in the file, (offset, length) as bounded when it
    # was read; (-1, 0) when it was not (no string the loader reads). The libgcc_s rule
    # reads it again alone, to learn in one read that a file imports neither unwinder.
    strtab_span: tuple[int, int] = (-1, 0)


class ElfHeader(NamedTuple):
    """The ELF header fields the loader uses, from either reader (a NamedTuple, not a
    frozen dataclass: made once per file read, and it is a third of the cost to make)."""

    abi: Abi
    elf_type: str
    # (p_type, p_offset, p_vaddr, p_filesz) of the LOADER_SEGMENTS, in file order
    segments: tuple[tuple[int, int, int, int], ...]


def is_elf(head: bytes) -> bool:
    return head[:4] == ELF_MAGIC


def parse_elf(stream: BinaryIO, name: str, prefix: bytes = b"") -> ElfInfo:
    """Parse an ELF file; `name` is only used in error messages. Raises ElfError.

    `prefix`: the file's first bytes when the caller has read them already.
    """
    try:
        return _parse(stream, name, prefix)
    except ElfError:
        raise
    # pyelftools and construct signal malformed input with a variety of exceptions; they all
    # mean the same thing here: the bytes are not a loadable ELF file.
    except (
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
    except Exception as err:  # pyelftools' ELFError, construct's StreamError/ConstructError
        if type(err).__module__.startswith(("elftools", "construct")):
            raise ElfError(f"malformed ELF file {name}: {err}") from None
        raise


class _Source:
    """The file being parsed: its size, and its first bytes, which hold the ELF header, the
    program headers and usually PT_INTERP (one read instead of one per table)."""

    __slots__ = ("fd", "prefix", "size", "stream")

    def __init__(self, stream: BinaryIO, prefix: bytes = b"") -> None:
        self.size = stream.seek(0, io.SEEK_END)
        if not prefix:
            stream.seek(0)
            prefix = stream.read(PREFIX_BYTES)
        self.prefix = prefix
        self.stream = stream
        # A host file is read with pread: one call per table instead of a seek and a read.
        self.fd = stream.fileno() if isinstance(stream, io.FileIO) else -1

    def check(self, offset: int, length: int, what: str, name: str) -> None:
        """Raise ElfError unless `length` bytes at `offset` lie in the file; `what` they are
        and the file's `name` only make the message (formatted then, not on every read)."""
        if offset < 0 or length < 0 or offset + length > self.size:
            raise ElfError(
                f"malformed ELF file {name}: {what} lies outside the file "
                f"({offset}+{length} > {self.size} bytes)"
            )

    def read(self, offset: int, length: int, what: str, name: str) -> bytes:
        """`length` bytes at `offset` (checked first, see check)."""
        self.check(offset, length, what, name)
        end = offset + length
        if end <= len(self.prefix):
            return self.prefix[offset:end]
        if self.fd >= 0:
            data = os.pread(self.fd, length, offset)
        else:
            self.stream.seek(offset)
            data = self.stream.read(length)
        if len(data) != length:
            raise ElfError(f"malformed ELF file {name}: {what} is truncated")
        return data


def _parse(stream: BinaryIO, name: str, prefix: bytes) -> ElfInfo:
    src = _Source(stream, prefix)
    header = _read_header(src, name) or _read_header_pyelftools(stream, name, src)

    interpreter = ""
    dynamic: tuple[int, int] | None = None
    loads: list[tuple[int, int, int]] = []  # (vaddr, filesz, offset)
    for kind, offset, vaddr, filesz in header.segments:
        if kind == PT_LOAD:
            loads.append((vaddr, filesz, offset))
        elif kind == PT_INTERP:
            interpreter = _read_cstring_at(src, offset, filesz, name)
        elif kind == PT_DYNAMIC and dynamic is None:
            dynamic = (offset, filesz)

    # One pass over the dynamic table (up to DT_NULL, as ld.so): the string tags in order,
    # the first DT_STRTAB and DT_STRSZ, the last DT_FLAGS_1.
    strings: list[tuple[int, int]] = []
    strtab_address = strtab_size = -1
    flags_1 = 0
    if dynamic is not None:
        # The entries of the tags read here, picked in one comprehension: a table has a
        # few dozen entries (and DT_NULL padding), of which a handful matter.
        table = _read_dynamic(src, dynamic, header.abi, name)
        for tag, value in [entry for entry in table if entry[0] in LOADER_TAGS]:
            if tag == DT_NULL:
                break
            if tag in STRING_TAGS:
                strings.append((tag, value))
            elif tag == DT_STRTAB:
                if strtab_address < 0:
                    strtab_address = value
            elif tag == DT_STRSZ:
                if strtab_size < 0:
                    strtab_size = value
            elif tag == DT_FLAGS_1:
                flags_1 = value

    needed: list[str] = []
    rpath: list[str] = []
    runpath: list[str] = []
    soname = ""
    strtab_span = (-1, 0)
    if strings:
        strtab_span = _locate_strtab(src, strtab_address, strtab_size, loads, name)
        offsets = [offset for _, offset in strings]
        raws = _read_strings(src, strtab_span, offsets, name)
        for (tag, _), raw in zip(strings, raws, strict=True):
            # Names are bytes to the loader; keep undecodable ones exactly, as paths are.
            text = raw.decode("utf-8", "surrogateescape")
            if tag == DT_NEEDED:
                needed.append(text)
            elif tag == DT_RPATH:
                rpath.append(text)
            elif tag == DT_RUNPATH:
                runpath.append(text)
            else:
                soname = text
    return ElfInfo(
        abi=header.abi,
        elf_type=header.elf_type,
        interpreter=interpreter,
        needed=tuple(needed),
        rpath=() if runpath else tuple(rpath),
        runpath=tuple(runpath),
        soname=soname,
        nodeflib=bool(flags_1 & DF_1_NODEFLIB),
        dynamic=dynamic is not None,
        strtab_span=strtab_span,
    )


def _read_header(src: _Source, name: str) -> ElfHeader | None:
    """The header with struct, or None when it is one for pyelftools (see the docstring)."""
    ident = src.prefix[:EI_NIDENT]
    layout = EHDR.get((ident[4], ident[5])) if len(ident) == EI_NIDENT else None
    if layout is None or ident[6] != 1:  # EI_VERSION: only EV_CURRENT exists
        return None
    if len(src.prefix) < EI_NIDENT + layout.size:
        return None  # truncated: pyelftools says what is missing
    fields = layout.unpack_from(src.prefix, EI_NIDENT)
    elf_type, machine, version, _, phoff, _, _, ehsize, phentsize, phnum = fields
    if machine not in MACHINES or elf_type not in ELF_TYPES or version != 1 or phnum == PN_XNUM:
        return None
    check_header_size(name, ident[4] == 2, ehsize)
    phdr = PHDR[ident[4], ident[5]]
    data = _read_phdrs(src, name, phoff, phnum, phentsize, phdr.size)
    elf64 = ident[4] == 2
    # The segments _parse reads, picked in one comprehension (a program has a dozen).
    if elf64:
        segments = [
            (kind, offset, vaddr, filesz)
            for kind, _, offset, vaddr, _, filesz, _, _ in phdr.iter_unpack(data)
            if kind in LOADER_SEGMENTS
        ]
    else:
        segments = [
            (kind, offset, vaddr, filesz)
            for kind, offset, vaddr, _, filesz, _, _, _ in phdr.iter_unpack(data)
            if kind in LOADER_SEGMENTS
        ]
    abi = _abi(ElfClass.ELF64 if elf64 else ElfClass.ELF32, ident[5] == 1, MACHINES[machine])
    return ElfHeader(abi, ELF_TYPES[elf_type], tuple(segments))


_ABIS: dict[tuple[ElfClass, bool, str], Abi] = {}


def _abi(elf_class: ElfClass, little_endian: bool, machine: str) -> Abi:
    # One object per ABI: thousands of files share two or three.
    key = (elf_class, little_endian, machine)
    abi = _ABIS.get(key)
    if abi is None:
        abi = _ABIS[key] = Abi(elf_class, little_endian, machine)
    return abi


def _read_header_pyelftools(stream: BinaryIO, name: str, src: _Source) -> ElfHeader:
    """The header of any ELF file pyelftools knows: slower, but every machine and oddity."""
    from elftools.elf.elffile import ELFFile  # only for the unusual: see the docstring

    elf = ELFFile(stream)
    header = elf.header
    abi = Abi(ElfClass(elf.elfclass), bool(elf.little_endian), str(header["e_machine"]))
    check_header_size(name, elf.elfclass == 64, header["e_ehsize"])
    phoff, phnum, phentsize = header["e_phoff"], header["e_phnum"], header["e_phentsize"]
    _read_phdrs(src, name, phoff, phnum, phentsize, _phdr_size(elf))
    kinds = {"PT_LOAD": PT_LOAD, "PT_DYNAMIC": PT_DYNAMIC, "PT_INTERP": PT_INTERP}
    segments = []
    for index in range(phnum):
        ph = elf._get_segment_header(index)
        kind = kinds.get(ph["p_type"], 0)
        if kind:
            segments.append((kind, ph["p_offset"], ph["p_vaddr"], ph["p_filesz"]))
    return ElfHeader(abi, str(header["e_type"]), tuple(segments))


def check_header_size(name: str, elf64: bool, ehsize: int) -> None:
    """e_ehsize is the header's own size, 52 or 64 bytes by its class: any other value is a
    header of one class over a file of the other (its offsets would be read at the wrong
    places and a 64-bit program pass for a 32-bit one that needs nothing)."""
    size = 64 if elf64 else 52
    if ehsize != size:
        bits = 64 if elf64 else 32
        raise ElfError(
            f"malformed ELF file {name}: a {bits}-bit header of {ehsize} bytes, not {size}"
        )


def _phdr_size(elf: ELFFile) -> int:
    return int(elf.structs.Elf_Phdr.sizeof())


def _read_phdrs(
    src: _Source, name: str, phoff: int, phnum: int, phentsize: int, entry: int
) -> bytes:
    """The program header table, after the checks that a forged count cannot pass."""
    if phnum and phentsize != entry:
        raise ElfError(f"malformed ELF file {name}: program header size {phentsize}")
    if phoff + phnum * phentsize > src.size:
        raise ElfError(f"malformed ELF file {name}: {phnum} program headers exceed the file")
    return src.read(phoff, phnum * entry, "program headers", name)


def _read_cstring_at(src: _Source, offset: int, length: int, name: str) -> str:
    length = min(length, 4096)  # PATH_MAX: a longer interpreter name cannot be opened anyway
    data = src.read(offset, length, "PT_INTERP", name)
    return data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _read_dynamic(
    src: _Source, segment: tuple[int, int], abi: Abi, name: str
) -> Iterator[tuple[int, int]]:
    """The dynamic table's (d_tag, d_val) entries, DT_NULL and what follows it included."""
    offset, length = segment
    length = min(length, MAX_DYNAMIC_BYTES)
    data = src.read(offset, length, "PT_DYNAMIC", name)
    layout = DYN[abi.elf_class is ElfClass.ELF64, abi.little_endian]
    return layout.iter_unpack(data[: len(data) - len(data) % layout.size])


def _locate_strtab(
    src: _Source, address: int, size: int, loads: list[tuple[int, int, int]], name: str
) -> tuple[int, int]:
    """The file offset and length of the dynamic string table, found as ld.so finds it:
    DT_STRTAB (`address`, -1 when absent) through the PT_LOADs; `size` is DT_STRSZ or -1.
    The whole table must lie in the file."""
    if address < 0:
        raise ElfError(f"malformed ELF file {name}: dynamic section has no DT_STRTAB")
    for vaddr, filesz, offset in loads:
        if vaddr <= address < vaddr + filesz:
            file_offset = offset + (address - vaddr)
            available = vaddr + filesz - address
            break
    else:
        raise ElfError(f"malformed ELF file {name}: DT_STRTAB {address:#x} is in no PT_LOAD")
    length = min(size if size >= 0 else available, available, MAX_STRTAB_BYTES)
    src.check(file_offset, length, "dynamic string table", name)
    return file_offset, length


def _read_strings(
    src: _Source, strtab: tuple[int, int], offsets: list[int], name: str
) -> list[bytes]:
    """The strings at `offsets` of the dynamic string table at `strtab` (_locate_strtab).

    Only the span from the first string to the end of the last is read: the table holds
    every dynamic symbol's name too (megabytes in a C++ library), and the loader's own
    strings are a few dozen bytes of it (a closure of /usr/bin read 26.9 MB of tables for
    56 KB of names).
    """
    file_offset, length = strtab
    for offset in offsets:
        if offset >= length:
            raise ElfError(f"malformed ELF file {name}: string offset {offset} out of range")
    low = min(offsets)
    high = min(length, max(offsets) + STRING_SPAN_SLACK)
    span = src.read(file_offset + low, high - low, "dynamic string table", name)
    raws: list[bytes] = []
    for offset in offsets:
        end = span.find(b"\0", offset - low)
        if end < 0 and high < length:  # a string longer than the slack: the rest of the table
            span += src.read(file_offset + high, length - high, "dynamic string table", name)
            high = length
            end = span.find(b"\0", offset - low)
        raws.append(span[offset - low :] if end < 0 else span[offset - low : end])
    return raws
