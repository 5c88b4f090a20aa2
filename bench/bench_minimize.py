"""Benchmark: `smith minimize` of the Debian nginx test image against the floor, which is
decompressing and unpacking every layer once with `tar -xzf` (every byte must be read once),
measured in the same run, alternating, median of N. Target: at most 1.5x the floor.

Also reported: image size before and after, and smith's peak memory (ru_maxrss of the
process, from wait4).

    .venv/bin/python -m bench.bench_minimize [--runs 3] [--big]

`--big` adds a synthetic 1 GiB image (see tests/bigimage.py) for the peak-memory figure;
`--big-gib 2` makes it 2 GiB (half in one kept file, half in 1 MiB files that are dropped).
`--entries 1000000` adds a layer of that many small files (100 bytes each, 1000 to a
directory, all dropped), against the same `tar -xzf` floor: the per-entry cost.
`--host-entries 78000 --host-bytes 1620000000` adds an image as real ones are: the host's
own files under /usr (ELF programs and libraries, data, scripts, symlinks) up to that many
entries or bytes, one `pigz -6` layer, `/usr/bin/bash` kept (tests/bigimage.py). The
synthetic images are also timed against `pigz -dc` of every layer (inflating alone), and
run `--runs` rounds (min and median), interleaved; CPU seconds (user+sys of each child,
from wait4) are given beside wall seconds, with the load average.
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
CPU = {"last": 0.0}  # user+sys seconds of the children of the run being timed
NGINX_PATHS = ("/etc/nginx", "/usr/lib/nginx/modules", "/usr/share/nginx")


def timed(argv: list[str]) -> tuple[float, int, str]:
    """Wall time, peak RSS in bytes, stdout of one child process (its CPU seconds are added
    to CPU["last"])."""
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
        CPU["last"] += usage.ru_utime + usage.ru_stime
        out.seek(0)
        return elapsed, usage.ru_maxrss * 1024, out.read().decode()


def run_child(argv: list[str]) -> None:
    """Run a peer's command, stdout discarded, adding its CPU seconds to CPU["last"]."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{argv} failed ({proc.returncode})")
    CPU["last"] += usage.ru_utime + usage.ru_stime


def cpu_of(run: Any, *args: Any) -> tuple[Any, float]:
    """What `run(*args)` returns, and the CPU seconds of the children it ran."""
    CPU["last"] = 0.0
    return run(*args), CPU["last"]


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
        run_child(["tar", "-xzf", str(blob), "-C", str(target)])
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
    parser.add_argument("--host-entries", type=int, default=0)
    parser.add_argument("--host-bytes", type=int, default=1_620_000_000)
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
        if args.host_entries:
            host = scratch / "host"
            make_image(
                host,
                "write_host_image",
                entries=args.host_entries,
                max_bytes=args.host_bytes,
                program="/usr/bin/bash",
            )
            report["host_image"] = synthetic_report(host, scratch, (), args.runs)
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
    make_image(root, "write_big_image", **shape)


def make_image(root: Path, maker: str, **shape: Any) -> None:
    """tests/bigimage.py's image, made by a child process: tarfile keeps every member it
    wrote, and a bench process grown by a million of them would be counted in smith's
    peak RSS (ru_maxrss includes the pages a child shares with its parent until exec)."""
    code = (
        f"from pathlib import Path; from tests.bigimage import {maker} as w; "
        f"w(Path({str(root)!r}), **{shape!r})"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=PROJECT)


def pigz_run(layout: Path) -> float:
    """pigz -dc of every layer to /dev/null: the cost of inflating alone (no files written)."""
    start = time.perf_counter()
    for blob in layer_blobs(layout):
        run_child(["pigz", "-dc", str(blob)])
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
    cpu: dict[str, list[float]] = {"smith": [], "tar": [], "pigz": []}
    rss: list[int] = []
    summary: Any = None
    loads = []
    for _ in range(runs):
        os.sync()
        loads.append(os.getloadavg()[0])
        (elapsed, peak, summary), seconds = cpu_of(smith_run, image, scratch, paths, entries)
        print(
            f"smith minimize: {elapsed:.2f} s, CPU {seconds:.2f} s, peak RSS "
            f"{peak / 2**20:.0f} MiB",
            file=sys.stderr,
        )
        smiths.append(elapsed)
        cpu["smith"].append(seconds)
        rss.append(peak)
        os.sync()
        # Removing what the floor wrote is not timed, but can take long (ext4 with discard).
        elapsed, seconds = cpu_of(floor_run, image, scratch)
        tars.append(elapsed)
        cpu["tar"].append(seconds)
        # What tar wrote and removed is still being written back: pigz, like smith, starts
        # on a quiet disk (without it pigz took 5.1-9.1 s in one run of the host image).
        os.sync()
        elapsed, seconds = cpu_of(pigz_run, image)
        pigzs.append(elapsed)
        cpu["pigz"].append(seconds)
    ours = statistics.median(smiths)
    return {
        "file_bytes": summary["before"]["bytes"],  # of the files, not the tar
        "files": summary["before"]["files"],
        "compressed_bytes": sum(p.stat().st_size for p in layer_blobs(image)),
        "rounds": runs,
        "load_average_1min": spread(loads),
        "peer_commands": ["tar -xzf BLOB -C DIR", "pigz -dc BLOB >/dev/null"],
        "smith_seconds": spread(smiths),
        "tar_xzf_seconds": spread(tars),
        "pigz_dc_seconds": spread(pigzs),
        "cpu_seconds": {name: spread(values) for name, values in cpu.items()},
        "ratio_tar_xzf": round(ours / statistics.median(tars), 2),  # medians
        "ratio_pigz_dc": round(ours / statistics.median(pigzs), 2),
        "ratio_pigz_dc_min": round(min(smiths) / min(pigzs), 2),
        "cpu_ratio_pigz_dc": {
            "min": round(min(cpu["smith"]) / min(cpu["pigz"]), 2),
            "median": round(statistics.median(cpu["smith"]) / statistics.median(cpu["pigz"]), 2),
        },
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
