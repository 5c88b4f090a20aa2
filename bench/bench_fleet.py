"""The example recipes plus a few more as one fleet, pushed to a local docker-registry:
what the registry stores, and what one changed package of the lock costs to push again,
with each layering: `single`, `packages` and `packages --share-layers`.

    .venv/bin/python -m bench.bench_fleet [--layer-budget N]

For each layering, on a fresh registry:
1. every recipe (recipes/ and EXTRA below) is locked against the universe's base
   repository (zlib 1.0-1), then built and pushed in one run, timed (`smith build R1 R2 ...
   -o DIR --push REGISTRY --tag fleet:v1`: each image to REGISTRY/NAME:v1, a blob an
   earlier image of the run pushed mounted from its repository, not sent again); printed:
   the bytes uploaded (smith's --json, each image's push.uploaded_bytes), the blobs
   mounted and the unique blob bytes the registry holds;
2. zlib is changed in every lock that holds it (1.0-1 -> the updates repository's 1.0-2,
   a few bytes more in libz), the fleet built and pushed again (NAME:v2): printed, the
   bytes uploaded (blobs neither the repository nor an earlier image had) and the
   registry's growth.
A table of the three layerings ends the output.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
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


# A few more recipes beside the examples: tools that share glibc and more with each other
# (and curl's libraries with gdb's), as the images of one team would.
EXTRA = {
    "strace": "/usr/bin/strace",
    "lsof": "/usr/bin/lsof",
    "gdb": "/usr/bin/gdb",
    "ip": "/usr/sbin/ip",
}
EXTRA_PACKAGES = {"ip": "iproute2"}
MODES = {
    "single": ("--layers", "single"),
    "packages": ("--layers", "packages"),
    "share": ("--layers", "packages", "--share-layers"),
}


def extra_recipe(name: str, program: str, root: Path, repo: str) -> Path:
    """A recipe of one more tool of the universe, as the examples are written."""
    dest = root / name
    dest.mkdir(parents=True)
    package = EXTRA_PACKAGES.get(name, name)
    (dest / "smith.yaml").write_text(
        f"package: {package}\nrepos:\n  - name: universe\n    baseurl: {repo}\n"
        f"entrypoint: [{program}]\n"
    )
    return dest


@dataclass(frozen=True)
class Row:
    mode: str
    build_s: float  # the build and push of v1
    build_cpu: float  # its user+sys seconds
    pushed_v1: int
    mounted_v1: int  # blobs mounted from an earlier image's repository
    stored_v1: int
    pushed_v2: int
    stored_v2: int
    layers: int  # over all images


@dataclass(frozen=True)
class Pushed:
    wall: float
    cpu: float  # the child's user+sys seconds
    uploaded: int  # bytes, over all images
    mounted: int  # blobs, over all images
    layers: int  # over all images


def count_layers(out: Path, recipes: list[Path]) -> int:
    layers = 0
    for recipe in recipes:
        image = out / recipe.name
        index = json.loads((image / "index.json").read_text())
        digest = index["manifests"][0]["digest"].split(":")[1]
        layers += len(json.loads((image / "blobs" / "sha256" / digest).read_text())["layers"])
    return layers


def run_mode(mode: str, tmp: Path, url: str, repos: Path, budget: tuple[str, ...]) -> Row:
    registry = start_registry(tmp / f"registry-{mode}", require_tool("docker-registry"))
    try:
        root = tmp / f"recipes-{mode}"
        base = url + "repos/base"
        recipes = [recipe_copy(n, root, base) for n in recipe_names()]
        recipes += [extra_recipe(n, p, root, base) for n, p in EXTRA.items()]
        cache = str(tmp / "cache")  # the download cache: shared by the modes
        for recipe in recipes:
            run("lock", str(recipe), "--cache-dir", cache)

        def fleet(version: str) -> Pushed:
            """The fleet built and pushed (REGISTRY/NAME:VERSION) in one smith run."""
            out = tmp / mode / version
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            docs = run("build", *map(str, recipes), "-o", str(out), "--locked", "--cache-dir",
                       str(tmp / f"cache-{mode}"), "--json", *MODES[mode], *budget,
                       "--push", registry.host, "--insecure", "--tag", f"fleet:{version}")  # fmt: skip
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
            return Pushed(
                time.perf_counter() - start,
                cpu,
                sum(d["push"]["uploaded_bytes"] for d in docs),
                sum(d["push"]["mounted_blobs"] for d in docs),
                count_layers(out, recipes),
            )

        v1 = fleet("v1")
        stored_v1 = registry_bytes(registry.root)
        changed = [r.name for r in recipes if change_zlib(r / "smith.lock", repos)]
        v2 = fleet("v2")
        stored_v2 = registry_bytes(registry.root)
        print(f"{mode}: {len(recipes)} recipes built and pushed in {v1.wall:.2f} s "
              f"({v1.cpu:.2f} s CPU), {v1.layers} layers; v1 uploaded {v1.uploaded} "
              f"({v1.mounted} blobs mounted), stored {stored_v1}; zlib changed in "
              f"{', '.join(changed)}; v2 uploaded {v2.uploaded}, stored {stored_v2}")  # fmt: skip
        return Row(mode, v1.wall, v1.cpu, v1.uploaded, v1.mounted, stored_v1, v2.uploaded,
                   stored_v2, v1.layers)  # fmt: skip
    finally:
        registry.stop()
        shutil.rmtree(tmp / f"registry-{mode}", ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layer-budget", default="", help="a layer budget for every build")
    args = parser.parse_args()
    budget = ("--layer-budget", args.layer_budget) if args.layer_budget else ()
    universe = cached_universe(PROJECT / "out" / "universes")
    with tempfile.TemporaryDirectory(prefix="smith-bench-fleet-") as tmp_name:
        tmp = Path(tmp_name)
        repos = build_update_repos(universe, tmp / "repos-root")
        proc, url = start_http_server(repos)
        try:
            rows = [run_mode(m, tmp, url, repos / "repos" / "updates", budget) for m in MODES]
        finally:
            proc.terminate()
            proc.wait()
    names = [*recipe_names(), *EXTRA]
    print(f"\n{len(names)} recipes ({', '.join(names)}), budget {args.layer_budget or 8}")
    print(f"{'layering':<10} {'layers':>6} {'unique blob bytes':>18} {'uploaded v1':>12} "
          f"{'mounted':>8} {'uploaded after zlib':>20} {'registry growth':>16} "
          f"{'build+push s (CPU)':>19}")  # fmt: skip
    for r in rows:
        print(f"{r.mode:<10} {r.layers:>6} {r.stored_v1:>18,} {r.pushed_v1:>12,} "
              f"{r.mounted_v1:>8} {r.pushed_v2:>20,} {r.stored_v2 - r.stored_v1:>16,} "
              f"{r.build_s:>11.2f} ({r.build_cpu:.2f})")  # fmt: skip


if __name__ == "__main__":
    main()
