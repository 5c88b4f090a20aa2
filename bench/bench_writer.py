"""Layer writer speed against `tar --sort=name ... | gzip -n -6` and `| zstd -3 -T2`.

Usage: .venv/bin/python -m bench.bench_writer [--source DIR] [--mb 200] [--rounds 5]

Copies about MB megabytes of real files from SOURCE (default /usr/lib/x86_64-linux-gnu)
into a scratch tree, warms the page cache, then times, interleaved, the peers' pipelines
(`tar | gzip -n -6` and `tar | zstd -3 -T2`) and smith's writer (gzip, zstd, none), each
in its own process so that peak memory (max RSS) is its own. Prints the commands, min and
median times, sizes and ratios.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.timing import Case, interleave, load_reference, ratio, report

CHILD = """
import sys, time
from smith.oci.blobs import BlobStore
from smith.oci.compress import Compression
from smith.oci.writer import write_layer
from smith.tree import FileTree
tree = FileTree.from_directory(sys.argv[1])
start, cpu = time.perf_counter(), time.process_time()
layer = write_layer(tree, BlobStore(sys.argv[2]), Compression(sys.argv[3]), 0)
print(time.perf_counter() - start, time.process_time() - cpu, layer.descriptor.size)
"""


def copy_sample(source: Path, dest: Path, limit: int) -> int:
    total = 0
    for dirpath, dirnames, filenames in os.walk(source):
        dirnames.sort()
        for name in sorted(filenames):
            src = Path(dirpath) / name
            if src.is_symlink() or not src.is_file():
                continue
            size = src.stat().st_size
            if total + size > limit:
                continue
            target = dest / src.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
            total += size
        if total >= limit * 0.98:
            break
    return total


def smith_case(name: str, tree_dir: Path, tmp: Path, compression: str) -> Case:
    """smith's writer in its own process; the time is write_layer's own (the child prints
    it), the size and peak RSS are recorded for the report."""
    store = tmp / f"store-{compression}"

    def run() -> float:
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(tree_dir), str(store), compression],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        output = proc.stdout.read()
        # wait4 gives this child's own peak RSS, not the maximum over all children.
        _, status, usage = os.wait4(proc.pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, f"smith {compression} failed"
        seconds, cpu, blob_size = output.split()
        SIZES[name] = int(blob_size)
        CPU.setdefault(name, []).append(float(cpu))
        RSS[name] = usage.ru_maxrss / 1024
        shutil.rmtree(store)
        return float(seconds)

    return Case(name, run)


SIZES: dict[str, int] = {}
RSS: dict[str, float] = {}
# CPU seconds (user + system, all threads and processes) per round: with 6 engineers on 2
# cores, wall times move with the load; CPU time much less.
CPU: dict[str, list[float]] = {}


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def pipeline_case(name: str, tree_dir: Path, out: Path, compressor: str) -> Case:
    command = (
        f"tar --sort=name --numeric-owner --owner=0 --group=0 --mtime=@0 -cf - -C {tree_dir} ."
        f" | {compressor} > {out}"
    )

    def run() -> None:
        before = children_cpu()
        subprocess.run(command, shell=True, check=True)
        CPU.setdefault(name, []).append(children_cpu() - before)
        SIZES[name] = out.stat().st_size
        out.unlink()

    return Case(name, run, command)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--source", default="/usr/lib/x86_64-linux-gnu")
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="smith-bench-") as tmp_name:
        tmp = Path(tmp_name)
        tree_dir = tmp / "tree"
        size = copy_sample(Path(args.source), tree_dir, args.mb << 20)
        subprocess.run(["tar", "-cf", "/dev/null", "-C", str(tree_dir), "."], check=True)  # warm
        print(f"tree: {size / 2**20:.0f} MiB of files from {args.source}")
        cases = [
            load_reference(),
            pipeline_case("tar | gzip -n -6", tree_dir, tmp / "base.tar.gz", "gzip -n -6"),
            pipeline_case("tar | zstd -3 -T2", tree_dir, tmp / "base.tar.zst", "zstd -q -3 -T2"),
            # The zstd CLI is an older libzstd than the zstandard wheel's, whose level 3
            # compresses smaller: -4 is the CLI's nearest size on the other side.
            pipeline_case("tar | zstd -4 -T2", tree_dir, tmp / "base4.tar.zst", "zstd -q -4 -T2"),
            smith_case("smith gzip", tree_dir, tmp, "gzip"),
            smith_case("smith zstd", tree_dir, tmp, "zstd"),
            smith_case("smith none", tree_dir, tmp, "none"),
        ]
        times = interleave(cases, args.rounds, timer=True)
        print(f"\n{args.rounds} rounds, interleaved (smith: write_layer's own time):")
        report(times)
        print()
        for name, blob in SIZES.items():
            rss = f"  peak RSS {RSS[name]:.0f} MiB" if name in RSS else ""
            cpu = f"  CPU min {min(CPU[name]):.2f} s median {statistics.median(CPU[name]):.2f} s"
            print(f"{name}: {blob / 2**20:.2f} MiB{cpu}{rss}")
        print()
        ratio(times, "tar | gzip -n -6", "smith gzip")
        ratio(times, "tar | zstd -3 -T2", "smith zstd", "at least 1x")
        ratio(times, "tar | zstd -4 -T2", "smith zstd")
        for peer in ("tar | zstd -3 -T2", "tar | zstd -4 -T2"):
            by_cpu = min(CPU[peer]) / min(CPU["smith zstd"])
            print(f"CPU {peer} / smith zstd: {by_cpu:.2f}x at the min")
        base = SIZES["tar | zstd -3 -T2"]
        print(f"size smith zstd / tar | zstd -3 -T2: {SIZES['smith zstd'] / base:.3f}")
        print(
            f"size smith gzip / tar | gzip -n -6: {SIZES['smith gzip'] / SIZES['tar | gzip -n -6']:.3f}"
        )


if __name__ == "__main__":
    main()
