"""`smith build RECIPE...`: a fleet in one run shares repositories, downloads and
extracted packages; a failing recipe fails the run after the others were built."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import smith.resolve.repo
from smith.build_options import BuildOptions
from smith.fleet import build_fleet
from tests.golden_recipes import recipe_copy
from tests.rpm_universe import Universe

FLEET = ("hello", "cat", "tinyhttpd")


@pytest.fixture
def fleet(rpm_universe: Universe, tmp_path: Path) -> list[str]:
    root = tmp_path / "recipes"
    return [str(recipe_copy(n, root, rpm_universe.repo_url("main"))) for n in FLEET]


def test_fleet_loads_each_repository_once_and_writes_dir_name(
    fleet: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads: list[str] = []
    real = smith.resolve.repo.load_repo

    def counted(config: smith.resolve.repo.RepoConfig, *args: object, **kw: object) -> object:
        loads.append(config.baseurl)
        return real(config, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(smith.resolve.repo, "load_repo", counted)
    out = tmp_path / "out"
    options = BuildOptions(output=str(out), cache_dir=str(tmp_path / "cache"))
    result = build_fleet(fleet, options)
    result.check()
    assert len(loads) == 1  # three recipes, one repository: fetched and parsed once
    assert [r.output for _, r in result.built] == [str(out / n) for n in FLEET]
    assert all((out / n / "index.json").is_file() for n in FLEET)
    again = build_fleet(fleet, options)
    assert [r.cache["build"] for _, r in again.built] == ["hit"] * len(FLEET)


def test_failing_recipe_fails_the_run_after_the_others(fleet: list[str], tmp_path: Path) -> None:
    broken = Path(fleet[1]) / "smith.yaml"
    broken.write_text(broken.read_text().replace("package: ", "package: no-such-package-"))
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "smith", "build", *fleet, "-o", str(out), "--json",
         "--cache-dir", str(tmp_path / "cache")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    summaries = json.loads(proc.stdout)
    assert [s["output"] for s in summaries] == [str(out / "hello"), str(out / "tinyhttpd")]
    last = proc.stderr.strip().splitlines()[-1]
    assert str(broken) in last and "no-such-package-" in last, proc.stderr
    assert f"written: {out / 'hello'}, {out / 'tinyhttpd'}" in last
    assert "Traceback" not in proc.stderr and not (out / "cat").exists()
