"""The toolbox extension: `crashcart toolbox build --extra-repo` adds tcpdump, ltrace, bash,
openssl, readelf, objdump, drill and jq, relocated like the rest, and they run in a target."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from crashcart.toolbox import DEFAULT_RECIPE, EXTRA_PATHS
from tests import test_crashcart_attach as attach_tests
from tests.crashcart_containers import Container
from tests.crashcart_universe import build_extra_repo
from tests.rpm_universe import Universe
from tests.tools import require_root, require_tool

# The attach tests' fixtures and helpers.
busybox = attach_tests.busybox
micro = attach_tests.micro
state_dir = attach_tests.state_dir
crashcart = attach_tests.crashcart
snapshot = attach_tests.snapshot

# Each program's own version line, run in the target.
CHECKS = {
    "tcpdump": ("tcpdump --version", "tcpdump version"),
    "ltrace": ("ltrace -V", "ltrace version"),
    "bash": ("bash -c 'echo $BASH_VERSION'", "5."),
    "openssl": ("openssl version", "OpenSSL 3"),
    "readelf": ("readelf -h /proc/1/exe | grep Class", "ELF64"),
    "objdump": ("objdump -f /proc/1/exe", "elf64-x86-64"),
    "drill": ("drill -v", "drill version"),
    "jq": ("echo '{\"a\": 42}' | jq .a", "42"),
}


@pytest.fixture(scope="module")
def extended_toolbox(tmp_path_factory: pytest.TempPathFactory, rpm_universe: Universe) -> Path:
    require_root()
    for tool in ("patchelf", "rpmbuild", "createrepo_c", "apt-get", "dpkg-deb"):
        require_tool(tool)
    work = tmp_path_factory.mktemp("extended")
    repo = build_extra_repo(work)
    recipe = yaml.safe_load(DEFAULT_RECIPE.read_text())
    recipe["repos"] = [{"name": "universe", "baseurl": rpm_universe.repo_url("main")}]
    (work / "smith.yaml").write_text(yaml.safe_dump(recipe))
    done = crashcart(
        work,
        *("toolbox", "build", "--recipe", str(work / "smith.yaml"), "-o", str(work / "tb")),
        *("--cache-dir", str(work / "cache"), "--extra-repo", str(repo)),
    )
    assert done.returncode == 0, done.stderr
    return work / "tb"


def test_the_extension_runs_in_the_target(
    micro: Container, extended_toolbox: Path, state_dir: Path
) -> None:
    assert {Path(p).name for p in EXTRA_PATHS} == set(CHECKS)
    before = snapshot(micro)
    script = "; ".join(f"echo =={name}; {command} 2>&1" for name, (command, _) in CHECKS.items())
    done = crashcart(
        state_dir, "attach", "--toolbox", str(extended_toolbox), micro.id, "--", "sh", "-c", script
    )
    assert done.returncode == 0, done.stderr
    outputs = dict(part.split("\n", 1) for part in done.stdout.split("==")[1:])
    for name, (_, expected) in CHECKS.items():
        assert expected in outputs[name], (name, outputs[name])
    assert snapshot(micro) == before


def test_the_default_recipe_is_unchanged() -> None:
    """The extension is not in the recipe whose golden digest is recorded."""
    recipe = yaml.safe_load(DEFAULT_RECIPE.read_text())
    assert "crashcart-toolbox-extra" not in recipe["packages"]
    assert not set(EXTRA_PATHS) & set(recipe["paths"])
    assert (
        subprocess.run(
            ["git", "diff", "--quiet", "main", "--", str(DEFAULT_RECIPE.parent)],
            cwd=DEFAULT_RECIPE.parent,
            check=False,
        ).returncode
        == 0
    )
