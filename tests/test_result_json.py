"""`smith build --json` and `smith minimize --json`: one form, one schema kept in the repo."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from smith.result_json import SCHEMA
from tests.rpm_universe import Universe
from tests.test_build import smith
from tests.test_original_recipes import CASES, write_recipe


def validate(doc: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA.read_text())
    Draft202012Validator.check_schema(schema)
    errors = sorted(Draft202012Validator(schema).iter_errors(doc), key=str)
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors]


def test_build_and_minimize_say_the_same_things_the_same_way(
    tmp_path: Path, rpm_universe: Universe
) -> None:
    recipe = tmp_path / "app"
    write_recipe(recipe, CASES["env-list"], rpm_universe)
    built = tmp_path / "built"
    cache = str(tmp_path / "cache")
    proc = smith(
        "build", str(recipe), "-o", str(built), "--json", "--explain", "--cache-dir", cache
    )
    build_doc = json.loads(proc.stdout)  # stdout is the JSON alone, --explain included
    validate(build_doc)
    index = json.loads((built / "index.json").read_bytes())
    assert (
        build_doc["index"].startswith("sha256:")
        and index["manifests"][0]["digest"] == (build_doc["manifest"])
    )
    assert build_doc["source_manifest"] is None and build_doc["packages_resolved"] >= 1
    assert build_doc["kept"]["/usr/bin/busybox"]
    proc = smith("minimize", str(built), "-o", str(tmp_path / "small"), "--json", "--explain")
    minimize_doc = json.loads(proc.stdout)
    validate(minimize_doc)
    # `cache` says what smith build's caches saved: minimize has none.
    assert sorted(minimize_doc) == sorted(k for k in build_doc if k != "cache")
    assert minimize_doc["source_manifest"] == build_doc["manifest"]
    assert minimize_doc["program"] == build_doc["program"] == "/usr/bin/sh"
    # package: naming an image is a build too, and says so in the same form.
    from_image = tmp_path / "from-image"
    from_image.mkdir()
    (from_image / "smith.yaml").write_text("package: ../built\n")
    proc = smith("build", str(from_image), "-o", str(tmp_path / "fi.tar"), "--json")
    image_doc = json.loads(proc.stdout)
    validate(image_doc)
    assert image_doc["source_manifest"] == build_doc["manifest"]


def test_minimize_quiet_prints_nothing(tmp_path: Path, rpm_universe: Universe) -> None:
    recipe = tmp_path / "app"
    write_recipe(recipe, CASES["env-list"], rpm_universe)
    smith("build", str(recipe), "-o", str(tmp_path / "built"), "--cache-dir", str(tmp_path / "c"))
    proc = smith("minimize", str(tmp_path / "built"), "-o", str(tmp_path / "small"), "-q")
    assert proc.stdout == proc.stderr == ""


@pytest.mark.parametrize("name", ["out.tar.zst", "x.zip", "img.gz", "a.tar.xz"])
@pytest.mark.parametrize("command", ["build", "minimize"])
def test_output_names_smith_does_not_write_are_refused(
    name: str, command: str, tmp_path: Path, rpm_universe: Universe
) -> None:
    recipe = tmp_path / "app"
    write_recipe(recipe, CASES["env-list"], rpm_universe)
    args = [str(recipe)] if command == "build" else [str(tmp_path / "missing-image")]
    proc = smith(command, *args, "-o", str(tmp_path / name), check=False)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and "which smith does not write" in lines[0]
    assert "NAME.tar or NAME.tar.gz" in lines[0]
    assert not (tmp_path / name).exists()
