"""Benchmark: `smith minimize` of the Debian nginx test image against the floor, which is
decompressing and unpacking every layer once with `tar -xzf` (every byte must be read once),
measured in the same run, alternating, median of N. Target: at most 1.5x the floor.

Also reported: image size before and after, and smith's peak memory (ru_maxrss of the
process, from wait4).

    .venv/bin/python -m bench.bench_minimize [--runs 3] [--big]

`--big` adds a synthetic 1 GiB image (see tests/bigimage.py) for the peak-memory figure;
`--big-gib 2` makes it 2 GiB (half in one kept file, half in 1 MiB files that are dropped).
`--entries 1000000` adds a layer of that many small files (100 bytes each, 1000 to a
directory, all dropped), against the same `tar -xzf` floor: the per-entry cost. The
synthetic images are also timed against `pigz -dc` of every layer (inflating alone), and
run `--runs` rounds (min and median).
The test image is built (or taken from pytest's cache) by tests/debian_image.py.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
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
    print(f"floor (tar -xzf): {elapsed:.2f} s", file=sys.stderr)
    shutil.rmtree(target)
    return elapsed


def smith_run(
    layout: Path, scratch: Path, paths: tuple[str, ...], entries: int = 0
) -> tuple[float, int, Any]:
    out = scratch / "out"
    argv = [SMITH, "minimize", str(layout), "-o", str(out), "--json"]
    if entries:  # past smith's default bound on the entries of an image's layers
        argv += ["--set-limit", f"LAYER_ENTRIES={entries + 10}"]
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
    parser.add_argument("--big-gib", type=int, default=1)
    parser.add_argument("--entries", type=int, default=0)
    parser.add_argument("--skip-nginx", action="store_true")
    args = parser.parse_args()
    cache = PROJECT / ".pytest_cache" / "d" / "smith-debian"
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="smith-bench-", dir="/var/tmp") as tmp:
        scratch = Path(tmp)
        floors, smiths, rss = [], [], []
        summary: Any = None
        report: dict[str, Any] = {}
        layout = None if args.skip_nginx else debian_images(cache, scratch / "ci").nginx_layout
        for _ in range(args.runs if layout is not None else 0):
            assert layout is not None
            # Flush the previous run's writes first: write-back of one run must not be
            # charged to the next (the floor writes every file, smith two pack files).
            os.sync()
            floors.append(floor_run(layout, scratch))
            os.sync()
            elapsed, peak, summary = smith_run(layout, scratch, NGINX_PATHS)
            smiths.append(elapsed)
            rss.append(peak)
        if not args.skip_nginx:
            report = nginx_report(floors, smiths, rss, summary, args.runs)
        if args.big:
            from tests.bigimage import BIG_KEPT, MIB

            half = args.big_gib * 512 * MIB
            big = scratch / "big"
            make_big_image(big, big=half, small_count=half // MIB)
            report["big_image"] = synthetic_report(big, scratch, BIG_KEPT, args.runs)
        if args.entries:
            many = scratch / "many"
            make_big_image(many, big=0, small_count=args.entries, small_size=100)
            report["many_entries"] = {"entries": args.entries}
            report["many_entries"] |= synthetic_report(
                many, scratch, ("/bin/busybox",), args.runs, args.entries
            )
            peak = report["many_entries"]["peak_rss_mib"]["median"] * 2**20
            report["many_entries"]["peak_rss_bytes_per_entry"] = round(peak / args.entries)
        print(json.dumps(report, indent=2))


def make_big_image(root: Path, **shape: int) -> None:
    """tests/bigimage.py's image, made by a child process: tarfile keeps every member it
    wrote, and a bench process grown by a million of them would be counted in smith's
    peak RSS (ru_maxrss includes the pages a child shares with its parent until exec)."""
    code = (
        "from pathlib import Path; from tests.bigimage import write_big_image as w; "
        f"w(Path({str(root)!r}), **{shape!r})"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=PROJECT)


def pigz_run(layout: Path) -> float:
    """pigz -dc of every layer to /dev/null: the cost of inflating alone (no files written)."""
    start = time.perf_counter()
    for blob in layer_blobs(layout):
        subprocess.run(["pigz", "-dc", str(blob)], stdout=subprocess.DEVNULL, check=True)
    elapsed = time.perf_counter() - start
    print(f"floor (pigz -dc): {elapsed:.2f} s", file=sys.stderr)
    return elapsed


def spread(values: list[float]) -> dict[str, float]:
    return {"min": round(min(values), 2), "median": round(statistics.median(values), 2)}


def synthetic_report(
    image: Path, scratch: Path, paths: tuple[str, ...], runs: int, entries: int = 0
) -> dict[str, Any]:
    """smith minimize, tar -xzf and pigz -dc of the image, alternating, `runs` rounds."""
    smiths: list[float] = []
    tars: list[float] = []
    pigzs: list[float] = []
    rss: list[int] = []
    summary: Any = None
    for _ in range(runs):
        os.sync()
        elapsed, peak, summary = smith_run(image, scratch, paths, entries)
        print(f"smith minimize: {elapsed:.2f} s, peak RSS {peak / 2**20:.0f} MiB", file=sys.stderr)
        smiths.append(elapsed)
        rss.append(peak)
        os.sync()
        # Removing what the floor wrote is not timed, but can take long (ext4 with discard).
        tars.append(floor_run(image, scratch))
        pigzs.append(pigz_run(image))
    ours = statistics.median(smiths)
    return {
        "file_bytes": summary["before"]["bytes"],  # of the files, not the tar
        "rounds": runs,
        "smith_seconds": spread(smiths),
        "tar_xzf_seconds": spread(tars),
        "pigz_dc_seconds": spread(pigzs),
        "ratio_tar_xzf": round(ours / statistics.median(tars), 2),  # medians
        "ratio_pigz_dc": round(ours / statistics.median(pigzs), 2),
        "peak_rss_mib": {k: round(v / 2**20, 1) for k, v in spread(list(map(float, rss))).items()},
    }


def nginx_report(
    floors: list[float], smiths: list[float], rss: list[int], summary: Any, runs: int
) -> dict[str, Any]:
    floor, ours = statistics.median(floors), statistics.median(smiths)
    return {
        "image": "debian minbase + nginx (2 layers)",
        "floor_tar_xzf_seconds": round(floor, 2),
        "smith_minimize_seconds": round(ours, 2),
        "ratio": round(ours / floor, 2),
        "target_ratio": 1.5,
        "peak_rss_mib": round(max(rss) / 2**20, 1),
        "before": summary["before"],
        "after": summary["after"],
        "runs": runs,
        "all_floor": [round(x, 2) for x in floors],
        "all_smith": [round(x, 2) for x in smiths],
    }


if __name__ == "__main__":
    main()
