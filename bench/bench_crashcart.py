"""`crashcart attach ID -- true` against `runc exec ID true` and `nsenter -t PID -a true`.

Usage (root): .venv/bin/python -m bench.bench_crashcart [-n 30] [--toolbox DIR]

Starts one microcontainer (static busybox only, read-only root, uid 65534) with runc, builds
a toolbox unless one is given (with smith, from the example universe in out/universes, as
scripts/demo.sh builds it), then runs the three commands interleaved, N rounds, each a
fresh process as a user would type it. The container has no `true` of its own: runc exec and
nsenter run its busybox; crashcart runs the toolbox's, confined (capabilities, no_new_privs,
seccomp, the target's cgroups) in a private copy of the target's mount namespace with a
reaper, which is what a one-shot attach costs. `python -c pass` is timed alongside as
the floor of any CPython tool. Prints medians and ratios.

crashcart and smith are byte-compiled first, as an installed package would be: with
PYTHONDONTWRITEBYTECODE=1 (set on these machines) every run would otherwise recompile
them from source, which alone costs more than runc exec.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench.timing import byte_compile
from crashcart.toolbox import DEFAULT_RECIPE, build_toolbox, tree_size
from tests.crashcart_containers import make_bundle, running_container
from tests.rpm_universe import cached_universe


def time_command(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=30, help="rounds")
    parser.add_argument("--toolbox", type=Path, help="an existing toolbox directory")
    args = parser.parse_args()
    project = Path(__file__).resolve().parent.parent
    byte_compile(project)
    with tempfile.TemporaryDirectory(prefix="crashcart-bench-") as scratch:
        base = Path(scratch)
        toolbox = args.toolbox
        if toolbox is None:
            universe = cached_universe(project / "out" / "universes")
            recipe = yaml.safe_load(DEFAULT_RECIPE.read_text())
            recipe["repos"] = [{"name": "universe", "baseurl": str(universe.repo_dir())}]
            (base / "smith.yaml").write_text(yaml.safe_dump(recipe))
            toolbox = base / "toolbox"
            build_toolbox(base / "smith.yaml", toolbox, cache_dir=str(base / "cache"))
        print(f"toolbox: {tree_size(toolbox) / 1e6:.1f} MB in files at {toolbox}")
        bundle = base / "bundle"
        bundle.mkdir()
        make_bundle(bundle, "/usr/bin/busybox")
        with running_container("runc", f"cc-bench-{os.getpid()}", bundle) as container:
            crashcart = str(Path(sys.executable).with_name("crashcart"))
            commands = {
                "crashcart attach": [
                    crashcart,
                    "attach",
                    "--toolbox",
                    str(toolbox),
                    container.id,
                    "--",
                    "true",
                ],
                "runc exec": ["runc", "exec", container.id, "/app/busybox", "true"],
                # The floor for any Python tool: the interpreter starting and stopping.
                "python -c pass": [sys.executable, "-c", "pass"],
                "nsenter -a": ["nsenter", "-t", str(container.pid), "-a", "/app/busybox", "true"],
            }
            for argv in commands.values():  # warm caches once
                time_command(argv)
            times: dict[str, list[float]] = {name: [] for name in commands}
            for _ in range(args.n):
                for name, argv in commands.items():
                    times[name].append(time_command(argv))
    medians = {name: statistics.median(values) for name, values in times.items()}
    runc = medians["runc exec"]
    print(f"{'command':<18} {'median ms':>10} {'min ms':>8} {'vs runc exec':>13}")
    for name, values in times.items():
        print(
            f"{name:<18} {medians[name] * 1000:>10.1f} {min(values) * 1000:>8.1f} "
            f"{medians[name] / runc:>12.2f}x"
        )


if __name__ == "__main__":
    main()
