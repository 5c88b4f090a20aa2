"""The real loader as an oracle: enumerate the host's dynamic ELF files and ask ldd/lddtree.

Shared by the oracle test and the benchmark. Nothing is cached on disk: every run asks the
tools again, in a few large batches on all cores.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from smith.errors import ElfError
from smith.resolve.elf import ElfInfo, is_elf, parse_elf

HOST_DIRS = ("/usr/bin", "/usr/sbin")
# Suffixes of files under /usr/lib* that are never ELF: skipping them only saves opening
# tens of thousands of Python sources, headers and data files.
NOT_ELF_SUFFIXES = (".py", ".pyc", ".h", ".txt", ".gz", ".json", ".html", ".pm", ".pl", ".mo")


def host_lib_dirs() -> list[str]:
    return sorted(f"/usr/{d}" for d in os.listdir("/usr") if d.startswith("lib"))


@dataclass(frozen=True)
class HostElf:
    path: str
    info: ElfInfo


def find_dynamic_elfs(tops: Iterable[str], *, recursive: bool) -> list[HostElf]:
    """Regular files (not links) that are dynamically linked ELF objects, sorted."""
    found: list[HostElf] = []
    for top in tops:
        for dirpath, dirnames, filenames in os.walk(top):
            if not recursive:
                dirnames.clear()
            for name in filenames:
                if name.endswith(NOT_ELF_SUFFIXES):
                    continue
                path = os.path.join(dirpath, name)
                info = read_host_elf(path)
                if info is not None and info.dynamic:
                    found.append(HostElf(path, info))
    return sorted(found, key=lambda e: e.path)


def read_host_elf(path: str) -> ElfInfo | None:
    try:
        if os.path.islink(path) or not os.path.isfile(path):
            return None
        with open(path, "rb") as stream:
            if not is_elf(stream.read(4)):
                return None
            return parse_elf(stream, path)
    except (OSError, ElfError):
        return None


LDD_LINE = re.compile(r"^\t(?:(\S+) => )?(\S+)(?: \(0x[0-9a-f]+\))?$")


@dataclass(frozen=True)
class LddResult:
    resolved: frozenset[str]  # real paths of the objects ldd lists, vdso excluded
    not_found: frozenset[str]
    failed: str  # ldd's complaint when it could not trace the file at all


def run_ldd(paths: Sequence[str], *, workers: int = 2, batch: int = 64) -> dict[str, LddResult]:
    """ldd over many files: several files per ldd run, runs in parallel."""
    chunks = [list(paths[i : i + batch]) for i in range(0, len(paths), batch)]
    results: dict[str, LddResult] = {}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for chunk_result in pool.map(_ldd_chunk, chunks):
            results.update(chunk_result)
    return results


def _ldd_chunk(paths: list[str]) -> dict[str, LddResult]:
    env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C"}
    proc = subprocess.run(["ldd", *paths], capture_output=True, text=True, env=env, check=False)
    results: dict[str, LddResult] = {}
    current = ""
    lines: dict[str, list[str]] = {p: [] for p in paths}
    for line in proc.stdout.splitlines():
        if not line.startswith("\t") and line.endswith(":") and line[:-1] in lines:
            current = line[:-1]
        elif current:
            lines[current].append(line)
    for path in paths:
        resolved: set[str] = set()
        missing: set[str] = set()
        failed = ""
        for line in lines[path]:
            if line.strip() in ("not a dynamic executable", "statically linked"):
                failed = line.strip()
                continue
            if line.endswith("=> not found"):
                missing.add(line.strip().split(" ")[0])
                continue
            match = LDD_LINE.match(line)
            if match is None:
                failed = failed or line.strip()
                continue
            target = match.group(2)
            if target.startswith("/"):
                resolved.add(os.path.realpath(target))
        results[path] = LddResult(frozenset(resolved), frozenset(missing), failed)
    return results


def run_lddtree(python: str, lddtree: str, paths: Sequence[str]) -> dict[str, frozenset[str]]:
    """`lddtree -l` over all files in one process; per file, the real paths it lists."""
    results: dict[str, frozenset[str]] = {}
    # One process for all files, as the benchmark demands; -l prints each file's list
    # starting with the file itself.
    proc = subprocess.run(
        [python, lddtree, "-l", *paths], capture_output=True, text=True, check=False
    )
    # Blocks come in the order the files were given; a start path seen again inside a
    # block (a library that is also a start) is a dependency, not a new block.
    order = {path: index for index, path in enumerate(paths)}
    position = -1
    current = ""
    acc: set[str] = set()
    for line in proc.stdout.splitlines():
        if order.get(line, -1) > position:
            position = order[line]
            if current:
                results[current] = frozenset(acc)
            current, acc = line, set()
        elif current:
            acc.add(os.path.realpath(line))
    if current:
        results[current] = frozenset(acc)
    return results
