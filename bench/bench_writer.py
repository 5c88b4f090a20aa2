"""Layer writer speed against `tar --sort=name ... | gzip -n -6`, in the same run.

Usage: .venv/bin/python -m bench.bench_writer [--source DIR] [--mb 200]

Copies about MB megabytes of real files from SOURCE (default /usr/lib/x86_64-linux-gnu)
into a scratch tree, warms the page cache, then times the baseline pipeline and smith's
writer (gzip, zstd, none), each in its own process so that peak memory (max RSS) is its
own. Prints times, sizes and ratios to the baseline.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = """
import sys, time
from smith.oci.blobs import BlobStore
from smith.oci.compress import Compression
from smith.oci.writer import write_layer
from smith.tree import FileTree
tree = FileTree.from_directory(sys.argv[1])
start = time.perf_counter()
layer = write_layer(tree, BlobStore(sys.argv[2]), Compression(sys.argv[3]), 0)
print(time.perf_counter() - start, layer.descriptor.size)
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--source", default="/usr/lib/x86_64-linux-gnu")
    parser.add_argument("--mb", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="smith-bench-") as tmp:
        tree_dir = Path(tmp) / "tree"
        size = copy_sample(Path(args.source), tree_dir, args.mb << 20)
        subprocess.run(["tar", "-cf", "/dev/null", "-C", str(tree_dir), "."], check=True)  # warm
        print(f"tree: {size / 2**20:.0f} MiB of files from {args.source}")

        out = Path(tmp) / "baseline.tar.gz"
        start = time.perf_counter()
        subprocess.run(
            f"tar --sort=name --numeric-owner --owner=0 --group=0 --mtime=@0 -cf - -C {tree_dir} ."
            f" | gzip -n -6 > {out}",
            shell=True,
            check=True,
        )
        base_time = time.perf_counter() - start
        base_size = out.stat().st_size
        out.unlink()
        print(f"baseline tar|gzip -n -6: {base_time:6.2f} s  {base_size / 2**20:7.1f} MiB")

        for compression in ("gzip", "zstd", "none"):
            store = Path(tmp) / f"store-{compression}"
            proc = subprocess.Popen(
                [sys.executable, "-c", CHILD, str(tree_dir), str(store), compression],
                stdout=subprocess.PIPE,
                text=True,
            )
            assert proc.stdout is not None
            output = proc.stdout.read()
            # wait4 gives this child's own peak RSS, not the maximum over all children.
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            assert proc.returncode == 0, f"smith {compression} failed"
            seconds, blob_size = output.split()
            t, s = float(seconds), int(blob_size)
            shutil.rmtree(store)
            print(
                f"smith {compression:4}: {t:6.2f} s  {s / 2**20:7.1f} MiB   "
                f"time ratio {t / base_time:.2f}  size ratio {s / base_size:.3f}  "
                f"peak RSS {usage.ru_maxrss / 1024:.0f} MiB"
            )


if __name__ == "__main__":
    main()
