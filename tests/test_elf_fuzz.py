"""Hypothesis feeds mutated and truncated ELF bytes to the parser: it returns an ElfInfo or
raises smith's ElfError, nothing else (no other exception, no hang, no huge allocation)."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smith.errors import ElfError
from smith.resolve.dependencies import compute_closure
from smith.resolve.elf import ElfInfo, parse_elf
from smith.resolve.elfcache import ElfCache
from smith.tree import FileTree, InlineBytes
from tests.elf_builders import compile_c

SEEDS: dict[str, bytes] = {}


@pytest.fixture(scope="module", autouse=True)
def seeds(tmp_path_factory: pytest.TempPathFactory) -> None:
    out = tmp_path_factory.mktemp("fuzz")
    lib = compile_c(out / "libf.so", "int f(void){return 1;}\n", "-Wl,-soname,libf.so", shared=True)
    exe = compile_c(out / "exe", "int main(void){return 0;}\n", "-Wl,-rpath,$ORIGIN", "-s")
    SEEDS["lib"] = lib.read_bytes()
    SEEDS["exe"] = exe.read_bytes()
    if Path("/usr/bin/true").exists():
        SEEDS["true"] = Path("/usr/bin/true").read_bytes()


def parse(data: bytes) -> ElfInfo | None:
    try:
        return parse_elf(io.BytesIO(data), "/fuzz")
    except ElfError as err:
        assert "/fuzz" in str(err)
        return None


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    seed = SEEDS[draw(st.sampled_from(sorted(SEEDS)))]
    data = bytearray(seed)
    # Mutations aimed where the parser reads: the header, the program headers, and any
    # offset at all (dynamic entries, string tables).
    hot = min(len(data), 64 + 56 * 16)
    for _ in range(draw(st.integers(0, 8))):
        where = draw(st.one_of(st.integers(0, hot - 1), st.integers(0, len(data) - 1)))
        kind = draw(st.sampled_from(["byte", "word", "max"]))
        if kind == "byte":
            data[where] = draw(st.integers(0, 255))
        elif kind == "word" and where + 8 <= len(data):
            data[where : where + 8] = struct.pack("<Q", draw(st.integers(0, 2**64 - 1)))
        elif where + 4 <= len(data):
            data[where : where + 4] = b"\xff\xff\xff\x7f"
    cut = draw(st.one_of(st.none(), st.integers(0, len(data))))
    return bytes(data if cut is None else data[:cut])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_elf_parses_or_raises_elf_error(data: bytes) -> None:
    parse(data)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=512))
def test_random_bytes_after_the_magic(data: bytes) -> None:
    parse(b"\x7fELF" + data)


def test_seeds_parse() -> None:
    info = parse(SEEDS["lib"])
    assert info is not None and info.soname == "libf.so"
    exe = parse(SEEDS["exe"])
    assert exe is not None and exe.interpreter and exe.needed


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_closure_over_a_mutated_library_never_escapes_the_error_family(data: bytes) -> None:
    """The same through the whole walk: a tree whose library is garbage gives a closure or
    an ElfError (the cache must re-raise it, not store a half-parsed result)."""
    tree = FileTree()
    tree.add_file("usr/lib64/libf.so", InlineBytes(data))
    tree.add_file("usr/lib64/libuser.so", InlineBytes(SEEDS["exe"]))
    tree.add_file("etc/ld.so.conf", InlineBytes(b"/usr/lib64\n"))
    cache = ElfCache()
    for _ in range(2):
        try:
            compute_closure(tree, ["usr/lib64/libf.so"], keep_going=True, cache=cache)
        except ElfError as err:
            assert "/usr/lib64/libf.so" in str(err)
