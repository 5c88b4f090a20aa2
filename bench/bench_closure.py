"""Benchmark: the closure of every dynamic ELF file in /usr/bin and /usr/sbin, in one
process, against `lddtree -l` given the same files in one process, and against `ldd` run
once per file, all in the same run.

    .venv/bin/python -m bench.bench_closure [--ldd-sample N]

The enumeration of the files is not timed. The closure is timed cold (a fresh cache and
root view, parsing every file) so the comparison is fair to lddtree.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time

from smith.resolve.closure import ClosureWalker
from smith.resolve.roots import DirectoryRoot
from tests.host_oracle import HOST_DIRS, find_dynamic_elfs, run_lddtree


def time_smith(paths: list[str]) -> tuple[float, dict[str, frozenset[str]]]:
    began = time.perf_counter()
    walker = ClosureWalker(DirectoryRoot("/"), keep_going=True)
    for path in paths:
        walker.add_start(path)
    elapsed = time.perf_counter() - began
    found = {
        "/" + start: frozenset(os.path.realpath("/" + obj.real) for obj in objects[1:])
        for start, objects in walker.programs.items()
    }
    return elapsed, found


def time_lddtree(paths: list[str]) -> tuple[float, dict[str, frozenset[str]]]:
    lddtree = shutil.which("lddtree")
    assert lddtree is not None, "lddtree (pax-utils) is not installed"
    began = time.perf_counter()
    found = run_lddtree(sys.executable, lddtree, paths)
    return time.perf_counter() - began, found


def time_ldd_each(paths: list[str]) -> float:
    began = time.perf_counter()
    for path in paths:
        subprocess.run(["ldd", path], capture_output=True, check=False)
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--ldd-sample",
        type=int,
        default=0,
        help="time ldd on every Nth file only and scale up (0: every file)",
    )
    args = parser.parse_args()
    paths = [e.path for e in find_dynamic_elfs(HOST_DIRS, recursive=False)]
    smith_s, ours = time_smith(paths)
    lddtree_s, theirs = time_lddtree(paths)
    agree = sum(1 for path in paths if ours.get(path) == theirs.get(path))
    step = max(1, args.ldd_sample)
    sample = paths[::step]
    ldd_s = time_ldd_each(sample) * len(paths) / len(sample)
    print(f"files: {len(paths)} dynamic ELF in {', '.join(HOST_DIRS)}")
    print(f"same closure as lddtree -l: {agree}/{len(paths)} files")
    print(f"smith closure (one process):   {smith_s:8.2f} s")
    print(f"lddtree -l (one process):      {lddtree_s:8.2f} s  ({lddtree_s / smith_s:5.1f}x smith)")
    scaled = f" (every {step}th file, scaled)" if step > 1 else ""
    print(f"ldd per file{scaled}:".ljust(31) + f"{ldd_s:8.2f} s  ({ldd_s / smith_s:5.1f}x smith)")


if __name__ == "__main__":
    main()
