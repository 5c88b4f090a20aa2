"""The real loader is the oracle: the closure of every dynamic ELF file on this host equals
what `ldd` reports, and what pax-utils' `lddtree -l` reports, with the host's `/` as root.

Every disagreement must match one of the explained exceptions below, each a real difference
in semantics between the tools, never a bug of ours left alone.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from smith.resolve.closure import ClosureWalker
from smith.resolve.roots import DirectoryRoot
from tests.host_oracle import (
    HOST_DIRS,
    HostElf,
    LddResult,
    find_dynamic_elfs,
    host_lib_dirs,
    run_ldd,
    run_lddtree,
)
from tests.tools import require_tool, unavailable

HOST_INTERPRETER = "/lib64/ld-linux-x86-64.so.2"
LDDTREE_STRIDE = 2


@dataclass(frozen=True)
class Ours:
    resolved: frozenset[str]  # real paths, the start itself excluded
    missing: frozenset[str]
    interpreter_missing: bool


@dataclass(frozen=True)
class Oracle:
    elfs: tuple[HostElf, ...]
    ours: dict[str, Ours]
    ldd: dict[str, LddResult]
    lddtree: dict[str, frozenset[str]]  # real paths, the file itself excluded


@pytest.fixture(scope="module")
def oracle() -> Oracle:
    require_tool("ldd")
    lddtree = require_tool("lddtree")
    if not os.path.exists(HOST_INTERPRETER):
        unavailable("the oracle compares against an x86-64 glibc host")
    bins = find_dynamic_elfs(HOST_DIRS, recursive=False)
    # lddtree is pure Python and slow (about 40 ms a file): it reads every other file of
    # /usr/bin and /usr/sbin, in one process. The benchmark (bench/bench_closure.py) gives
    # it all of them and reports that agreement too.
    sample = [e.path for e in bins[::LDDTREE_STRIDE]]
    walker = ClosureWalker(DirectoryRoot("/"), keep_going=True)
    with ThreadPoolExecutor(max_workers=2) as pool:
        tree_job = pool.submit(run_lddtree, sys.executable, lddtree, sample)
        elfs = bins + find_dynamic_elfs(host_lib_dirs(), recursive=True)
        ldd_job = pool.submit(run_ldd, [e.path for e in elfs], workers=1)
        # Our own walk runs here meanwhile: three jobs, two cores, no idle one.
        for elf in elfs:
            walker.add_start(elf.path)
        ldd = ldd_job.result()
        tree = tree_job.result()
    missing: dict[str, set[str]] = {}
    for item in walker.missing:
        missing.setdefault("/" + item.chain[0], set()).add(item.name)
    ours: dict[str, Ours] = {}
    for elf in elfs:
        program = walker.programs.get(elf.path.lstrip("/"), ())
        names = frozenset(missing.get(elf.path, ()))
        ours[elf.path] = Ours(
            resolved=frozenset(os.path.realpath("/" + obj.real) for obj in program[1:]),
            missing=names,
            interpreter_missing=bool(elf.info.interpreter) and elf.info.interpreter in names,
        )
    return Oracle(tuple(elfs), ours, ldd, tree)


# -- explained exceptions ---------------------------------------------------------------------
# Each takes (file, ours, theirs) and returns the reason when it explains the difference.

Explainer = Callable[[HostElf, Ours, LddResult], str]


def foreign_abi_without_loader(elf: HostElf, ours: Ours, theirs: LddResult) -> str:
    """ldd only knows the host's own loaders (its RTLDLIST). A 32-bit or x32 binary whose
    interpreter is not installed cannot be traced at all ("not a dynamic executable"), so
    ldd lists nothing; smith reads the file and reports the missing interpreter and libs."""
    if ours.interpreter_missing and not theirs.resolved and not theirs.not_found:
        return "foreign ABI, its interpreter is not installed: ldd cannot trace it"
    return ""


LDD_EXCEPTIONS: tuple[Explainer, ...] = (foreign_abi_without_loader,)


def test_closure_equals_ldd(oracle: Oracle, capsys: pytest.CaptureFixture[str]) -> None:
    agree = 0
    explained: dict[str, list[str]] = {}
    unexplained: list[str] = []
    for elf in oracle.elfs:
        ours, theirs = oracle.ours[elf.path], oracle.ldd[elf.path]
        if ours.resolved == theirs.resolved and ours.missing == theirs.not_found:
            agree += 1
            continue
        reasons = [r for r in (ex(elf, ours, theirs) for ex in LDD_EXCEPTIONS) if r]
        if reasons:
            explained.setdefault(reasons[0], []).append(elf.path)
            continue
        unexplained.append(
            f"{elf.path}: only ours {sorted(ours.resolved - theirs.resolved)}, "
            f"only ldd {sorted(theirs.resolved - ours.resolved)}, "
            f"missing ours {sorted(ours.missing)} ldd {sorted(theirs.not_found)}"
        )
    with capsys.disabled():
        print(f"\noracle ldd: {agree}/{len(oracle.elfs)} files agree exactly")
        for reason, paths in explained.items():
            print(f"  explained ({len(paths)}): {reason}: {', '.join(paths)}")
    assert not unexplained, "\n".join(unexplained)
    assert len(oracle.elfs) > 500  # the host really was searched
    assert agree >= 0.99 * len(oracle.elfs)


def test_closure_equals_lddtree(oracle: Oracle, capsys: pytest.CaptureFixture[str]) -> None:
    agree = 0
    unexplained: list[str] = []
    explained: dict[str, list[str]] = {}
    for path, theirs in oracle.lddtree.items():
        ours = oracle.ours[path]
        mine = ours.resolved
        if mine == theirs:
            agree += 1
            continue
        unexplained.append(
            f"{path}: only ours {sorted(mine - theirs)}, only lddtree {sorted(theirs - mine)}"
        )
    with capsys.disabled():
        print(f"\noracle lddtree -l: {agree}/{len(oracle.lddtree)} files agree exactly")
        for reason, paths in explained.items():
            print(f"  explained ({len(paths)}): {reason}: {', '.join(paths)}")
    assert not unexplained, "\n".join(unexplained)
    assert len(oracle.lddtree) > 100
