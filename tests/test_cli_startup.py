"""`smith --help` and `--version` start fast: they import no command module and none of the
libraries only commands use; the command list shows each command's own summary."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from smith.cli.main import cli, summary_command
from tests.golden_recipes import recipe_copy
from tests.imagekit import M, layer_tar, write_layout
from tests.rpm_universe import Universe
from tests.tools import unavailable

# Libraries that only some commands use: a command that does not use one must not pay for
# importing it (pydantic alone is ~0.2 s).
HEAVY = (
    "pydantic",
    "yaml",
    "urllib3",
    "cryptography",
    "solv",
    "zstandard",
    "deflate",
    "elftools",
    "libarchive",
    "rpmfile",
    "logging",
)
PROBE = """
import atexit, sys
atexit.register(lambda: print(" ".join(sorted(sys.modules)), file=sys.stderr))
from smith.cli.main import main
main(sys.argv[1:])
"""


def imported_by(*args: str) -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return set(proc.stderr.splitlines()[-1].split())


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["-h"]])
def test_help_and_version_import_no_command(args: list[str]) -> None:
    modules = imported_by(*args)
    assert not {m for m in modules if m.startswith("smith.cli.commands.")}
    assert not {m for m in modules if m.split(".")[0] in HEAVY}


def test_summaries_are_the_commands_own() -> None:
    ctx = click.Context(cli)
    names = cli.list_commands(ctx)
    assert {"build", "closure", "minimize", "download"} <= set(names)
    for name in names:
        summary = summary_command(name)
        cli.summaries_only = False
        real = cli.get_command(ctx, name)
        assert summary is not None and real is not None, name
        assert summary.help == real.help, name
        assert summary.get_short_help_str(45) == real.get_short_help_str(45)


def test_help_lists_every_command() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "smith", "--help"], capture_output=True, text=True, check=True
    )
    listed = proc.stdout.split("Commands:")[1]
    for name in cli.list_commands(click.Context(cli)):
        assert f"\n  {name} " in listed
    assert summary_command("no_such_command") is None


def test_compressor_versions_are_their_distributions() -> None:
    """compress.py records the modules' __version__ in every layer's annotations."""
    from importlib.metadata import version

    import deflate
    import zstandard

    assert deflate.__version__ == version("deflate")
    assert zstandard.__version__ == version("zstandard")


def test_the_build_command_imports_no_network_client_until_it_downloads() -> None:
    modules = imported_by("build", "--help")
    assert not {m for m in modules if m.split(".")[0] in ("urllib3", "cryptography")}


@pytest.mark.parametrize(
    "command",
    [
        "build",
        "verify",
        "outdated",
        "lock",
        "probe",
        "sign",
        "verify-signature",
        "download",
        "upload",
        "minimize",
        "diff",
        "sbom",
        "keygen",
    ],
)
def test_a_command_help_imports_no_library_of_the_command(command: str) -> None:
    """Its options are click's: the recipe model, libsolv and the writer load when it runs."""
    modules = imported_by(command, "--help")
    assert not {m for m in modules if m.split(".")[0] in HEAVY and m != "logging"}
    assert "smith.build" not in modules and "smith.recipe" not in modules


def test_closure_imports_only_what_it_uses() -> None:
    """`smith closure` reads ELF headers and symbols with struct: no recipe, package, image
    or network library (pyelftools only for files its reader leaves to it; none here)."""
    modules = imported_by("closure", "/", "/usr/bin/true")
    heavy = {m.split(".")[0] for m in modules} & set(HEAVY)
    assert heavy == {"logging"}  # the command line configures logging for every command
    assert "smith.profile" not in modules  # it writes profiles; the closure only reads them
    # Exactly smith's modules it runs: the settings table names layer strategies and
    # compressions, but the layer planner and the compressors are not loaded for them.
    assert {m for m in modules if m.split(".")[0] == "smith"} == CLOSURE_MODULES


CLOSURE_MODULES = {
    "smith",
    "smith.arch",
    "smith.cli",
    "smith.cli.commands",
    "smith.cli.commands.closure",
    "smith.cli.main",
    "smith.cli.reporting",
    "smith.cli.settings_options",
    "smith.epoch",
    "smith.errors",
    "smith.layer_strategy",
    "smith.links",
    "smith.oci",
    "smith.oci.compression",
    "smith.paths",
    "smith.resolve",
    "smith.resolve.closure",
    "smith.resolve.dependencies",
    "smith.resolve.elf",
    "smith.resolve.elfcache",
    "smith.resolve.elfsyms",
    "smith.resolve.extras",
    "smith.resolve.loader",
    "smith.resolve.profile_paths",
    "smith.resolve.programs",
    "smith.resolve.roots",
    "smith.resolve.runtime_rules",
    "smith.resolve.runtime_sets",
    "smith.settings",
    "smith.tree",
}


def test_minimize_without_a_recipe_imports_no_recipe_schema(tmp_path: Path) -> None:
    """`smith minimize IMAGE` reads no recipe: pydantic and yaml (~170 ms) stay unloaded."""
    libs = ("/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2")
    if not all(map(os.path.exists, libs)):
        unavailable("the image is made of an x86-64 glibc host's /usr/bin/true")
    members = [M("usr/bin/true", data=Path("/usr/bin/true").read_bytes(), mode=0o755)]
    members += [M(lib.lstrip("/"), data=Path(lib).read_bytes(), mode=0o755) for lib in libs]
    config = {"Entrypoint": ["/usr/bin/true"]}
    write_layout(str(tmp_path / "img"), [layer_tar(members)], config)
    modules = imported_by("minimize", str(tmp_path / "img"), "-o", str(tmp_path / "out.tar"))
    assert (tmp_path / "out.tar").exists()
    assert not {m for m in modules if m.split(".")[0] in ("pydantic", "yaml")}
    assert "smith.recipe" not in modules


# What a build from an HTTP repository does not use: another HTTP client, the image
# readers (a parent image, `package: IMAGE`), the registry, SBOM documents and signing,
# and what only an error message needs (difflib's "did you mean").
NOT_IN_A_COLD_BUILD = (
    "requests",
    "charset_normalizer",
    "idna",
    "certifi",
    "cryptography",
    "nacl",
    "libarchive",
    "rpmfile",
    "difflib",
    "smith.oci.reading",
    "smith.oci.unarchive",
    "smith.oci.loaded",
    "smith.oci.layerread",
    "smith.oci.unpack",
    "smith.oci.referrers",
    "smith.oci.registry",
    "smith.sbom.spdx",
    "smith.sbom.cyclonedx",
    "smith.signing",
    "smith.provenance",
)


def test_a_cold_build_imports_only_what_it_uses(rpm_universe: Universe, tmp_path: Path) -> None:
    recipe = recipe_copy("tinyhttpd", tmp_path, rpm_universe.repo_url("main")) / "smith.yaml"
    out, cache = str(tmp_path / "out.tar.gz"), str(tmp_path / "cache")
    # --output, not -o: click looks a short option up as a long one first, and its
    # NoSuchOption imports difflib on the way (click's own cost, not smith's).
    modules = imported_by("build", str(recipe), "--output", out, "--cache-dir", cache)
    assert "urllib3" in modules  # it downloaded: with the one HTTP client
    unused = {m for m in modules for name in NOT_IN_A_COLD_BUILD if f"{m}.".startswith(name + ".")}
    assert not unused
