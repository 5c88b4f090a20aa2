"""`smith diff` against `diffoscope` on the same pair of ~100 MB image archives with one
planted difference (one file's mode), in the same run.

Usage: .venv/bin/python -m bench.bench_diff [--mb 100] [--timeout 900] [--keep DIR]

Writes two oci-archives with smith's writer from a tree of MB megabytes of poorly
compressible files (fixed seeds), identical except that one file is 0755 in B instead of
0644. Times `smith diff A B` and `diffoscope --text - A B`, each in its own process, and
says whether each output names the cause: the file's path and its two modes.
diffoscope is Debian's `diffoscope-minimal` (scripts/setup.sh installs it).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from smith.oci.compress import Compression
from smith.oci.image import ImageConfig
from smith.oci.output import write_image
from smith.oci.reading import open_image
from smith.tree import FileTree, InlineBytes

FILE_SIZE = 256 << 10
PLANTED = "usr/share/data/d03/f0200.bin"  # file 200 of 400, in the middle


def make_tree(mb: int, planted_mode: int) -> FileTree:
    tree = FileTree()
    rng = random.Random(1234)  # fixed: both images get the same bytes
    for i in range(mb * (1 << 20) // FILE_SIZE):
        path = f"usr/share/data/d{i // 64:02d}/f{i:04d}.bin"
        mode = planted_mode if path == PLANTED else 0o644
        tree.add_file(path, InlineBytes(rng.randbytes(FILE_SIZE)), mode)
    return tree


def timed(argv: list[str], timeout: int) -> tuple[float, int | None, str]:
    start = time.perf_counter()
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as err:
        out = err.stdout.decode() if isinstance(err.stdout, bytes) else (err.stdout or "")
        return time.perf_counter() - start, None, out
    return time.perf_counter() - start, proc.returncode, proc.stdout + proc.stderr


def diffoscope_names_cause(output: str) -> bool:
    # diffoscope lists tar members like `ls -l`; the cause is named when a changed line
    # shows the planted path with each of its two modes.
    lines = [ln for ln in output.splitlines() if PLANTED in ln]
    return any("-rw-r--r--" in ln for ln in lines) and any("-rwxr-xr-x" in ln for ln in lines)


def extract_layer(archive: Path, dest: Path) -> Path:
    with open_image(str(archive)) as image:
        shutil.copyfile(image.layers[0].verified_path(), dest)
    return dest


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--timeout", type=int, default=900)
    parser.add_argument("--keep", help="write the archives here and keep them")
    args = parser.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="smith-bench-diff-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        a, b = work / "a.tar", work / "b.tar"
        for out, mode in ((a, 0o644), (b, 0o755)):
            if not out.exists():
                write_image(make_tree(args.mb, mode), ImageConfig(), str(out),
                            compression=Compression.GZIP)  # fmt: skip
        results: dict[str, object] = {"archive_bytes": [a.stat().st_size, b.stat().st_size]}
        smith_s, smith_rc, smith_out = timed(
            [sys.executable, "-m", "smith", "diff", str(a), str(b)], args.timeout
        )
        first = smith_out.splitlines()[0] if smith_out else ""
        results["smith diff"] = {
            "seconds": round(smith_s, 2),
            "exit": smith_rc,
            "first line": first,
            "names the cause": PLANTED in first and "0644" in first and "0755" in first,
        }
        diffoscope = shutil.which("diffoscope")
        if diffoscope is None:
            results["diffoscope"] = "not installed (scripts/setup.sh installs diffoscope-minimal)"
        else:
            d_s, d_rc, d_out = timed([diffoscope, "--text", "-", str(a), str(b)], args.timeout)
            results["diffoscope"] = {
                "seconds": round(d_s, 2),
                "exit": d_rc if d_rc is not None else f"timed out after {args.timeout} s",
                "output lines": len(d_out.splitlines()),
                "names the cause": diffoscope_names_cause(d_out),
            }
            if args.keep:
                (work / "diffoscope.txt").write_text(d_out)
            # diffoscope pairs archive members by name, and blob names are digests, so it
            # cannot see that two layers belong together. Give it the two layer blobs by
            # hand (what a person does next) and time that too.
            layers = [extract_layer(x, work / f"layer-{x.stem}.tar.gz") for x in (a, b)]
            l_s, l_rc, l_out = timed([diffoscope, "--text", "-", *map(str, layers)], args.timeout)
            results["diffoscope on the two layer blobs, paired by hand"] = {
                "seconds": round(l_s, 2),
                "exit": l_rc if l_rc is not None else f"timed out after {args.timeout} s",
                "output lines": len(l_out.splitlines()),
                "names the cause": diffoscope_names_cause(l_out),
            }
            if args.keep:
                (work / "diffoscope-layers.txt").write_text(l_out)
        print(json.dumps(results, indent=2))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
