"""`smith build` of the HTTP-server recipe against the physical work, in the same run.

Usage: .venv/bin/python -m bench.bench_build [--recipe recipes/tinyhttpd]

- cold build (empty cache, packages fetched over HTTP from 127.0.0.1) against the sum of
  `rpm2cpio PKG | cpio -idm` of every resolved package and `tar --sort=name ... | gzip -n`
  of the kept files (target: at most 1.5x);
- a rebuild with everything cached against the cold build (target: at most 0.5x);
- the image size against an `rpm --root` install of the same packages.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import yaml

from smith.build import BuildOptions, build
from tests.rpm_universe import cached_universe, start_http_server

PROJECT = Path(__file__).resolve().parent.parent


def timed(fn):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def du(path: Path) -> int:
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipe", default="recipes/tinyhttpd")
    args = parser.parse_args()
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
            cache = tmp / "cache"

            cold, result = timed(
                lambda: build(
                    recipe, BuildOptions(output=str(tmp / "cold.tar.gz"), cache_dir=str(cache))
                )
            )
            warm, _ = timed(
                lambda: build(
                    recipe, BuildOptions(output=str(tmp / "warm.tar.gz"), cache_dir=str(cache))
                )
            )
            rpms = sorted((cache / "blobs" / "sha256").glob("*"))
            rpms = [p for p in rpms if p.read_bytes()[:4] == b"\xed\xab\xee\xdb"]

            root = tmp / "cpio-root"
            root.mkdir()

            def extract() -> None:
                for rpm in rpms:
                    subprocess.run(
                        f"rpm2cpio {rpm} | cpio -idm --quiet", shell=True, cwd=root, check=True
                    )

            t_extract, _ = timed(extract)
            listing = tmp / "kept.txt"
            listing.write_text(
                "".join(
                    f"{p}\n" for p in result.kept if (root / p).exists() or (root / p).is_symlink()
                )
            )
            t_tar, _ = timed(
                lambda: subprocess.run(
                    f"tar --sort=name --numeric-owner --owner=0 --group=0 --mtime=@0 --no-recursion "
                    f"-cf - -C {root} -T {listing} | gzip -n > {tmp / 'baseline.tar.gz'}",
                    shell=True,
                    check=True,
                )
            )
            baseline = t_extract + t_tar

            rpm_root = tmp / "rpm-root"
            subprocess.run(
                [
                    "rpm",
                    "--root",
                    str(rpm_root),
                    "--dbpath",
                    "/var/lib/rpm",
                    "--force-debian",
                    "-i",
                    "--nodeps",
                    "--noscripts",
                    "--nosignature",
                    *map(str, rpms),
                ],
                check=True,
                capture_output=True,
            )
            shutil.rmtree(rpm_root / "var" / "lib" / "rpm", ignore_errors=True)
            installed = du(rpm_root)
            print(
                f"recipe {args.recipe}: {len(result.packages)} packages, {len(result.kept)} kept paths"
            )
            print(
                f"baseline rpm2cpio|cpio {t_extract:.2f} s + tar|gzip {t_tar:.2f} s = {baseline:.2f} s"
            )
            print(
                f"smith cold build   {cold:6.2f} s   ratio to baseline {cold / baseline:.2f} (target <= 1.5)"
            )
            print(
                f"smith cached build {warm:6.2f} s   ratio to cold     {warm / cold:.2f} (target <= 0.5)"
            )
            print(
                f"image {result.image_bytes} bytes; rpm --root install {installed} bytes "
                f"({result.image_bytes / installed:.3f}x)"
            )
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
