"""Golden digests of the SBOMs of every example recipe: tests/golden/sbom.json.

Each recipe is built from the frozen universe of ../shared by path (no URL: no host or port
can reach the documents) with both SBOM formats attached; the file records the sha256 of
each document and the digest of its referrer manifest. After a deliberate change to what
the SBOMs hold, rewrite it and let the JSON diff be reviewed with the change:

    .venv/bin/python -m tests.golden_sbom --update
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.golden_recipes import FROZEN_MAIN, recipe_copy, recipe_names
from tests.tools import PROJECT

GOLDEN = PROJECT / "tests" / "golden" / "sbom.json"
MEDIA = {"spdx": "application/spdx+json", "cyclonedx": "application/vnd.cyclonedx+json"}


def smith(*args: str, env: dict[str, str] | None = None) -> bytes:
    proc = subprocess.run(
        [sys.executable, "-m", "smith", *args], capture_output=True, check=False, env=env
    )
    if proc.returncode != 0:
        raise AssertionError(f"smith {' '.join(args)}: {proc.stderr.decode()}")
    return proc.stdout


def sbom_digests(name: str, work: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    """Build recipe `name` in `work` with both SBOMs; the digests the golden file records."""
    recipe = recipe_copy(name, work, str(FROZEN_MAIN))
    out = work / f"{name}-image"
    formats = [a for fmt in MEDIA for a in ("--sbom-format", fmt)]
    smith("build", str(recipe), "-o", str(out), "--tag", name, *formats,
          "--cache-dir", str(work / "cache"), env=env)  # fmt: skip
    index = json.loads((out / "index.json").read_bytes())
    referrers = {m.get("artifactType"): m["digest"] for m in index["manifests"]}
    record = {}
    for fmt, media_type in MEDIA.items():
        record[fmt] = hashlib.sha256(smith("sbom", str(out), "--format", fmt)).hexdigest()
        record[f"{fmt}_referrer"] = referrers[media_type]
    return record


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--update", action="store_true", help="rewrite tests/golden/sbom.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="smith-golden-sbom-") as tmp:
        records = {name: sbom_digests(name, Path(tmp) / name) for name in recipe_names()}
    if args.update:
        GOLDEN.write_text(json.dumps(records, indent=1, sort_keys=True) + "\n")
        return 0
    golden = json.loads(GOLDEN.read_text())
    differing = sorted(n for n in records if records[n] != golden.get(n))
    print(f"differing: {differing}" if differing else "all as recorded", file=sys.stderr)
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
