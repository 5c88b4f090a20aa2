"""The many-entry layers of issue 23, at smith's default limits, through the hostile-input
corpus runner (tests/hostile.py: one stderr line, no traceback, nothing left, wall < 30 s,
the child's own peak RSS < 512 MiB, bytes written < 64 MiB):

- 1,000,000 entries (100-byte files, 1000 to a directory, one gzip layer): refused in one
  line by LAYER_ENTRIES (500,000) — how fast, with how much memory;
- 300,000 entries (the file count of a large Python or node image): minimized, not refused.

    .venv/bin/python -m bench.bench_layer_entries [--runs 3] [--entries 1000000,300000]

Prints wall time (min, median), the child's CPU time (user+sys from wait4's rusage, of the
runner's children: smith and its two `find` snapshots), peak RSS and bytes written, and the
load average.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
from pathlib import Path

from bench.bench_minimize import make_big_image
from tests.hostile import LIMITS, Case, Outcome, Sandbox, check_run

DEFAULTS = dict.fromkeys(LIMITS, "")  # an empty SMITH_LIMIT_* is the default


def minimize_of(image: Path, box: Sandbox) -> list[str]:
    out = str(box.out / "min.tar")
    return ["minimize", str(image), "-o", out, "--entrypoint", "/bin/busybox", "-q"]


def one_run(image: Path, entries: int, work: Path) -> tuple[Outcome, float]:
    refused = entries > 500_000
    case = Case(
        f"layer-of-{entries}-entries",
        "hang",
        lambda box: minimize_of(image, box),
        "SMITH_LIMIT_LAYER_ENTRIES" if refused else "",
        status=1 if refused else 0,
        env=DEFAULTS,
    )
    box = Sandbox(Path(tempfile.mkdtemp(dir=work)))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    outcome = check_run(box, case)  # raises AssertionError naming a broken promise
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return outcome, cpu


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--entries", default="1000000,300000")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-entries-") as scratch:
        work = Path(scratch)
        images = {}
        for entries in (int(n) for n in args.entries.split(",")):
            images[entries] = work / f"image-{entries}"
            make_big_image(images[entries], big=0, small_count=entries, small_size=100)
        results: dict[int, list[tuple[Outcome, float]]] = {n: [] for n in images}
        for _ in range(args.runs):  # interleaved: a load spike hits every size alike
            for entries, image in images.items():
                results[entries].append(one_run(image, entries, work))
        for entries, runs in results.items():
            walls = [o.seconds for o, _ in runs]
            cpus = [c for _, c in runs]
            peaks = [o.peak_mib for o, _ in runs]
            print(
                f"{entries} entries: exit {runs[0][0].status}, "
                f"wall min {min(walls):.1f} s median {statistics.median(walls):.1f} s, "
                f"cpu min {min(cpus):.1f} s median {statistics.median(cpus):.1f} s, "
                f"peak RSS max {max(peaks):.0f} MiB, "
                f"written {max(o.written for o, _ in runs) / 2**20:.1f} MiB; "
                f"stderr {runs[0][0].stderr.strip()[:200]!r}"
            )
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
