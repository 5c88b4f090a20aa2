"""Commands that read or write images, given registry references: `smith build` with a
parent pulled from a registry and --push, `smith minimize docker://...`."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from smith.oci.push import push_image
from smith.oci.reading import open_image
from smith.oci.registry import RegistryOptions
from tests.imagekit import write_layout
from tests.registry_fixtures import layout_manifest_digest, make_image, run_skopeo, run_smith
from tests.registry_servers import Registry, start_registry
from tests.rpm_universe import Universe
from tests.test_minimize_cli import CONFIG, busybox_layers
from tests.tools import PROJECT, require_tool


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    reg = start_registry(tmp_path_factory.mktemp("build-registry"), require_tool("docker-registry"))
    yield reg
    reg.stop()


def test_build_on_a_registry_parent_and_push(
    registry: Registry, rpm_universe: Universe, tmp_path: Path
) -> None:
    skopeo = require_tool("skopeo")
    base, base_digest = make_image(tmp_path, "base", big=1 << 16, seed=3)
    push_image(
        str(base), f"docker://{registry.host}/base/app:v1", options=RegistryOptions(insecure=True)
    )
    recipe_dir = tmp_path / "hello"
    shutil.copytree(PROJECT / "recipes" / "hello", recipe_dir)
    recipe = yaml.safe_load((recipe_dir / "smith.yaml").read_text())
    recipe["repos"] = [{"name": "universe", "baseurl": rpm_universe.repo_url("main")}]
    recipe["parent"] = f"docker://{registry.host}/base/app:v1"
    (recipe_dir / "smith.yaml").write_text(yaml.safe_dump(recipe))
    out = tmp_path / "out"
    ref = f"docker://{registry.host}/built/hello:v1"
    proc = run_smith(
        "build", str(recipe_dir), "-o", str(out), "--cache-dir", str(tmp_path / "cache"),
        "--push", ref, "--insecure", home=tmp_path,
    )  # fmt: skip
    digest = layout_manifest_digest(out)
    assert proc.stdout.strip().splitlines()[-1] == f"{registry.host}/built/hello@{digest}"
    raw = run_skopeo(skopeo, "inspect", "--tls-verify=false", "--raw", ref, home=tmp_path).stdout
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == digest
    with open_image(str(out)) as built, open_image(str(base)) as parent:
        assert built.layers[:2] == parent.layers
        assert len(built.layers) == 3
    assert base_digest != digest


def test_minimize_reads_a_registry_reference(registry: Registry, tmp_path: Path) -> None:
    layout = tmp_path / "in"
    write_layout(str(layout), busybox_layers(), CONFIG)
    ref = f"docker://{registry.host}/minimize/busybox:v1"
    push_image(str(layout), ref, options=RegistryOptions(insecure=True))
    digests = []
    for source, extra in ((str(layout), ()), (ref, ("--insecure",))):
        proc = run_smith(
            "minimize", source, "-o", str(tmp_path / f"out-{len(digests)}"), "--json", *extra,
            home=tmp_path,
        )  # fmt: skip
        digests.append(json.loads(proc.stdout)["manifest"])
    assert digests[0] == digests[1]


def test_crashcart_toolbox_from_a_registry_reference(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import crashcart.image
    from crashcart.attach import AttachRequest

    toolbox, _ = make_image(tmp_path, "toolbox", big=1 << 12, seed=9)
    push_image(
        str(toolbox), f"docker://{registry.host}/crashcart/toolbox:v1",
        options=RegistryOptions(insecure=True),
    )  # fmt: skip
    monkeypatch.setattr(crashcart.image, "IMAGE_CACHE", str(tmp_path / "cache"))
    request = AttachRequest(target="1", toolbox=f"http://{registry.host}/crashcart/toolbox:v1")
    root = Path(request.toolbox_directory())
    assert (root / "data" / "app").read_bytes().startswith(b"#!/bin/sh")
    assert (root / "data" / "big").stat().st_size == 1 << 12


def test_diff_a_registry_reference_with_its_local_image(registry: Registry, tmp_path: Path) -> None:
    layout, _ = make_image(tmp_path, "diffed", big=1 << 12, seed=11)
    other, _ = make_image(tmp_path, "other", big=1 << 12, seed=12)
    ref = f"docker://{registry.host}/diff/app:v1"
    push_image(str(layout), ref, options=RegistryOptions(insecure=True))
    same = run_smith("diff", ref, str(layout), "--insecure", home=tmp_path)
    assert same.returncode == 0
    differ = run_smith("diff", ref, str(other), "--insecure", home=tmp_path, check=False)
    assert differ.returncode == 1 and differ.stdout
