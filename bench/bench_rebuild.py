"""Rebuild and re-push after a one-file change in rootfs/, against a cold build and push, in
the same run, interleaved (bench/timing.py): `--layers packages` builds of the curl example
recipe (eight layers) with a rootfs/ added, from the frozen universe, pushed to Debian's
docker-registry on 127.0.0.1. Target: the rebuild at most 0.2x the cold time, and the bytes
pushed only the top layer's (with the config).

cold:    an empty download cache and a repository the registry has never seen: every
         package fetched and extracted, every layer written and uploaded.
rebuild: the cache of the previous build, one file of rootfs/ changed, the same repository:
         a partial hit (smith/partial.py): no package is fetched or extracted (the tree is
         rebuilt from the previous build's listing), unchanged layers come from smith's
         layer cache and the registry already has them (the push checks each blob first,
         in parallel), so only the top layer is written and sent.

Both run in this process (`build` then `push_image`), so interpreter start-up counts for
neither. Printed: wall and CPU seconds (this process's user+sys: the registry's own CPU is
not in it), min and median, the load average before and after, each build's `cache`
block, and the seconds of build and push apart.

    .venv/bin/python -m bench.bench_rebuild [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from bench.timing import Case, cpu_ratio, interleave, ratio, report
from smith.build import BuildOptions, build
from smith.oci.push import push_image
from smith.oci.registry_options import RegistryOptions
from tests.golden_recipes import FROZEN_MAIN, recipe_copy
from tests.registry_servers import start_registry
from tests.tools import require_tool

RECIPE = "curl"
APP_FILE = Path("srv") / "app" / "settings.conf"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    registry_bin = require_tool("docker-registry")
    with tempfile.TemporaryDirectory(prefix="smith-bench-rebuild-") as tmp:
        work = Path(tmp)
        recipe = recipe_copy(RECIPE, work, str(FROZEN_MAIN)) / "smith.yaml"
        app = recipe.parent / "rootfs" / APP_FILE
        app.parent.mkdir(parents=True)
        reg = start_registry(work / "registry", registry_bin)
        options = RegistryOptions(insecure=True)
        sent: dict[str, list[int]] = {"cold": [], "rebuild": []}
        push_time: dict[str, list[float]] = {"cold": [], "rebuild": []}
        build_time: dict[str, list[float]] = {"cold": [], "rebuild": []}
        caches: dict[str, list[dict[str, object]]] = {"cold": [], "rebuild": []}
        top: list[int] = []
        counter = iter(range(1_000_000))

        def build_and_push(name: str, cache: Path, repo: str) -> None:
            output = work / f"{name}.oci"
            shutil.rmtree(output, ignore_errors=True)
            start = time.perf_counter()
            result = build(
                str(recipe),
                BuildOptions(
                    output=str(output), fmt="oci", cache_dir=str(cache), layers="packages"
                ),
            )
            build_time[name].append(round(time.perf_counter() - start, 3))
            caches[name].append(dict(result.cache))
            start = time.perf_counter()
            pushed = push_image(str(output), f"{reg.host}/{repo}:latest", options=options)
            push_time[name].append(round(time.perf_counter() - start, 3))
            sent[name].append(pushed.uploaded)
            if name == "rebuild":
                top.append(result.image.layers[-1].descriptor.size + result.image.config.size)

        def cold() -> None:
            n = next(counter)
            app.write_text(f"setting = {n}\n")
            build_and_push("cold", work / f"cache-cold-{n}", f"cold-{n}")

        def rebuild() -> None:
            app.write_text(f"setting = {next(counter)}\n")  # the one-file change
            build_and_push("rebuild", work / "cache-warm", "warm")

        try:
            app.write_text("setting = warm-up\n")
            build_and_push("rebuild", work / "cache-warm", "warm")  # the previous build
            for table in (sent, push_time, build_time, caches):
                table["rebuild"].clear()
            top.clear()
            load = os.getloadavg()
            cases = [Case("cold", cold, cpu=True), Case("rebuild", rebuild, cpu=True)]
            times = interleave(cases, args.rounds)
        finally:
            reg.stop()
    print(f"load average before {load[0]:.2f}, after {os.getloadavg()[0]:.2f}")
    report(times)
    ratio(times, "rebuild", "cold", "at most 0.2x: rebuild / cold, so <= 0.2")
    cpu_ratio(times, "rebuild", "cold", "at most 0.2x")
    print(
        json.dumps(
            {
                "rounds": args.rounds,
                "bytes_pushed_cold": sent["cold"],
                "bytes_pushed_rebuild": sent["rebuild"],
                "top_layer_plus_config": top,
                "build_seconds": build_time,
                "push_seconds": push_time,
                "cache": {name: runs[-1] for name, runs in caches.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
