"""Benchmark: the ELF closure of every dynamic ELF file in /usr/bin and /usr/sbin against its
floor and its peers, interleaved in the same run (min and median of ROUNDS):

- smith in one process (ClosureWalker, cold: fresh caches, every file parsed);
- the floor: a minimal `struct` reader of the same files (every start and every library the
  closure opened: ELF header, program headers, dynamic section, string table), no search;
  and the same reading only the span of each string table that holds the DT_NEEDED names,
  as smith's reader does (a tighter floor, printed beside the issue's);
- `smith closure / FILES... --keep-going`, the command a user runs, and the same without
  its run-time rules (the closure lddtree computes);
- `lddtree -l FILES...` run the way its users run it: Debian's /usr/bin/python3 with
  Debian's python3-pyelftools (lddtree is Python; under the venv's Python it is slower);
- `scanelf -n FILES...` (pax-utils, C: reads DT_NEEDED only, resolves nothing);
- `python -c pass`, the load reference.

    .venv/bin/python -m bench.bench_closure [--rounds 5] [--ldd-sample 0]

The enumeration of the files is not timed; the page cache is warm for every case.
"""

from __future__ import annotations

import argparse
import os
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

from bench.timing import (
    Case,
    command_case,
    cpu_ratio,
    interleave,
    load_reference,
    ratio,
    report,
)
from smith.resolve.closure import ClosureWalker
from smith.resolve.roots import DirectoryRoot
from tests.host_oracle import HOST_DIRS, find_dynamic_elfs, run_lddtree

DEBIAN_PYTHON = "/usr/bin/python3"
SMITH = str(Path(sys.executable).with_name("smith"))
NO_RULES = (
    "--keep-going",
    *(f"--no-runtime={rule}" for rule in ("interpreter", "openssl", "libgcc_s")),
)


def smith_closure(paths: list[str]) -> ClosureWalker:
    walker = ClosureWalker(DirectoryRoot("/"), keep_going=True)
    for path in paths:
        walker.add_start(path)
    return walker


def floor_read(files: list[str], *, whole_tables: bool = True) -> int:
    """What any closure must at least do: read the headers and DT_NEEDED of every file
    (64-bit little-endian only, no checks: this is a floor, not a parser). With
    `whole_tables`, each dynamic string table is read whole (the issue's floor); without,
    only the span that holds the names (the table holds every symbol's name too, which
    smith's reader no longer reads)."""
    count = 0
    for path in files:
        with open(path, "rb") as f:
            head = f.read(64)
            phoff, phentsize, phnum = (
                struct.unpack_from("<Q", head, 32)[0],
                *struct.unpack_from("<HH", head, 54),
            )
            f.seek(phoff)
            phdrs = f.read(phentsize * phnum)
            loads, dynamic = [], None
            for kind, _, offset, vaddr, _, filesz, _, _ in struct.iter_unpack("<IIQQQQQQ", phdrs):
                if kind == 1:
                    loads.append((vaddr, filesz, offset))
                elif kind == 2:
                    dynamic = (offset, filesz)
            if dynamic is None:
                continue
            f.seek(dynamic[0])
            tags = list(struct.iter_unpack("<qQ", f.read(dynamic[1])))
            strtab = next(v for t, v in tags if t == 5)
            offset = next(o + strtab - v for v, s, o in loads if v <= strtab < v + s)
            names = [v for t, v in tags if t == 1]
            if whole_tables:
                low, high = 0, next(v for t, v in tags if t == 10)
            elif names:
                low, high = min(names), max(names) + 256
            else:
                continue
            f.seek(offset + low)
            table = f.read(high - low)
            for value in names:
                table[value - low : table.index(b"\0", value - low)].decode()
                count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--ldd-sample", type=int, default=0, help="also time ldd per file, every Nth, scaled"
    )
    args = parser.parse_args()
    paths = [e.path for e in find_dynamic_elfs(HOST_DIRS, recursive=False)]
    walker = smith_closure(paths)
    files = sorted({"/" + obj.real for objects in walker.programs.values() for obj in objects})
    ours = {
        "/" + start: frozenset(os.path.realpath("/" + obj.real) for obj in objects[1:])
        for start, objects in walker.programs.items()
    }
    lddtree = shutil.which("lddtree")
    assert lddtree is not None, "lddtree (pax-utils) is not installed"
    theirs = run_lddtree(DEBIAN_PYTHON, lddtree, paths)
    agree = sum(1 for path in paths if ours.get(path) == theirs.get(path))
    print(f"files: {len(paths)} dynamic ELF in {', '.join(HOST_DIRS)}; {len(files)} opened")
    print(f"same closure as lddtree -l: {agree}/{len(paths)} files")

    cases = [
        load_reference(),
        Case("smith (in process)", lambda: smith_closure(paths), cpu=True),
        Case("floor: struct reader", lambda: floor_read(files), cpu=True),
        Case("floor: names only", lambda: floor_read(files, whole_tables=False), cpu=True),
        command_case("smith closure", [SMITH, "closure", "/", *paths, "--keep-going"]),
        # The work lddtree does: the ELF closure alone, without smith's run-time rules (an
        # interpreter's standard library, OpenSSL's providers, libgcc_s).
        command_case("smith closure, no rules", [SMITH, "closure", "/", *paths, *NO_RULES]),
        command_case("lddtree -l", [DEBIAN_PYTHON, lddtree, "-l", *paths]),
        command_case("scanelf -n", ["scanelf", "-qn", *paths]),
    ]
    times = interleave(cases, args.rounds)
    print(f"\n{args.rounds} rounds, interleaved:")
    report(times)
    print()
    ratio(times, "smith (in process)", "floor: struct reader", "at most 3x")
    cpu_ratio(times, "smith (in process)", "floor: struct reader", "at most 3x")
    ratio(times, "smith (in process)", "floor: names only", "the tighter floor")
    ratio(times, "lddtree -l", "smith (in process)", "at least 30x")
    ratio(times, "lddtree -l", "smith closure", "command against command")
    cpu_ratio(times, "lddtree -l", "smith closure", "command against command")
    ratio(times, "lddtree -l", "smith closure, no rules", "the same closure")
    cpu_ratio(times, "lddtree -l", "smith closure, no rules", "the same closure")
    ratio(times, "smith (in process)", "scanelf -n")
    if args.ldd_sample:
        sample = paths[:: args.ldd_sample]
        began = time.perf_counter()
        for path in sample:
            subprocess.run(["ldd", path], capture_output=True, check=False)
        scaled = (time.perf_counter() - began) * len(paths) / len(sample)
        print(f"ldd per file (every {args.ldd_sample}th, scaled): {scaled:.2f} s")


if __name__ == "__main__":
    main()
