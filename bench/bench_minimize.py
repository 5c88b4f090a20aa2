"""Benchmark: `smith minimize` of the Debian nginx test image against the floor, which is
decompressing and unpacking every layer once with `tar -xzf` (every byte must be read once),
measured in the same run, alternating, median of N. Target: at most 1.5x the floor.

Also reported: image size before and after, and smith's peak memory (ru_maxrss of the
process, from wait4).

    .venv/bin/python -m bench.bench_minimize [--runs 3] [--big]

`--big` adds a synthetic 1 GiB image (see tests/bigimage.py) for the peak-memory figure.
The test image is built (or taken from pytest's cache) by tests/debian_image.py.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.debian_image import debian_images
from tests.tools import PROJECT

SMITH = str(PROJECT / ".venv/bin/smith")
NGINX_PATHS = ("/etc/nginx", "/usr/lib/nginx/modules", "/usr/share/nginx")


def timed(argv: list[str]) -> tuple[float, int, str]:
    """Wall time, peak RSS in bytes, stdout of one child process."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.PIPE)
        _pid, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        assert proc.stderr is not None
        err = proc.stderr.read().decode()
        proc.stderr.close()
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"{argv[0]} failed: {err}")
        out.seek(0)
        return elapsed, usage.ru_maxrss * 1024, out.read().decode()


def layer_blobs(layout: Path) -> list[Path]:
    index = json.loads((layout / "index.json").read_text())
    digest = index["manifests"][0]["digest"].removeprefix("sha256:")
    manifest = json.loads((layout / "blobs/sha256" / digest).read_text())
    return [
        layout / "blobs/sha256" / d["digest"].removeprefix("sha256:") for d in manifest["layers"]
    ]


def floor_run(layout: Path, scratch: Path) -> float:
    """tar -xzf of every layer, in order, into one directory (no whiteout handling: the
    floor only reads and writes every byte once)."""
    target = scratch / "floor"
    target.mkdir()
    start = time.perf_counter()
    for blob in layer_blobs(layout):
        subprocess.run(["tar", "-xzf", str(blob), "-C", str(target)], check=True)
    elapsed = time.perf_counter() - start
    shutil.rmtree(target)
    return elapsed


def smith_run(layout: Path, scratch: Path, paths: tuple[str, ...]) -> tuple[float, int, Any]:
    out = scratch / "out"
    argv = [SMITH, "minimize", str(layout), "-o", str(out), "--json"]
    for path in paths:
        argv += ["--path", path]
    env_tmp = scratch / "tmp"
    env_tmp.mkdir(exist_ok=True)
    os.environ["TMPDIR"] = str(env_tmp)
    elapsed, rss, stdout = timed(argv)
    shutil.rmtree(out)
    return elapsed, rss, json.loads(stdout)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--big", action="store_true")
    args = parser.parse_args()
    cache = PROJECT / ".pytest_cache" / "d" / "smith-debian"
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="smith-bench-", dir="/var/tmp") as tmp:
        scratch = Path(tmp)
        images = debian_images(cache, scratch / "ci")
        floors, smiths, rss = [], [], []
        summary: Any = None
        for _ in range(args.runs):
            # Flush the previous run's writes first: write-back of one run must not be
            # charged to the next (the floor writes every file, smith two pack files).
            os.sync()
            floors.append(floor_run(images.nginx_layout, scratch))
            os.sync()
            elapsed, peak, summary = smith_run(images.nginx_layout, scratch, NGINX_PATHS)
            smiths.append(elapsed)
            rss.append(peak)
        floor, ours = statistics.median(floors), statistics.median(smiths)
        report: dict[str, Any] = {
            "image": "debian minbase + nginx (2 layers)",
            "floor_tar_xzf_seconds": round(floor, 2),
            "smith_minimize_seconds": round(ours, 2),
            "ratio": round(ours / floor, 2),
            "target_ratio": 1.5,
            "peak_rss_mib": round(max(rss) / 2**20, 1),
            "before": summary["before"],
            "after": summary["after"],
            "runs": args.runs,
            "all_floor": [round(x, 2) for x in floors],
            "all_smith": [round(x, 2) for x in smiths],
        }
        if args.big:
            from tests.bigimage import BIG_KEPT, write_big_image

            big = scratch / "big"
            write_big_image(big)
            os.sync()
            elapsed, peak, big_summary = smith_run(big, scratch, BIG_KEPT)
            os.sync()
            big_floor = floor_run(big, scratch)
            report["big_image"] = {
                "uncompressed_bytes": big_summary["before"]["bytes"],
                "smith_seconds": round(elapsed, 2),
                "floor_seconds": round(big_floor, 2),
                "ratio": round(elapsed / big_floor, 2),
                "peak_rss_mib": round(peak / 2**20, 1),
            }
        print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
