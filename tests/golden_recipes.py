"""Golden digests of every example recipe in recipes/: tests/golden/recipes.json.

Each recipe is built from the frozen package universe in ../shared/universe (built once
by tests/rpm_universe.py and never rebuilt: a universe rebuilt from this machine's Debian
binaries drifts with every Debian update) by `smith verify`, which builds it twice in changed
environments, so only reproducible digests are ever recorded. After a deliberate change to
what smith writes, update the file and let the JSON diff be reviewed with the change:

    .venv/bin/python -m tests.golden_recipes --update

Without --update the recipes are checked against the file (exit 1 on any difference), which
is what tests/test_verify.py does in CI. A recipe is a directory of recipes/ with a
smith.yaml (crashcart-toolbox is recorded as smith builds it, before crashcart relocates it).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from tests.tools import PROJECT, SHARED

RECIPES = PROJECT / "recipes"
GOLDEN = PROJECT / "tests" / "golden" / "recipes.json"
# The repository every golden digest is recorded from and checked against.
FROZEN_MAIN = SHARED / "universe" / "repos" / "main"


def recipe_names() -> list[str]:
    return sorted(p.parent.name for p in RECIPES.glob("*/smith.yaml"))


def recipe_copy(name: str, dest_root: Path, repo_url: str) -> Path:
    """The example recipe, its repository pointed at `repo_url` (the universe's)."""
    dest = dest_root / name
    shutil.copytree(RECIPES / name, dest)
    recipe = yaml.safe_load((dest / "smith.yaml").read_text())
    recipe["repos"] = [{"name": "universe", "baseurl": repo_url}]
    (dest / "smith.yaml").write_text(yaml.safe_dump(recipe))
    return dest


def verify_json(*args: str) -> tuple[int, dict[str, object]]:
    proc = subprocess.run(
        [sys.executable, "-m", "smith", "verify", *args, "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode not in (0, 1):
        raise SystemExit(f"smith verify {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.returncode, json.loads(proc.stdout)


def golden_arguments(doc: str, golden: Path) -> argparse.Namespace:
    """The command line of a golden-digest script (--update), once the frozen universe is
    known to be there."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--update", action="store_true", help=f"rewrite {golden.name}")
    args = parser.parse_args()
    if not FROZEN_MAIN.is_dir():
        raise SystemExit(f"{FROZEN_MAIN} is not present: golden digests come only from the "
                         "frozen universe of ../shared (see its README)")  # fmt: skip
    return args


def main() -> int:
    args = golden_arguments(__doc__ or "", GOLDEN)
    records: dict[str, object] = {}
    failed = False
    print(f"building from the frozen universe: {FROZEN_MAIN}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="smith-golden-") as tmp:
        for name in recipe_names():
            recipe = recipe_copy(name, Path(tmp), str(FROZEN_MAIN))
            extra = () if args.update else ("--against", str(GOLDEN), "--builds", "1")
            code, result = verify_json(str(recipe), *extra)
            builds = result["builds"]
            assert isinstance(builds, list)
            records[name] = builds[0]["digests"]
            print(f"{name}: {'ok' if code == 0 else 'DIFFERS'}", file=sys.stderr)
            if code != 0:
                failed = True
                print(json.dumps(result.get("differing")), file=sys.stderr)
    if args.update and not failed:
        GOLDEN.write_text(json.dumps(records, indent=1, sort_keys=True) + "\n")
        print(f"wrote {GOLDEN.relative_to(PROJECT)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
