"""Benchmark: fetch + extract the packages of a request, against `rpm2cpio | cpio -idm`.

    .venv/bin/python -m bench.bench_extract [--rounds 7] [--request tinyhttpd --request curl]

For each request, the fixture universe (tests/rpm_universe.py) is resolved, then, in the
same run and alternating round by round:
  smith:    download every package from a local HTTP server into an empty cache (checked
            against its sha256), check its header and payload digests, and extract it into
            a FileTree backed by an empty content store;
  baseline: `rpm2cpio PKG | cpio -idm` of the same (already local) packages into an
            empty directory.
The median of each is reported with the ratio smith/baseline (target: at most 1.5).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from smith.resolve.fetch import Fetcher
from smith.resolve.packages import fetch_packages
from smith.resolve.repo import RepoConfig, load_repos
from smith.resolve.rpm import add_rpm_to_tree
from smith.resolve.solver import ResolvedPackage, resolve
from smith.resolve.store import ContentStore
from smith.tree import FileTree
from tests.rpm_universe import cached_universe, start_http_server

PROJECT = Path(__file__).resolve().parent.parent
WORKERS = 1


def run_smith(pkgs: list[ResolvedPackage], work: Path) -> float:
    fetcher = Fetcher(work / "cache")
    store = ContentStore(work / "store")
    tree = FileTree()
    start = time.perf_counter()
    for path in fetch_packages(pkgs, fetcher, workers=WORKERS):
        add_rpm_to_tree(tree, path, store)
    return time.perf_counter() - start


def run_baseline(paths: list[Path], work: Path) -> float:
    dest = work / "root"
    dest.mkdir()
    start = time.perf_counter()
    for p in paths:
        subprocess.run(f"rpm2cpio '{p}' | cpio -idm --quiet", shell=True, cwd=dest, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--request", action="append", default=[])
    parser.add_argument("--workers", type=int, default=1, help="parallel downloads")
    args = parser.parse_args()
    global WORKERS
    WORKERS = args.workers
    requests = args.request or ["tinyhttpd", "curl"]
    universe = cached_universe(PROJECT / ".pytest_cache" / "d" / "smith-rpm-universe")
    proc, base = start_http_server(universe.root)
    try:
        meta = Path(tempfile.mkdtemp(prefix="bench-meta-"))
        repos = load_repos([RepoConfig("main", f"{base}repos/main/")], Fetcher(meta))
        for request in requests:
            pkgs = resolve([request], repos)
            local = [universe.repo_dir() / Path(p.url).name for p in pkgs]
            size = sum(p.stat().st_size for p in local)
            smith_times, base_times = [], []
            for _ in range(args.rounds):
                for fn, arg, out in (
                    (run_smith, pkgs, smith_times),
                    (run_baseline, local, base_times),
                ):
                    work = Path(tempfile.mkdtemp(prefix="bench-"))
                    try:
                        out.append(fn(arg, work))  # type: ignore[operator]
                    finally:
                        shutil.rmtree(work, ignore_errors=True)
            s, b = statistics.median(smith_times), statistics.median(base_times)
            # Rounds alternate, so the per-round ratio cancels most of a shared machine's noise.
            paired = statistics.median(x / y for x, y in zip(smith_times, base_times, strict=True))
            print(
                f"{request}: {len(pkgs)} packages, {size / 1e6:.1f} MB, {WORKERS} download(s) "
                f"at a time; smith fetch+extract {s * 1000:.0f} ms, rpm2cpio|cpio "
                f"{b * 1000:.0f} ms; ratio of medians {s / b:.2f}, median paired ratio "
                f"{paired:.2f} ({args.rounds} rounds)"
            )
        shutil.rmtree(meta, ignore_errors=True)
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
