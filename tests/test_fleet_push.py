"""`smith build R1 R2 --share-layers --push PREFIX`: each image of a fleet pushed to
PREFIX/<name>:<tag> of a real docker-registry (behind the counting proxy), read back by
skopeo; a blob the images share is uploaded once and mounted into the other repository."""

from __future__ import annotations

import json
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.golden_recipes import recipe_copy
from tests.registry_fixtures import run_skopeo, run_smith
from tests.registry_servers import FaultProxy, Registry, TokenServer, start_registry
from tests.rpm_universe import Universe
from tests.tools import require_tool

FLEET = ("hello", "curl")


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultProxy]:
    registry: Registry = start_registry(
        tmp_path_factory.mktemp("fleet-registry"), require_tool("docker-registry")
    )
    counting = FaultProxy(registry.host)
    yield counting
    counting.stop()
    registry.stop()


@pytest.fixture(scope="module")
def recipes(frozen_universe: Universe, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    work = tmp_path_factory.mktemp("fleet-push")
    repo = str(frozen_universe.root / "repos" / "main")
    return [str(recipe_copy(n, work / "recipes", repo)) for n in FLEET]


def blobs_of(layout: Path) -> tuple[bytes, dict[str, int]]:
    """An OCI layout's manifest bytes and its blobs (config and layers) by digest."""
    index = json.loads((layout / "index.json").read_text())
    digest = index["manifests"][0]["digest"].split(":")[1]
    raw = (layout / "blobs" / "sha256" / digest).read_bytes()
    manifest = json.loads(raw)
    return raw, {d["digest"]: d["size"] for d in [manifest["config"], *manifest["layers"]]}


def glibc_layer(layout: Path) -> str:
    _, sizes = blobs_of(layout)
    for digest in sizes:
        blob = layout / "blobs" / "sha256" / digest.split(":")[1]
        if tarfile.is_tarfile(blob):
            with tarfile.open(blob) as tar:
                if "usr/lib/x86_64-linux-gnu/libc.so.6" in tar.getnames():
                    return digest
    raise AssertionError(f"{layout}: no layer holds libc.so.6")


def test_a_shared_fleet_is_pushed_with_each_shared_blob_uploaded_once(
    proxy: FaultProxy, recipes: list[str], tmp_path: Path
) -> None:
    skopeo = require_tool("skopeo")
    proxy.clear()
    out = tmp_path / "out"
    proc = run_smith(
        "build", *recipes, "-o", str(out), "--share-layers", "--json", "--insecure",
        "--cache-dir", str(tmp_path / "cache"), "--push", f"{proxy.host}/team",
        home=tmp_path,
    )  # fmt: skip
    report = {Path(doc["output"]).name: doc["push"] for doc in json.loads(proc.stdout)}
    assert sorted(report) == sorted(FLEET)
    blobs = {name: blobs_of(out / name) for name in FLEET}
    shared = set(blobs["hello"][1]) & set(blobs["curl"][1])
    assert glibc_layer(out / "hello") in shared  # one glibc blob in both
    # Every distinct blob went over the wire once: the shared ones were mounted.
    unique = {d: s for _, sizes in blobs.values() for d, s in sizes.items()}
    assert proxy.upload_bytes == sum(unique.values())
    assert sum(r["uploaded_bytes"] for r in report.values()) == sum(unique.values())
    assert report["hello"]["mounted_blobs"] == 0  # pushed first: nothing to mount from
    assert report["curl"]["mounted_blobs"] == len(shared)
    for name in FLEET:
        ref = f"docker://{proxy.host}/team/{name}:latest"
        assert report[name]["reference"] == f"{proxy.host}/team/{name}:latest"
        raw = run_skopeo(skopeo, "inspect", "--tls-verify=false", "--raw", ref, home=tmp_path)
        assert raw.stdout == blobs[name][0]  # byte for byte the -o DIR manifest
        copy = tmp_path / f"copy-{name}"
        run_skopeo(
            skopeo, "copy", "--src-tls-verify=false", ref, f"oci:{copy}:latest", home=tmp_path
        )
        assert blobs_of(copy) == blobs[name]
        assert (
            report[name]["digest"]
            == json.loads((copy / "index.json").read_text())["manifests"][0]["digest"]
        )


@pytest.mark.parametrize("prefix", ["127.0.0.1:1/team:v1", "UP/x"])
def test_a_bad_push_prefix_is_refused_before_anything_is_built(
    recipes: list[str], tmp_path: Path, prefix: str
) -> None:
    proc = run_smith(
        "build", *recipes, "-o", str(tmp_path / "out"), "--push", prefix, home=tmp_path,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("smith: error: --push ") and prefix in line, line
    assert not (tmp_path / "out").exists()


def test_two_recipes_of_one_name_are_refused_one_push_place(
    recipes: list[str], tmp_path: Path
) -> None:
    other = shutil.copytree(recipes[0], tmp_path / "other" / "hello")
    proc = run_smith("build", recipes[0], str(other), "--push", "127.0.0.1:1/team",
                     home=tmp_path, check=False)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert line.endswith("would both push to 127.0.0.1:1/team/hello:latest"), line


def test_an_image_that_fails_to_push_is_named_and_the_others_stay(
    proxy: FaultProxy, recipes: list[str], tmp_path: Path
) -> None:
    proxy.clear()
    proxy.add("PUT", "/v2/failing/hello/manifests/", "500", times=10)
    proc = run_smith(
        "build", *recipes, "-o", str(tmp_path / "out"), "--layers", "packages", "--insecure",
        "--retries", "0", "--cache-dir", str(tmp_path / "cache"),
        "--push", f"{proxy.host}/failing", home=tmp_path, check=False,
    )  # fmt: skip
    proxy.clear()
    assert proc.returncode == 1, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    # hello, the first, failed; curl after it was still pushed, and stays.
    assert f"push of {proxy.host}/failing/hello:latest failed" in last, proc.stderr
    assert f"pushed (they stay): {proxy.host}/failing/curl:latest" in last
    assert "Traceback" not in proc.stderr
    assert proc.stdout.strip().startswith(f"{proxy.host}/failing/curl:latest@sha256:")


def test_a_fleet_pushed_with_bearer_tokens_and_creds_mounts_its_shared_blobs(
    recipes: list[str], tmp_path: Path
) -> None:
    """--creds and a token server work for a fleet as for one image, mounts included."""
    tokens = TokenServer("fleet-user", "fleet-Pw-3d", tmp_path / "tokens")
    registry = start_registry(
        tmp_path / "registry", require_tool("docker-registry"), auth=tokens.auth_config()
    )
    try:
        proc = run_smith(
            "build", *recipes, "-o", str(tmp_path / "out"), "--layers", "packages", "--json",
            "--cache-dir", str(tmp_path / "cache"), "--creds", "fleet-user:fleet-Pw-3d",
            "--push", f"http://{registry.host}/bearer", home=tmp_path,
        )  # fmt: skip
    finally:
        registry.stop()
        tokens.stop()
    report = {Path(doc["output"]).name: doc["push"] for doc in json.loads(proc.stdout)}
    shared = set(blobs_of(tmp_path / "out" / "hello")[1]) & set(
        blobs_of(tmp_path / "out" / "curl")[1]
    )
    assert shared and report["curl"]["mounted_blobs"] == len(shared)
    assert "fleet-Pw-3d" not in proc.stdout + proc.stderr
