"""Which of some names an ELF file imports: undefined symbols of its .dynsym, read with
`struct`.

The libgcc_s rule asks this of every object of a closure, and libc always names both
(it defines them): pyelftools decoded each of libc's ~3000 symbols with construct, ~0.15 s,
a quarter of a small build, and every kept file was read whole to look for the names. Here
the section headers, the string table and the symbol table are read and unpacked in one
call each. What this reader does not know (a header the closure's struct reader hands to
pyelftools, more than SHN_LORESERVE sections) gives None, and the caller asks pyelftools.
"""

from __future__ import annotations

import io
import os
import struct
from typing import BinaryIO

from smith.resolve.elf import EHDR, EI_NIDENT, MACHINES

SHT_DYNSYM = 11
SHN_UNDEF = 0
SHN_LORESERVE = 0xFF00  # e_shnum at or above it is in section 0's sh_size: left to pyelftools
# The section header fields after e_phnum: e_shentsize, e_shnum (e_shstrndx is not needed:
# .dynsym is found by its type, as the pyelftools reading this replaces found it).
SH_COUNTS = {d: struct.Struct(o + "HH") for d, o in ((1, "<"), (2, ">"))}
SHDR = {  # Elf32_Shdr / Elf64_Shdr: name, type, flags, addr, offset, size, link, info, ...
    (c, d): struct.Struct(o + f)
    for c, f in ((1, "IIIIIIIIII"), (2, "IIQQQQIIQQ"))
    for d, o in ((1, "<"), (2, ">"))
}
SYM = {  # Elf32_Sym / Elf64_Sym (their field orders differ)
    (c, d): struct.Struct(o + f)
    for c, f in ((1, "IIIBBH"), (2, "IBBHQQ"))
    for d, o in ((1, "<"), (2, ">"))
}


def undefined_imports(stream: BinaryIO, names: tuple[str, ...]) -> tuple[str, ...] | None:
    """Those of `names` that the ELF file `stream` imports, in the order of `names`; () for
    a file without .dynsym; None when the file is one for pyelftools. Raises struct.error
    or IndexError on a malformed file.

    Four reads, none of the file's code: the header, the section headers, the dynamic
    string table (most files name none of `names`: done then) and the symbol table.
    """
    size = stream.seek(0, io.SEEK_END)
    stream.seek(0)
    ident = stream.read(EI_NIDENT + 64)
    key = (ident[4], ident[5]) if len(ident) >= EI_NIDENT else (0, 0)
    header = EHDR.get(key)
    if header is None or ident[6] != 1:
        return None
    _, machine, version, _, _, shoff, *_ = header.unpack_from(ident, EI_NIDENT)
    shentsize, shnum = SH_COUNTS[key[1]].unpack_from(ident, EI_NIDENT + header.size)
    shdr, sym = SHDR[key], SYM[key]
    if machine not in MACHINES or version != 1 or shnum >= SHN_LORESERVE:
        return None
    if shnum == 0:
        return ()
    sections = list(shdr.iter_unpack(_read(stream, size, shoff, shnum * shentsize, shentsize)))
    wanted = [name.encode() for name in names]
    found: set[bytes] = set()
    elf64 = key[0] == 2
    for _, kind, _, _, offset, length, link, _, _, entsize in sections:
        if kind != SHT_DYNSYM:
            continue
        if entsize != sym.size or link >= shnum:
            raise IndexError("malformed .dynsym")
        strtab = _read(stream, size, sections[link][4], sections[link][5], 1)
        # Every name of the table is in this string table: without these, nothing to unpack.
        if not names_any(strtab, names):
            continue
        for entry in sym.iter_unpack(_read(stream, size, offset, length, sym.size)):
            if entry[3 if elf64 else 5] != SHN_UNDEF:
                continue
            start = entry[0]
            end = strtab.find(b"\0", start)
            # A versioned name ("name@VERSION") counts as the name, as with pyelftools.
            base = strtab[start : end if end >= 0 else len(strtab)].split(b"@", 1)[0]
            if base in wanted:
                found.add(base)
    return tuple(name for name in names if name.encode() in found)


def names_any(table: bytes, names: tuple[str, ...]) -> bool:
    """Whether a string table holds any of `names`, as substrings (a filter: a table
    without them has no symbol of theirs). A table is megabytes in a C++ library or a Go
    program: one search for the names' common prefix ("pthread_"), each hit then checked,
    takes two thirds of the time of a search per name and half of an re alternation's."""
    wanted = tuple(name.encode() for name in names)
    prefix = os.path.commonprefix(wanted)  # noqa: RUF071 - of the bytes, not of paths
    if not prefix:
        return any(name in table for name in wanted)
    at = table.find(prefix)
    while at >= 0:
        if table.startswith(wanted, at):
            return True
        at = table.find(prefix, at + 1)
    return False


def _read(stream: BinaryIO, size: int, offset: int, length: int, entry: int) -> bytes:
    """`length` bytes at `offset` (whole entries of `entry` bytes), checked against the
    file's `size` first: a forged table cannot make us allocate or read past the end."""
    if entry <= 0 or offset < 0 or length < 0 or offset + length > size:
        raise IndexError(f"a table at {offset}+{length} lies outside the file ({size} bytes)")
    stream.seek(offset)
    data = stream.read(length - length % entry)
    if len(data) != length - length % entry:
        raise IndexError("truncated table")
    return data
