"""Push and pull of a ~200 MB multi-layer image: `smith upload`/`smith download` against
`skopeo copy` of the same image, in the same run, on Debian's docker-registry (plain HTTP on
127.0.0.1). Target: smith at most 1.2x skopeo's time.

Fairness: every tool and round gets its own fresh registry, so neither can skip or mount a
blob the other (or an earlier round) left behind, and skopeo's blob-info cache, which lives
outside HOME for root, knows nothing about the new registry's address.

    .venv/bin/python -m bench.registry_bench [--size-mb 200] [--layers 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from smith.oci.compress import Compression
from smith.oci.image import ImageConfig
from smith.oci.output import write_image
from smith.oci.reading import open_image
from smith.tree import FileTree, HostFile
from tests.registry_servers import start_registry

SMITH = str(Path(sys.executable).parent / "smith")


def build_image(work: Path, size_mb: int, layers: int) -> Path:
    """`layers` layers of random (incompressible) files: the blobs are as big as the data."""
    per_layer = size_mb * (1 << 20) // layers
    parent = None
    out = work / "layer-0"
    for n in range(layers):
        data = work / f"data-{n}"
        with open(data, "wb") as f, open("/dev/urandom", "rb") as rnd:
            for _ in range(per_layer // (1 << 20)):
                f.write(rnd.read(1 << 20))
        tree = FileTree()
        tree.add_dir("data", 0o755)
        tree.add_file(f"data/file-{n}", HostFile(str(data)), 0o644, size=data.stat().st_size)
        out = work / f"layer-{n}"
        if parent is None:
            write_image(tree, ImageConfig(), str(out), compression=Compression.GZIP)
        else:
            with open_image(str(parent)) as base:
                write_image(
                    tree, ImageConfig(), str(out), compression=Compression.GZIP, parent=base
                )
        data.unlink()
        parent = out
    return out


def timed(args: list[str], home: Path) -> float:
    start = time.perf_counter()
    subprocess.run(
        args,
        check=True,
        stdout=subprocess.DEVNULL,
        env={"HOME": str(home), "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"},
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--layers", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    registry_bin = shutil.which("docker-registry") or sys.exit("docker-registry is not installed")
    skopeo = shutil.which("skopeo") or sys.exit("skopeo is not installed")
    times: dict[str, list[float]] = {
        k: [] for k in ("smith push", "skopeo push", "smith pull", "skopeo pull")
    }
    with tempfile.TemporaryDirectory(prefix="smith-bench-", dir="/var/tmp") as tmp:
        work = Path(tmp)
        image = build_image(work, args.size_mb, args.layers)
        blob_bytes = sum(p.stat().st_size for p in (image / "blobs" / "sha256").iterdir())
        home = work / "home"
        home.mkdir()
        for rnd in range(args.rounds):
            # Alternate who goes first: page cache and CPU frequency favour neither.
            order = ("smith", "skopeo") if rnd % 2 == 0 else ("skopeo", "smith")
            for tool in order:
                reg = start_registry(work / f"reg-{tool}-{rnd}", registry_bin)
                try:
                    ref = f"docker://{reg.host}/bench/{tool}:r{rnd}"
                    out = work / f"out-{tool}-{rnd}"
                    if tool == "smith":
                        push = [SMITH, "upload", "-i", str(image), "-r", ref, "--insecure"]
                        pull = [SMITH, "download", "-r", ref, "-i", str(out), "--insecure"]
                    else:
                        push = [
                            skopeo,
                            "copy",
                            "-q",
                            "--dest-tls-verify=false",
                            f"oci:{image}",
                            ref,
                        ]
                        pull = [skopeo, "copy", "-q", "--src-tls-verify=false", ref, f"oci:{out}"]
                    times[f"{tool} push"].append(timed(push, home))
                    times[f"{tool} pull"].append(timed(pull, home))
                    shutil.rmtree(out)
                finally:
                    reg.stop()
                    shutil.rmtree(reg.root, ignore_errors=True)
    medians = {k: statistics.median(v) for k, v in times.items()}
    report = {
        "blob_bytes": blob_bytes,
        "layers": args.layers,
        "rounds": args.rounds,
        "seconds": {k: [round(x, 3) for x in v] for k, v in times.items()},
        "median": {k: round(v, 3) for k, v in medians.items()},
        "ratio push": round(medians["smith push"] / medians["skopeo push"], 3),
        "ratio pull": round(medians["smith pull"] / medians["skopeo pull"], 3),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
