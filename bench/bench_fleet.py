"""The example recipes as one fleet, pushed to a local docker-registry: what the registry
stores, and what one changed package of the lock costs to push again.

    .venv/bin/python -m bench.bench_fleet [--layers single|packages]

1. every recipe of recipes/ is locked against the universe's base repository (zlib 1.0-1),
   built in one run (`smith build R1 R2 ... -o DIR`, timed, against the same recipes built
   one run each), and each image pushed (`smith build R --push`, from the build cache);
   printed: the unique blob bytes the registry holds;
2. zlib is changed in every lock that holds it (1.0-1 -> the updates repository's 1.0-2,
   a few bytes more in libz), the fleet built and pushed again: printed, the bytes pushed
   (blobs the registry did not have) and the registry's unique blob bytes after.

`--layers` and `--layer-budget` are passed to every build.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.golden_recipes import recipe_copy, recipe_names
from tests.registry_servers import start_registry
from tests.rpm_universe import cached_universe, start_http_server
from tests.tools import require_tool
from tests.update_repos import build_update_repos

PROJECT = Path(__file__).resolve().parent.parent
SMITH = str(Path(sys.executable).with_name("smith"))


def run(*args: str) -> Any:
    proc = subprocess.run([SMITH, *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"smith {' '.join(args)} failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout) if "--json" in args else None


def registry_bytes(root: Path) -> int:
    """The unique blob bytes a docker-registry stores (each blob once, by digest)."""
    blobs = root / "data" / "docker" / "registry" / "v2" / "blobs"
    return sum(p.stat().st_size for p in blobs.rglob("data") if p.is_file())


def change_zlib(lock: Path, updates: Path) -> bool:
    """Point the lock's zlib at the updates repository's 1.0-2; False if it has none."""
    doc = json.loads(lock.read_text())
    for pkg in doc["packages"]:
        if pkg["name"] == "zlib":
            rpm = next(updates.glob("zlib-1.0-2.*.rpm"))
            digest = subprocess.run(
                ["sha256sum", str(rpm)], capture_output=True, text=True, check=True
            ).stdout.split()[0]
            pkg.update(
                release="2",
                nevra=pkg["nevra"].replace("-1.0-1.", "-1.0-2."),
                url=rpm.as_uri(),
                sha256=digest,
                size=rpm.stat().st_size,
            )
            lock.write_text(json.dumps(doc, sort_keys=True, indent=2) + "\n")
            return True
    return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", default="", help="a layering strategy for every build")
    parser.add_argument("--layer-budget", default="", help="and a layer budget")
    args = parser.parse_args()
    layers = ("--layers", args.layers) if args.layers else ()
    layers += ("--layer-budget", args.layer_budget) if args.layer_budget else ()
    universe = cached_universe(PROJECT / "out" / "universes")
    with tempfile.TemporaryDirectory(prefix="smith-bench-fleet-") as tmp_name:
        tmp = Path(tmp_name)
        repos = build_update_repos(universe, tmp / "repos-root")
        proc, url = start_http_server(repos)
        registry = start_registry(tmp / "registry", require_tool("docker-registry"))
        try:
            names = recipe_names()
            recipes = [recipe_copy(n, tmp / "recipes", url + "repos/base") for n in names]
            cache = str(tmp / "cache")
            for recipe in recipes:
                run("lock", str(recipe), "--cache-dir", cache)

            def fleet(out: str, cache_dir: str) -> float:
                start = time.perf_counter()
                run("build", *map(str, recipes), "-o", str(tmp / out), "--locked",
                    "--cache-dir", cache_dir, "--json", *layers)  # fmt: skip
                return time.perf_counter() - start

            def one_by_one(cache_dir: str) -> float:
                start = time.perf_counter()
                for recipe in recipes:
                    run("build", str(recipe), "-o", str(tmp / "alone" / recipe.name),
                        "--locked", "--cache-dir", cache_dir, "--json", *layers)  # fmt: skip
                return time.perf_counter() - start

            (tmp / "alone").mkdir()
            alone = one_by_one(str(tmp / "cache-alone"))
            together = fleet("v1", str(tmp / "cache-fleet"))
            print(f"{len(recipes)} recipes ({', '.join(names)}), layers {args.layers or 'default'}")
            print(f"cold builds: one run each {alone:.2f} s, one fleet run {together:.2f} s")

            def push_all(version: str, cache_dir: str) -> int:
                pushed = 0
                each = []
                for recipe in recipes:
                    doc = run("build", str(recipe), "-o", str(tmp / version / recipe.name),
                              "--locked", "--cache-dir", cache_dir, "--json", "--insecure",
                              "--push", f"docker://{registry.host}/{recipe.name}:{version}",
                              *layers)  # fmt: skip
                    pushed += doc["cache"]["pushed_bytes"]
                    each.append(f"{recipe.name} {doc['cache']['pushed_bytes']}")
                    each[-1] += f" ({len(doc['layers'])} layers)"
                print(f"{version} pushed: {', '.join(each)}")
                return pushed

            first = push_all("v1", str(tmp / "cache-fleet"))
            stored = registry_bytes(registry.root)
            print(f"v1: pushed {first} bytes; the registry holds {stored} unique blob bytes")
            changed = [
                r.name
                for r in recipes
                if change_zlib(r / "smith.lock", repos / "repos" / "updates")
            ]
            fleet("v2", str(tmp / "cache-fleet"))
            second = push_all("v2", str(tmp / "cache-fleet"))
            after = registry_bytes(registry.root)
            print(f"zlib 1.0-1 -> 1.0-2 in the locks of {', '.join(changed) or 'none'}")
            print(f"v2: pushed {second} bytes; the registry holds {after} unique blob bytes "
                  f"(+{after - stored})")  # fmt: skip
        finally:
            registry.stop()
            proc.terminate()
            proc.wait()
            shutil.rmtree(tmp / "registry", ignore_errors=True)


if __name__ == "__main__":
    main()
