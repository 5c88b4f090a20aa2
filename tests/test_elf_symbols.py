"""The struct reader of imported symbols (the libgcc_s rule's question) and pyelftools must
agree: on both classes compiled here, on the host's libraries and programs, and a
malformed file ends in the errors its caller catches, never anything else."""

from __future__ import annotations

import contextlib
import io
import os
import struct
from dataclasses import replace
from pathlib import Path

import pytest

from smith.resolve.closure import ClosureWalker
from smith.resolve.elf import parse_elf
from smith.resolve.elfsyms import names_any, undefined_imports
from smith.resolve.roots import DirectoryRoot
from smith.resolve.runtime_sets import TABLE_PIECE, UNWIND_USERS, _read_pyelftools, table_names_any
from tests.elf_builders import compile_c

NAMES = (*UNWIND_USERS, "malloc", "pthread_create", "not_a_symbol")
CALLER = "extern void pthread_exit(void *);\nvoid f(void) { pthread_exit(0); }\n"
DEFINER = "void pthread_exit(void *p) { (void)p; }\n"
LIBDIR = Path("/usr/lib/x86_64-linux-gnu")


def both(data: bytes) -> tuple[tuple[str, ...] | None, tuple[str, ...]]:
    return undefined_imports(io.BytesIO(data), NAMES), _read_pyelftools(io.BytesIO(data), NAMES)


@pytest.mark.parametrize("m32", [False, True])
def test_an_import_is_found_and_a_definition_is_not(tmp_path: Path, m32: bool) -> None:
    caller = compile_c(tmp_path / "caller.so", CALLER, shared=True, m32=m32).read_bytes()
    definer = compile_c(tmp_path / "definer.so", DEFINER, shared=True, m32=m32).read_bytes()
    assert both(caller) == (("pthread_exit",), ("pthread_exit",))
    assert both(definer) == ((), ())


def host_files() -> list[Path]:
    """Some of the host's ELF files, libc among them (it defines both names), small enough
    for pyelftools to read quickly."""
    found = [LIBDIR / "libc.so.6"]
    for directory in (LIBDIR, Path("/usr/bin")):
        for entry in sorted(os.scandir(directory), key=lambda e: e.name)[:400]:
            if entry.is_file(follow_symlinks=False) and entry.stat().st_size < 400_000:
                with open(entry.path, "rb") as stream:
                    if stream.read(4) == b"\x7fELF":
                        found.append(Path(entry.path))
    return found[:80]


def test_both_readers_agree_on_host_files() -> None:
    files = host_files()
    assert len(files) > 40
    for path in files:
        fast, slow = both(path.read_bytes())
        assert fast == slow, path


def test_a_file_whose_dynamic_string_table_lacks_the_names_imports_neither() -> None:
    """The libgcc_s rule reads the table at ElfInfo.strtab_span alone first, and reads no
    further a file whose table holds neither name: it never hides an import."""
    cleared = 0
    for path in host_files():
        data = path.read_bytes()
        offset, length = parse_elf(io.BytesIO(data), str(path)).strtab_span
        if offset < 0 or names_any(data[offset : offset + length], UNWIND_USERS):
            continue  # (-1: an object file, no dynamic strings; the rule reads it whole)
        assert _read_pyelftools(io.BytesIO(data), UNWIND_USERS) == (), path
        cleared += 1
    assert cleared > 20


def test_a_cut_or_garbled_file_raises_only_what_the_caller_catches(tmp_path: Path) -> None:
    data = compile_c(tmp_path / "caller.so", CALLER, shared=True).read_bytes()
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    cuts = [16, 40, 64, shoff, shoff + 100, len(data) - 200, len(data) - 1]
    for cut in cuts:
        with contextlib.suppress(struct.error, IndexError):
            undefined_imports(io.BytesIO(data[:cut]), NAMES)
    for offset in range(shoff, len(data), 7):
        garbled = bytearray(data)
        garbled[offset] ^= 0xFF
        with contextlib.suppress(struct.error, IndexError):
            undefined_imports(io.BytesIO(garbled), NAMES)


@pytest.mark.parametrize(
    ("table", "names", "expected"),
    [
        (b"\0malloc\0pthread_exit\0", UNWIND_USERS, True),
        (b"\0pthread_cancelx\0", UNWIND_USERS, True),  # a filter: substrings count
        (b"\0pthread_create\0pthread_\0", UNWIND_USERS, False),
        (b"pthread_exi", UNWIND_USERS, False),
        (b"\0free\0malloc\0", ("malloc", "pthread_exit"), True),  # no common prefix
        (b"\0free\0", ("malloc", "pthread_exit"), False),
    ],
)
def test_names_any(table: bytes, names: tuple[str, ...], expected: bool) -> None:
    assert names_any(table, names) is expected


with open(LIBDIR / "libc.so.6", "rb") as _libc:
    LIBC_INFO = parse_elf(_libc, "libc.so.6")  # any ElfInfo: its strtab_span is replaced


def test_a_table_is_searched_in_pieces_that_overlap(tmp_path: Path) -> None:
    """A name that straddles two pieces of table_names_any is found."""
    data = bytearray(b"x" * (3 * TABLE_PIECE))
    for at in (TABLE_PIECE - 5, 2 * TABLE_PIECE - len("pthread_exit")):
        data[at : at + len("pthread_exit")] = b"pthread_exit"
        (tmp_path / "f").write_bytes(bytes(data))
        walker = ClosureWalker(DirectoryRoot(tmp_path))
        info = replace(LIBC_INFO, strtab_span=(0, len(data)))
        assert table_names_any(walker, "f", info, UNWIND_USERS), at
        data[at : at + len("pthread_exit")] = b"x" * len("pthread_exit")
    (tmp_path / "f").write_bytes(bytes(data))
    info = replace(LIBC_INFO, strtab_span=(0, len(data)))
    assert not table_names_any(ClosureWalker(DirectoryRoot(tmp_path)), "f", info, UNWIND_USERS)
