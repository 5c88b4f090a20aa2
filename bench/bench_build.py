"""`smith build` of a small recipe, as commands, against the shell pipeline, interleaved.

    .venv/bin/python -m bench.bench_build [--recipe recipes/tinyhttpd] [--rounds 5]

- cold: `smith build RECIPE -o OUT --cache-dir EMPTY` (packages fetched over HTTP from a
  local `python3 -m http.server`), against the shell pipeline a user would write for the
  same work: `rpm2cpio PKG | cpio -idm` of every resolved package, then `tar --sort=name
  ... | gzip -n` of the kept files (target: at most 1.3x);
- warm: the same command again, nothing changed, cache kept (target: at most 0.3x cold):
  the recipe has no lock, so its packages are resolved again before the build cache is
  asked; and the same with a smith.lock and --locked (the key is found before the recipe's
  schema is loaded). Wall and CPU seconds (the machine is shared: CPU moves less);
- the floor, in steps: `smith --version` (the interpreter, click, the command line), then
  the recipe's schema (pydantic, yaml; a one-key recipe validated, which builds the
  validator), `import smith.build`, and with the command line and the HTTP client
  (urllib3) a download imports: what a build pays before any work;
- `python -c pass` as the load reference.

smith is byte-compiled first (bench.timing.byte_compile), as an installed one is.

The image size against an `rpm --root` install of the same packages is printed too.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from bench.timing import (
    Case,
    byte_compile,
    command_case,
    cpu_ratio,
    interleave,
    load_reference,
    ratio,
    report,
)
from tests.rpm_universe import cached_universe, start_http_server

PROJECT = Path(__file__).resolve().parent.parent
SMITH = str(Path(sys.executable).with_name("smith"))
RPM_MAGIC = b"\xed\xab\xee\xdb"
# Each floor validates a one-key recipe too: the schema's validator is built on first use
# (defer_build), and every build pays for building it.
VALIDATE = "; smith.recipe.Recipe.model_validate({'package': 'x'})"
FLOOR = "import smith.build, smith.cli.commands.build, smith.resolve.transport" + VALIDATE
# The command line (click) and the recipe's schema (pydantic, yaml): what even a build that
# fails on its recipe pays.
RECIPE_FLOOR = "import smith.cli.main, smith.cli.commands.build, smith.recipe" + VALIDATE
BUILD_FLOOR = "import smith.build" + VALIDATE
RPM_INSTALL: tuple[str, ...] = ("rpm", "--dbpath", "/var/lib/rpm", "--force-debian", "-i")
RPM_INSTALL += ("--nodeps", "--noscripts", "--nosignature")


def du(path: Path) -> int:
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def pipeline(rpms: list[Path], kept: list[str], tmp: Path) -> str:
    """The shell pipeline doing the physical work of the build: extract, then archive."""
    listing = tmp / "kept.txt"
    listing.write_text("".join(f"{p}\n" for p in kept))
    root = tmp / "cpio-root"
    extract = "; ".join(f"rpm2cpio {shlex.quote(str(r))} | cpio -idm --quiet" for r in rpms)
    archive = (
        "tar --sort=name --numeric-owner --owner=0 --group=0 --mtime=@0 --no-recursion "
        f"-cf - -T {listing} | gzip -n > {tmp / 'baseline.tar.gz'}"
    )
    return f"rm -rf {root} && mkdir {root} && cd {root} && {extract} && {archive}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default="recipes/tinyhttpd")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    byte_compile(PROJECT)
    universe = cached_universe(PROJECT / "out" / "universes")
    proc, url = start_http_server(universe.root)
    try:
        with tempfile.TemporaryDirectory(prefix="smith-bench-build-") as tmp_name:
            tmp = Path(tmp_name)
            recipe_dir = tmp / "recipe"
            shutil.copytree(PROJECT / args.recipe, recipe_dir)
            doc = yaml.safe_load((recipe_dir / "smith.yaml").read_text())
            doc["repos"] = [{"name": "universe", "baseurl": url + "repos/main"}]
            (recipe_dir / "smith.yaml").write_text(yaml.safe_dump(doc))
            recipe = str(recipe_dir / "smith.yaml")
            warm_cache, cold_cache = tmp / "warm-cache", tmp / "cold-cache"

            def build_argv(cache: Path, out: str, which: str = recipe) -> list[str]:
                return [SMITH, "build", which, "-o", str(tmp / out), "--cache-dir", str(cache)]

            first = subprocess.run(
                [*build_argv(warm_cache, "first.tar.gz"), "--json"],
                capture_output=True,
                text=True,
                check=True,
            )
            summary = json.loads(first.stdout)
            rpms = [
                p
                for p in sorted((warm_cache / "blobs").rglob("*"))
                if p.is_file() and p.read_bytes()[:4] == RPM_MAGIC
            ]
            listing = subprocess.run(
                ["tar", "-tzf", str(tmp / "first.tar.gz")], capture_output=True, text=True
            )
            kept = [line.rstrip("/") for line in listing.stdout.splitlines() if line]
            shell = pipeline(rpms, kept, tmp)

            # The same recipe with a smith.lock: a warm build finds its key before loading
            # the recipe's schema (no resolution at all).
            locked_dir = tmp / "locked"
            shutil.copytree(recipe_dir, locked_dir)
            locked_recipe = str(locked_dir / "smith.yaml")
            subprocess.run(
                [SMITH, "lock", locked_recipe, "--cache-dir", str(warm_cache)],
                capture_output=True,
                check=True,
            )

            def locked_argv(cache: Path, out: str) -> list[str]:
                return [*build_argv(cache, out, locked_recipe), "--locked"]

            subprocess.run(locked_argv(warm_cache, "first-locked.tar.gz"), check=True)
            cold = command_case("smith build (cold)", build_argv(cold_cache, "cold.tar.gz"))
            cases = [
                load_reference(),
                Case("shell pipeline", command_case("", ["sh", "-c", shell]).run, shell),
                cold,
                command_case("smith build (warm)", build_argv(warm_cache, "warm.tar.gz")),
                command_case("--locked (cold)", locked_argv(cold_cache, "cold-locked.tar.gz")),
                command_case("--locked (warm)", locked_argv(warm_cache, "warm-locked.tar.gz")),
                # What any smith build pays before its first step: the interpreter and the
                # modules a build imports (click, pydantic, yaml, solv, the OCI writer).
                command_case("floor: smith --version", [SMITH, "--version"]),
                command_case("floor: + recipe schema", [sys.executable, "-c", RECIPE_FLOOR]),
                command_case("floor: import smith.build", [sys.executable, "-c", BUILD_FLOOR]),
                command_case("floor: + CLI, HTTP client", [sys.executable, "-c", FLOOR]),
            ]

            def empty_cold_cache() -> None:
                shutil.rmtree(cold_cache, ignore_errors=True)

            times = interleave(cases, args.rounds, before=empty_cold_cache)
            print(
                f"recipe {args.recipe}: {summary['packages_resolved']} packages "
                f"({len(rpms)} RPMs), {summary['paths']} kept paths"
            )
            print(f"\n{args.rounds} rounds, interleaved (the cold cache is emptied before each):")
            report(times)
            print()
            ratio(times, "smith build (cold)", "shell pipeline", "at most 1.3x")
            ratio(times, "smith build (warm)", "smith build (cold)", "at most 0.3x")
            ratio(times, "--locked (warm)", "--locked (cold)", "at most 0.3x")
            cpu_ratio(times, "smith build (cold)", "shell pipeline", "at most 1.3x")
            cpu_ratio(times, "smith build (warm)", "smith build (cold)", "at most 0.3x")
            cpu_ratio(times, "--locked (warm)", "--locked (cold)", "at most 0.3x")
            cpu_ratio(times, "floor: smith --version", "shell pipeline")
            cpu_ratio(times, "floor: + recipe schema", "shell pipeline")
            cpu_ratio(times, "floor: import smith.build", "shell pipeline")
            cpu_ratio(times, "floor: + CLI, HTTP client", "shell pipeline")
            for name in ("warm", "warm-locked"):
                same = (tmp / f"{name}.tar.gz").read_bytes() == (tmp / "cold.tar.gz").read_bytes()
                print(f"{name}.tar.gz {'is' if same else 'IS NOT'} byte-identical to cold.tar.gz")

            rpm_root = tmp / "rpm-root"
            subprocess.run(
                [*RPM_INSTALL, "--root", str(rpm_root), *map(str, rpms)],
                check=True,
                capture_output=True,
            )
            shutil.rmtree(rpm_root / "var" / "lib" / "rpm", ignore_errors=True)
            installed = du(rpm_root)
            size = summary["size"]
            print(
                f"image {size} bytes; rpm --root install {installed} bytes ({size / installed:.3f}x)"
            )
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
