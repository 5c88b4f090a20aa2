"""Golden digests of every example recipe built with `--layers packages`: tests/golden/layered.json;
and of a fleet of three built together with `--share-layers`: tests/golden/shared.json.

Recorded from the frozen universe of ../shared, as tests/golden_recipes.py records the
single-layer digests (which layering must leave unchanged): per recipe the manifest digest
and, bottom first, each layer's digest. After a deliberate change to what smith writes:

    .venv/bin/python -m tests.golden_layered --update

Without --update the recipes are checked against the file (exit 1 on any difference);
tests/test_layering.py checks a few of them on every run.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from smith.build import BuildOptions, BuildResult, build
from smith.fleet import build_fleet
from tests.golden_recipes import (
    FROZEN_MAIN,
    PROJECT,
    golden_arguments,
    recipe_copy,
    recipe_names,
)

GOLDEN = PROJECT / "tests" / "golden" / "layered.json"
SHARED_GOLDEN = PROJECT / "tests" / "golden" / "shared.json"
# Three images that keep different files of glibc (curl's libresolv, tinyhttpd's NSS).
SHARED_FLEET = ("hello", "tinyhttpd", "curl")


def layered_record(
    name: str, work: Path, repo: str, budget: int | None = None
) -> dict[str, object]:
    """Build recipe `name` with `--layers packages` under `work`: its digests."""
    recipe = recipe_copy(name, work, repo)
    result = build(
        str(recipe / "smith.yaml"),
        BuildOptions(
            output=str(work / f"{name}.oci"),
            fmt="oci",
            cache_dir=str(work / "cache"),
            layers="packages",
            layer_budget=budget,
        ),
    )
    return {
        "manifest": result.image.manifest.digest,
        "layers": [layer.descriptor.digest for layer in result.image.layers],
    }


def load_golden() -> dict[str, object]:
    return dict(json.loads(GOLDEN.read_text()))


def shared_records(work: Path, repo: str, *, reverse: bool = False) -> dict[str, object]:
    """SHARED_FLEET built in one run with --share-layers under `work` (the recipes named
    the other way round with `reverse`): each image's digests."""
    names = list(reversed(SHARED_FLEET)) if reverse else list(SHARED_FLEET)
    recipes = [str(recipe_copy(n, work / "recipes", repo)) for n in names]
    fleet = build_fleet(
        recipes,
        BuildOptions(output=str(work / "out"), cache_dir=str(work / "cache"), share_layers=True),
    )
    fleet.check()
    records: dict[str, object] = {}
    for recipe, result in fleet.built:
        assert isinstance(result, BuildResult)
        records[Path(recipe).parent.name] = {
            "manifest": result.image.manifest.digest,
            "layers": [layer.descriptor.digest for layer in result.image.layers],
        }
    return records


def load_shared_golden() -> dict[str, object]:
    return dict(json.loads(SHARED_GOLDEN.read_text()))


def main() -> int:
    args = golden_arguments(__doc__ or "", GOLDEN)
    records = {}
    with tempfile.TemporaryDirectory(prefix="smith-golden-layered-") as tmp:
        for name in recipe_names():
            records[name] = layered_record(name, Path(tmp), str(FROZEN_MAIN))
        shared = shared_records(Path(tmp) / "shared", str(FROZEN_MAIN))
    if args.update:
        GOLDEN.write_text(json.dumps(records, indent=2, sort_keys=True) + "\n")
        SHARED_GOLDEN.write_text(json.dumps(shared, indent=2, sort_keys=True) + "\n")
        return 0
    failed = False
    for golden, got, label in (
        (load_golden(), records, ""),
        (load_shared_golden(), shared, "shared "),
    ):
        for name, record in got.items():
            same = golden.get(name) == record
            failed |= not same
            print(f"{label}{name}: {'ok' if same else 'DIFFERS'}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
