"""The struct header reader on the hot path and pyelftools (for the unusual) must give the
same ElfInfo: on every class and byte order, on every machine the fast reader names, and on
the host's own programs and libraries."""

from __future__ import annotations

import io
import os
import struct
from pathlib import Path

import pytest

from smith.errors import ElfError
from smith.resolve import elf
from smith.resolve.elf import ElfInfo, parse_elf
from tests.elf_builders import compile_c


def parse_both(data: bytes, monkeypatch: pytest.MonkeyPatch) -> tuple[ElfInfo, ElfInfo]:
    fast = parse_elf(io.BytesIO(data), "/t")
    with monkeypatch.context() as patch:
        patch.setattr(elf, "_read_header", lambda *_: None)
        slow = parse_elf(io.BytesIO(data), "/t")
    return fast, slow


def craft(elf64: bool, little: bool, machine: int = 62, elf_type: int = 3) -> bytes:
    """A minimal loadable-looking object: one PT_LOAD over the file, a PT_INTERP, a
    PT_DYNAMIC with NEEDED, SONAME, RUNPATH and FLAGS_1, and its string table."""
    o = "<" if little else ">"
    ehsize, phentsize, dynent = (64, 56, 16) if elf64 else (52, 32, 8)
    strtab = b"\0libc.so.6\0libx.so\0$ORIGIN/../lib\0/lib/ld.so\0"
    phoff = ehsize
    strtab_off = phoff + 3 * phentsize
    dyn_off = strtab_off + len(strtab) + (-len(strtab) % 8)
    tags = [(1, 1), (14, 11), (29, 19), (5, strtab_off), (10, len(strtab)), (0x6FFFFFFB, 0x800)]
    dynamic = b"".join(struct.pack(o + ("qQ" if elf64 else "iI"), t, v) for t, v in tags)
    dynamic += bytes(dynent)
    total = dyn_off + len(dynamic)
    interp = (3, strtab_off + 34, 11)
    segments = [(1, 0, total), interp, (2, dyn_off, len(dynamic))]
    phdrs = b""
    for kind, offset, size in segments:
        if elf64:
            phdrs += struct.pack(o + "IIQQQQQQ", kind, 4, offset, offset, offset, size, size, 8)
        else:
            phdrs += struct.pack(o + "IIIIIIII", kind, offset, offset, offset, size, size, 4, 4)
    ident = b"\x7fELF" + bytes([2 if elf64 else 1, 1 if little else 2, 1]) + bytes(9)
    fields = "HHIQQQIHHHHHH" if elf64 else "HHIIIIIHHHHHH"
    header = ident + struct.pack(
        o + fields, elf_type, machine, 1, 0, phoff, 0, 0, ehsize, phentsize, 3, 0, 0, 0
    )
    body = header + phdrs + strtab
    return body + bytes(dyn_off - len(body)) + dynamic


@pytest.mark.parametrize("elf64", [True, False])
@pytest.mark.parametrize("little", [True, False])
def test_every_class_and_byte_order(
    elf64: bool, little: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast, slow = parse_both(craft(elf64, little), monkeypatch)
    assert fast == slow
    assert fast.abi.little_endian is little and fast.abi.elf_class == (64 if elf64 else 32)
    assert fast.needed == ("libc.so.6",) and fast.soname == "libx.so"
    assert fast.runpath == ("$ORIGIN/../lib",) and fast.nodeflib
    assert fast.interpreter == "/lib/ld.so" and fast.elf_type == "ET_DYN"


@pytest.mark.parametrize("machine", sorted(elf.MACHINES))
def test_machine_names_are_pyelftools_names(machine: int, monkeypatch: pytest.MonkeyPatch) -> None:
    fast, slow = parse_both(craft(True, True, machine=machine), monkeypatch)
    assert fast.abi.machine == slow.abi.machine == elf.MACHINES[machine]


@pytest.mark.parametrize("elf_type", sorted(elf.ELF_TYPES))
def test_type_names_are_pyelftools_names(elf_type: int, monkeypatch: pytest.MonkeyPatch) -> None:
    fast, slow = parse_both(craft(True, True, elf_type=elf_type), monkeypatch)
    assert fast.elf_type == slow.elf_type == elf.ELF_TYPES[elf_type]


def test_the_unusual_goes_to_pyelftools() -> None:
    unknown_machine = craft(True, True, machine=0x1234)
    assert elf._read_header(elf._Source(io.BytesIO(unknown_machine)), "/t") is None
    info = parse_elf(io.BytesIO(unknown_machine), "/t")
    assert info.abi.machine == str(0x1234) and info.needed == ("libc.so.6",)
    old_version = bytearray(craft(False, False))
    old_version[6] = 0
    assert elf._read_header(elf._Source(io.BytesIO(bytes(old_version))), "/t") is None


def test_the_fast_reader_checks_the_program_header_bounds() -> None:
    data = bytearray(craft(True, True))
    data[56:58] = struct.pack("<H", 40)  # e_phnum far beyond the file
    with pytest.raises(ElfError, match="40 program headers exceed the file"):
        parse_elf(io.BytesIO(bytes(data)), "/t")
    data = bytearray(craft(True, True))
    data[54:56] = struct.pack("<H", 48)  # e_phentsize
    with pytest.raises(ElfError, match="program header size 48"):
        parse_elf(io.BytesIO(bytes(data)), "/t")


def test_host_programs_and_libraries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = [compile_c(tmp_path / "i386.so", "int f(void){return 1;}\n", shared=True, m32=True)]
    for top in ("/usr/bin", "/usr/lib/x86_64-linux-gnu"):
        names = sorted(os.listdir(top))[:150]
        files += [Path(top, n) for n in names if Path(top, n).is_file()]
    compared = 0
    for path in files:
        data = path.read_bytes()
        if not elf.is_elf(data):
            continue
        fast, slow = parse_both(data, monkeypatch)
        assert fast == slow, path
        compared += 1
    assert compared > 100


def pyelftools_strings(data: bytes) -> tuple[tuple[str, ...], tuple[str, ...], str]:
    """DT_NEEDED names, DT_RPATH/DT_RUNPATH entries and DT_SONAME, as pyelftools reads them."""
    from elftools.elf.dynamic import DynamicSegment
    from elftools.elf.elffile import ELFFile

    needed: list[str] = []
    paths: list[str] = []
    soname = ""
    for segment in ELFFile(io.BytesIO(data)).iter_segments():
        if isinstance(segment, DynamicSegment):
            for tag in segment.iter_tags():
                if tag.entry.d_tag == "DT_NEEDED":
                    needed.append(tag.needed)
                elif tag.entry.d_tag in ("DT_RPATH", "DT_RUNPATH"):
                    paths.append(tag.rpath if tag.entry.d_tag == "DT_RPATH" else tag.runpath)
                elif tag.entry.d_tag == "DT_SONAME":
                    soname = tag.soname
    return tuple(needed), tuple(paths), soname


def test_strings_longer_than_the_read_span_are_whole(tmp_path: Path) -> None:
    """Only the span of the string table holding the loader's strings is read (elf.py's
    _read_strings): a string running past it, here a 600-byte RPATH, is read to its end."""
    rpath = "/opt/" + "x" * 600
    flags = ("-Wl,--disable-new-dtags", f"-Wl,-rpath,{rpath}", "-Wl,-soname,libq.so.1")
    lib = compile_c(tmp_path / "libq.so", "int q(void) { return 1; }\n", *flags, shared=True)
    info = parse_elf(io.BytesIO(lib.read_bytes()), "/t")
    assert info.rpath == (rpath,) and info.soname == "libq.so.1"
    assert pyelftools_strings(lib.read_bytes()) == (info.needed, (rpath,), "libq.so.1")


def test_host_strings_are_pyelftools_strings() -> None:
    compared = 0
    for top in ("/usr/bin", "/usr/lib/x86_64-linux-gnu"):
        for name in sorted(os.listdir(top))[:120]:
            path = Path(top, name)
            if not path.is_file() or path.is_symlink():
                continue
            data = path.read_bytes()
            if not elf.is_elf(data):
                continue
            info = parse_elf(io.BytesIO(data), str(path))
            expected = pyelftools_strings(data)
            assert (info.needed, info.rpath + info.runpath, info.soname) == expected, path
            compared += 1
    assert compared > 100
