"""Oracle smith's command lines: each works with the same meaning, or says in one line
why smith differs and what to write instead."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.rpm_universe import Universe
from tests.test_build import smith
from tests.test_original_recipes import CASES, write_recipe


@pytest.fixture
def recipe(tmp_path: Path, rpm_universe: Universe) -> Path:
    directory = tmp_path / "app"
    write_recipe(directory, CASES["env-list"], rpm_universe)
    return directory


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line]
    assert len(lines) == 1, text
    return lines[0]


def test_bare_smith_builds_smith_yaml_here(recipe: Path, tmp_path: Path) -> None:
    smith("--debug", cwd=recipe)  # no command at all, as the original
    assert (recipe / "image.tar.gz").is_file()


def test_smith_dash_i_names_the_output(recipe: Path) -> None:
    smith("-i", "app.tar", cwd=recipe)
    assert (recipe / "app.tar").is_file() and not (recipe / "image.tar.gz").exists()


@pytest.mark.parametrize("args", [["-f"], ["--fast"], ["build", "-f"]])
def test_fast_builds_and_says_it_changes_nothing(recipe: Path, args: list[str]) -> None:
    proc = smith(*args, "-o" if args[0] == "build" else "-i", "out.tar", cwd=recipe)
    note = [line for line in proc.stderr.splitlines() if "-f/--fast" in line]
    assert len(note) == 1 and "every build reuses smith.lock" in note[0], proc.stderr
    assert (recipe / "out.tar").is_file()


@pytest.mark.parametrize("args", [["build", "-v"], ["-v", "build"], ["build", "--verbose"]])
def test_verbose_before_or_after_the_command(recipe: Path, args: list[str]) -> None:
    proc = smith(*args, cwd=recipe)
    assert "smith: resolving the packages of" in proc.stderr


@pytest.mark.parametrize("args", [["-b", "7"], ["build", "-b", "7"], ["--buildnumber", "7"]])
def test_buildnumber_is_refused_with_the_form_to_use(recipe: Path, args: list[str]) -> None:
    proc = smith(*args, cwd=recipe, check=False)
    assert proc.returncode == 2
    line = one_line(proc.stderr)
    assert "-b/--buildnumber 7" in line and "--tag NAME:VERSION-7" in line
    assert not (recipe / "image.tar.gz").exists()


def test_bare_smith_without_a_recipe_says_what_it_wanted(tmp_path: Path) -> None:
    proc = smith(cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert "no smith.yaml here: bare `smith` builds ./smith.yaml" in one_line(proc.stderr)


def test_bare_forms_before_a_command_are_refused(recipe: Path) -> None:
    proc = smith("-i", "x.tar", "lock", cwd=recipe, check=False)
    assert proc.returncode == 2
    assert "give them after it: smith lock" in one_line(proc.stderr)


def test_help_still_lists_the_commands(tmp_path: Path) -> None:
    proc = smith("--help", cwd=tmp_path)
    assert "build" in proc.stdout and "minimize" in proc.stdout
