"""Rebuild and re-push after a one-file change in rootfs/, against a cold build and push, in
the same run, interleaved (bench/timing.py): `--layers packages` builds of the curl example
recipe (eight layers) with a rootfs/ added, from the frozen universe, pushed to Debian's
docker-registry on 127.0.0.1. Target: the rebuild at most 0.2x the cold time, and the bytes
pushed only the top layer's (with the config).

cold:    an empty download cache and a repository the registry has never seen: every
         package fetched and extracted, every layer written and uploaded.
rebuild: the cache of the previous build, one file of rootfs/ changed, the same repository:
         unchanged layers come from smith's layer cache and the registry already has them
         (the push checks each blob first), so only the top layer is written and sent.

Both run in this process (`build` then `push_image`), so interpreter start-up counts for
neither.

    .venv/bin/python -m bench.bench_rebuild [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from bench.timing import Case, interleave, ratio, report
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
        top: list[int] = []
        counter = iter(range(1_000_000))

        def build_and_push(name: str, cache: Path, repo: str) -> None:
            output = work / f"{name}.oci"
            shutil.rmtree(output, ignore_errors=True)
            result = build(
                str(recipe),
                BuildOptions(
                    output=str(output), fmt="oci", cache_dir=str(cache), layers="packages"
                ),
            )
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
            sent["rebuild"].clear()
            push_time["rebuild"].clear()
            top.clear()
            times = interleave([Case("cold", cold), Case("rebuild", rebuild)], args.rounds)
        finally:
            reg.stop()
    report(times)
    ratio(times, "rebuild", "cold", "at most 0.2x: rebuild / cold, so <= 0.2")
    print(
        json.dumps(
            {
                "rounds": args.rounds,
                "bytes_pushed_cold": sent["cold"],
                "bytes_pushed_rebuild": sent["rebuild"],
                "top_layer_plus_config": top,
                "push_seconds": push_time,
            }
        )
    )


if __name__ == "__main__":
    main()
