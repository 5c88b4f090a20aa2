"""Which of some names an ELF file imports: undefined symbols of its .dynsym, read with
`struct`.

The libgcc_s rule asks this of every object of a closure that mentions pthread_cancel or
pthread_exit, and libc itself always does (it defines them): pyelftools decodes each of
libc's ~3000 symbols with construct, ~0.15 s, a quarter of a small build. Here the section
headers and the symbol table are unpacked in one call each. What this reader does not know
(a header the closure's struct reader hands to pyelftools, more than SHN_LORESERVE
sections) gives None, and the caller asks pyelftools.
"""

from __future__ import annotations

import struct

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


def undefined_imports(data: bytes, names: tuple[str, ...]) -> tuple[str, ...] | None:
    """Those of `names` that `data` (a whole ELF file) imports, in the order of `names`; ()
    for a file without .dynsym; None when the file is one for pyelftools. Raises
    struct.error or IndexError on a malformed file."""
    ident = data[:EI_NIDENT]
    key = (ident[4], ident[5]) if len(ident) == EI_NIDENT else (0, 0)
    header = EHDR.get(key)
    if header is None or ident[6] != 1:
        return None
    fields = header.unpack_from(data, EI_NIDENT)
    _, machine, version, _, _, shoff, *_ = fields
    shentsize, shnum = SH_COUNTS[key[1]].unpack_from(data, EI_NIDENT + header.size)
    shdr, sym = SHDR[key], SYM[key]
    if machine not in MACHINES or version != 1 or shnum >= SHN_LORESERVE:
        return None
    if shnum == 0:
        return ()
    if shentsize != shdr.size or shoff + shnum * shdr.size > len(data):
        raise IndexError("section headers lie outside the file")
    sections = list(shdr.iter_unpack(data[shoff : shoff + shnum * shdr.size]))
    wanted = {name.encode() for name in names}
    found: set[bytes] = set()
    elf64 = key[0] == 2
    for _, kind, _, _, offset, size, link, _, _, entsize in sections:
        if kind != SHT_DYNSYM:
            continue
        if entsize != sym.size or offset + size > len(data) or link >= shnum:
            raise IndexError("malformed .dynsym")
        strtab_offset, strtab_size = sections[link][4], sections[link][5]
        strtab = data[strtab_offset : strtab_offset + strtab_size]
        table = data[offset : offset + size - size % sym.size]
        for entry in sym.iter_unpack(table):
            if entry[3 if elf64 else 5] != SHN_UNDEF:
                continue
            start = entry[0]
            end = strtab.find(b"\0", start)
            # A versioned name ("name@VERSION") counts as the name, as before.
            base = strtab[start : end if end >= 0 else len(strtab)].split(b"@", 1)[0]
            if base in wanted:
                found.add(base)
    return tuple(name for name in names if name.encode() in found)
