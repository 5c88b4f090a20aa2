"""What one more entry of an image costs `smith minimize` in memory: the peak RSS of the
whole command (wait4's ru_maxrss of the child: every transient list, map and object of the
read, the closure and the writer counts, not only the tree) at two sizes of one layer of
realistic paths (tests/bigimage.py's deep_paths: nested directories, names of 8-30
characters), and the slope between them, (RSS(big) - RSS(small)) / (big - small) entries,
which leaves out what does not grow with the image (the interpreter, the imports, the
read buffers). Target (issue 21): a slope under 200 bytes per entry.

    .venv/bin/python -m bench.bench_entry_memory [--runs 2] [--entries 250000,1000000]
        [--images DIR]

`--images DIR` keeps the images there (made when missing), so that a change can be
measured against the same bytes; each output's manifest digest is printed, so that two
versions of smith can be seen to write the same image. Wall and CPU seconds (user+sys) are
given beside the memory, with the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.bench_minimize import SMITH, cpu_of, make_image, timed


def one_run(image: Path, entries: int, scratch: Path) -> dict[str, Any]:
    out = scratch / "out"
    argv = [SMITH, "minimize", str(image), "-o", str(out), "--json"]
    argv += ["--set-limit", f"LAYER_ENTRIES={entries + 10}"]
    (wall, rss, stdout), cpu = cpu_of(timed, argv)
    shutil.rmtree(out)
    return {"rss": rss, "wall": wall, "cpu": cpu, "manifest": json.loads(stdout)["manifest"]}


def spread(values: list[float], digits: int = 2) -> dict[str, float]:
    return {"min": round(min(values), digits), "median": round(statistics.median(values), digits)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--entries", default="250000,1000000")
    parser.add_argument("--images", type=Path)
    args = parser.parse_args()
    sizes = sorted(int(n) for n in args.entries.split(","))
    if len(sizes) != 2:
        raise SystemExit("--entries: two sizes, e.g. 250000,1000000")
    with tempfile.TemporaryDirectory(prefix="bench-entry-memory-", dir="/var/tmp") as tmp:
        scratch = Path(tmp)
        images = {}
        for entries in sizes:
            images[entries] = (args.images or scratch) / f"deep-{entries}"
            if not (images[entries] / "index.json").exists():
                make_image(images[entries], "write_deep_image", entries=entries)
        runs: dict[int, list[dict[str, Any]]] = {n: [] for n in sizes}
        loads = []
        for _ in range(args.runs):  # interleaved: a load spike hits both sizes alike
            for entries in sizes:
                loads.append(os.getloadavg()[0])
                runs[entries].append(one_run(images[entries], entries, scratch))
                print(f"{entries}: {runs[entries][-1]}", file=sys.stderr)
    # The largest peak of each size: what the command needed, however the run went.
    peak = {n: max(r["rss"] for r in runs[n]) for n in sizes}
    small, big = sizes
    report = {
        "entries": sizes,
        "rounds": args.runs,
        "load_average_1min": spread(loads),
        "peak_rss_mib": {n: round(peak[n] / 2**20, 1) for n in sizes},
        "peak_rss_bytes_per_entry": {n: round(peak[n] / n) for n in sizes},
        "slope_bytes_per_entry": round((peak[big] - peak[small]) / (big - small)),
        "target_slope_bytes_per_entry": 200,
        "wall_seconds": {n: spread([r["wall"] for r in runs[n]]) for n in sizes},
        "cpu_seconds": {n: spread([r["cpu"] for r in runs[n]]) for n in sizes},
        "output_manifest": {n: sorted({r["manifest"] for r in runs[n]}) for n in sizes},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
