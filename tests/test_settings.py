"""The settings table: one precedence (flag > recipe > environment > default) for build
and minimize, and the same options declared for both."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from smith.cli.commands.build import build_command
from smith.cli.commands.minimize import minimize
from smith.recipe import parse_recipe
from smith.settings import SETTINGS, merged
from tests.rpm_universe import Universe
from tests.test_build import smith
from tests.test_original_recipes import CASES, write_recipe


def test_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    recipe = parse_recipe({"compression": "zstd", "source_date_epoch": 7, "tag": "r:1"})
    bare = parse_recipe({})
    assert merged("compression", "none", recipe) == "none"  # the flag
    assert merged("compression", None, recipe) == "zstd"  # the recipe
    assert merged("compression", None, None) == "gzip"  # the table's default
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "99")
    assert merged("source_date_epoch", 5, recipe) == 5
    assert merged("source_date_epoch", None, recipe) == 7
    assert merged("source_date_epoch", None, bare) == 99  # the environment
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    assert merged("source_date_epoch", None, bare) == 0
    assert merged("output", None, bare, "image.tar.gz") == "image.tar.gz"  # the command's


def test_build_and_minimize_declare_the_shared_settings_alike() -> None:
    def declared(command: object) -> dict[str, tuple[tuple[str, ...], str | None]]:
        params = getattr(command, "params", [])
        return {p.name: (tuple(p.opts), p.help) for p in params}

    commands = {"build": declared(build_command), "minimize": declared(minimize)}
    for setting in SETTINGS:
        for command, params in commands.items():
            if not setting.flags or command not in setting.commands:
                assert setting.name not in params, (command, setting.key)
                continue
            flags, help = params[setting.name]
            assert set(setting.flags) <= set(flags), (command, setting.key)
            assert help == setting.help + setting.notes.get(command, ""), (command, setting.key)


def layer_media_type(layout: Path) -> str:
    index = json.loads((layout / "index.json").read_text())
    digest = index["manifests"][0]["digest"].removeprefix("sha256:")
    manifest = json.loads((layout / "blobs" / "sha256" / digest).read_text())
    return str(manifest["layers"][0]["mediaType"])


def test_minimize_recipe_settings_apply_unless_a_flag_says(
    tmp_path: Path, rpm_universe: Universe
) -> None:
    base = tmp_path / "base"
    write_recipe(base, CASES["env-list"], rpm_universe)
    smith("build", str(base), "-o", str(tmp_path / "img"), "--cache-dir", str(tmp_path / "c"))
    recipe = tmp_path / "m" / "smith.yaml"
    recipe.parent.mkdir()
    recipe.write_text(f"package: {tmp_path / 'img'}\ncompression: zstd\ntag: small:1\n")
    smith("minimize", "--recipe", str(recipe), "-o", str(tmp_path / "a"))
    assert layer_media_type(tmp_path / "a").endswith("+zstd")
    index = json.loads((tmp_path / "a" / "index.json").read_text())
    assert index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] == "small:1"
    smith("minimize", "--recipe", str(recipe), "-o", str(tmp_path / "b"), "--compression", "gzip")
    assert layer_media_type(tmp_path / "b").endswith("+gzip")


def test_every_recipe_setting_is_a_recipe_key() -> None:
    """A row that says a recipe has its key names a field of the recipe model (a typo would
    make `merged` ignore the recipe without a word)."""
    from smith.recipe import Recipe

    for setting in SETTINGS:
        assert (setting.key in Recipe.model_fields) == setting.recipe, setting.key


def test_the_recipe_keys_that_are_settings_are_made_from_the_rows() -> None:
    """Each recipe key that is a setting has its row's help and default, and the types mypy
    reads (a stub in smith/recipe.py) name exactly those keys."""
    import ast
    import inspect

    import smith.recipe
    from smith.recipe import KINDS, Recipe

    rows = [s for s in SETTINGS if s.recipe]
    for setting in rows:
        field = Recipe.model_fields[setting.key]
        assert field.description == setting.help, setting.key
        default = KINDS[setting.kind][1] if setting.default is None else setting.default
        assert field.default == default, setting.key
    tree = ast.parse(inspect.getsource(smith.recipe))
    stub = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == "Recipe")
    typed = [
        n.target.id
        for n in stub.body
        if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)
    ]
    assert sorted(typed) == sorted(s.key for s in rows)


def test_an_off_switch_or_an_empty_list_is_not_given() -> None:
    recipe = parse_recipe({"package_db": True, "nss": True})
    assert merged("package_db", False, recipe) is True  # the recipe's, not the flag's off
    assert merged("nss", True, parse_recipe({})) is True
    assert merged("keep_going", False) is False
    assert merged("paths", (), recipe) == ()  # the recipe's paths: none


def test_a_list_setting_replaces_or_extends_as_its_row_says() -> None:
    from smith.settings import Combine

    recipe = parse_recipe({"paths": ["/b"], "excludes": ["/x"], "arch": "aarch64"})
    assert merged("paths", ("/a",), recipe) == ("/a", "/b")  # the flag's, then the recipe's
    assert merged("excludes", (), recipe) == ("/x",)
    assert merged("no_runtime_libraries", ("openssl",), None) == ("openssl",)
    assert merged("arch", ("x86_64",), recipe) == ("x86_64",)  # replaces
    for setting in SETTINGS:
        if setting.combine is Combine.EXTEND:
            assert setting.multiple and setting.recipe, setting.key


def test_every_command_a_row_names_declares_it_from_the_row() -> None:
    """The registry flags (and the others) of upload, download, lock, verify-signature ...
    are the table's rows: the same flags, help and default wherever they appear."""
    import click

    from smith.cli.main import cli
    from smith.settings import REGISTRY

    ctx = click.Context(cli)
    cli.summaries_only = False
    for name in (*sorted(REGISTRY), "lock"):
        command = cli.get_command(ctx, name)
        assert command is not None, name
        params = {p.name: p for p in command.params}
        for setting in SETTINGS:
            if name not in setting.commands or not setting.flags:
                continue
            param = params[setting.name]
            assert set(setting.flags) <= set(param.opts), (name, setting.key)
            assert getattr(param, "help", None) == setting.help + setting.notes.get(name, "")
            if not setting.recipe and setting.default is not None:
                assert param.default == setting.default, (name, setting.key)
    assert {"creds", "timeout", "retries"} <= {s.key for s in SETTINGS if "sign" in s.commands}
