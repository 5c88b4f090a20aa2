"""Recipes in Oracle smith's own style, each built and run under runc on a read-only root.

Every case is a smith.yaml as users of the original write it (scalars unquoted, a rootfs/
with a program of its own, `mounts`), plus what the run must print.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from smith.oci.reading import open_image
from tests.containers import configure_bundle, run_bundle, unpack_bundle
from tests.registry_servers import Registry, start_registry
from tests.rpm_universe import Universe
from tests.test_build import listing, smith
from tests.tools import require_tool

STATIC_C = '#include <stdio.h>\nint main(void) { puts("static hello"); return 0; }\n'
DYNAMIC_C = (
    "#include <stdio.h>\n#include <gnu/libc-version.h>\n"
    'int main(void) { printf("dynamic hello, glibc %s\\n", gnu_get_libc_version() ? "ok" : "");'
    " return 0; }\n"
)


@dataclass(frozen=True)
class Case:
    recipe: str  # smith.yaml without its repos (the test adds the universe's)
    prints: str
    rootfs: dict[str, str] = field(default_factory=dict)  # path -> C source to compile
    static: bool = False


CASES = {
    "scalars": Case(
        """\
        package: busybox
        entrypoint: [/usr/bin/busybox, echo]
        cmd: [10, true, 1e6, 010, y]
        user: 1000
        labels: {a: true, n: 1}
        """,
        "10 true 1e+06 8 true\n",
    ),
    "env-list": Case(
        """\
        package: busybox
        env: [GREETING=hi from env, N=5]
        cmd: [/usr/bin/sh, -c, echo $GREETING $N]
        """,
        "hi from env 5\n",
    ),
    "ports-list": Case(
        """\
        package: busybox
        ports: [8080, 53/udp]
        cmd: [/usr/bin/busybox, echo, ports]
        """,
        "ports\n",
    ),
    "ports-map": Case(
        """\
        package: busybox
        ports: {8080/tcp: {}}
        cmd: [/usr/bin/busybox, echo, map]
        """,
        "map\n",
    ),
    "rootfs-only": Case(
        """\
        cmd: [/hello]
        """,
        "static hello\n",
        rootfs={"hello": STATIC_C},
        static=True,
    ),
    "rootfs-dynamic-on-packages": Case(
        """\
        package: glibc
        cmd: [/usr/bin/dyn]
        """,
        "dynamic hello, glibc ok\n",
        rootfs={"usr/bin/dyn": DYNAMIC_C},
    ),
    "mounts": Case(
        """\
        package: busybox
        mounts: [/data/cache, /write/logs]
        cmd: [/usr/bin/busybox, ls, -d, /data/cache]
        """,
        "/data/cache\n",
    ),
}


def write_recipe(directory: Path, case: Case, universe: Universe) -> None:
    directory.mkdir()
    text = textwrap.dedent(case.recipe)
    text += f"repos: [{universe.repo_url('main')}]\n"
    (directory / "smith.yaml").write_text(text)
    gcc = require_tool("gcc") if case.rootfs else ""
    for path, source in case.rootfs.items():
        dest = directory / "rootfs" / path
        dest.parent.mkdir(parents=True, exist_ok=True)
        src = directory / f"{dest.name}.c"
        src.write_text(source)
        flags = ["-static"] if case.static else []
        subprocess.run([gcc, "-O2", *flags, "-o", str(dest), str(src)], check=True)
        src.unlink()


def build_and_run(name: str, case: Case, tmp_path: Path, universe: Universe) -> Path:
    recipe = tmp_path / name
    write_recipe(recipe, case, universe)
    out = tmp_path / f"{name}-image"
    smith("build", str(recipe), "-o", str(out), "--cache-dir", str(tmp_path / "cache"))
    bundle = unpack_bundle(f"{out}:latest", tmp_path / f"bundle-{name}")
    configure_bundle(bundle, readonly=True)
    result = run_bundle("runc", bundle)
    assert result.returncode == 0, result.stderr
    assert result.stdout == case.prints
    return bundle


@pytest.mark.parametrize("name", sorted(CASES))
def test_originals_recipe_runs(name: str, tmp_path: Path, rpm_universe: Universe) -> None:
    bundle = build_and_run(name, CASES[name], tmp_path, rpm_universe)
    config = json.loads((bundle / "config.json").read_text())
    rootfs = bundle / "rootfs"
    if name == "scalars":
        assert config["process"]["user"]["uid"] == 1000
        assert config["annotations"]["a"] == "true"
    if name == "rootfs-only":
        # The static program and the microcontainer's directories: nothing else.
        assert listing(rootfs) == ["dev", "hello", "proc", "read", "run", "sys", "write"]
    if name == "rootfs-dynamic-on-packages":
        kept = listing(rootfs)
        assert "usr/bin/dyn" in kept and "usr/lib/x86_64-linux-gnu/libc.so.6" in kept
    if name == "mounts":
        assert (rootfs / "data" / "cache").is_dir() and (rootfs / "write" / "logs").is_dir()


def test_exposed_ports_of_both_forms(tmp_path: Path, rpm_universe: Universe) -> None:
    for name in ("ports-list", "ports-map"):
        recipe = tmp_path / name
        write_recipe(recipe, CASES[name], rpm_universe)
        out = tmp_path / f"{name}.json"
        proc = smith(
            "build", str(recipe), "-o", str(tmp_path / name / "img"), "--json",
            "--cache-dir", str(tmp_path / "cache"),
        )  # fmt: skip
        out.write_text(proc.stdout)
    with open_image(str(tmp_path / "ports-list" / "img")) as image:
        assert sorted(image.config["config"]["ExposedPorts"]) == ["53/udp", "8080/tcp"]
    with open_image(str(tmp_path / "ports-map" / "img")) as image:
        assert sorted(image.config["config"]["ExposedPorts"]) == ["8080/tcp"]


def test_the_originals_ignored_keys_are_noted_once(tmp_path: Path, rpm_universe: Universe) -> None:
    """`type: mock` and `mock:` build (they are ignored), and each is said once, not once
    per time the build reads its recipe."""
    recipe = tmp_path / "mock"
    text = "type: mock\nmock: {config: default.cfg}\npackage: hello\ncmd: [/usr/bin/hello]\n"
    case = Case(text, "")
    write_recipe(recipe, case, rpm_universe)
    for args in ((str(recipe),), (str(recipe), str(recipe.parent / "again"))):
        if len(args) == 2:  # a fleet reads each recipe for its output first
            shutil.copytree(recipe, args[1])
        proc = smith("build", *args, "-o", str(tmp_path / f"out{len(args)}"),
                     "--cache-dir", str(tmp_path / "cache"))  # fmt: skip
        for key in ("type", "mock"):
            for where in args:
                note = f"{where}/smith.yaml: the key '{key}' of the original smith is ignored"
                assert proc.stderr.count(note) == 1, proc.stderr


def add_oracle_descriptors(layout: Path) -> None:
    """What Oracle smith writes beside the image manifest in index.json: its recipe and its
    package list, as blobs of their own media types (and the same platform)."""
    index = json.loads((layout / "index.json").read_text())
    platform = index["manifests"][0].get("platform", {"os": "linux", "architecture": "amd64"})
    for media_type, data in (
        ("application/vnd.smith.spec", b"package: busybox\n"),
        ("application/vnd.smith.packages", b"busybox-1.0-1.x86_64\n"),
    ):
        digest = hashlib.sha256(data).hexdigest()
        (layout / "blobs" / "sha256" / digest).write_bytes(data)
        index["manifests"].append(
            {
                "mediaType": media_type,
                "digest": f"sha256:{digest}",
                "size": len(data),
                "platform": platform,
            }
        )
    (layout / "index.json").write_text(json.dumps(index))


def test_a_layout_as_oracle_smith_writes_it(tmp_path: Path, rpm_universe: Universe) -> None:
    recipe = tmp_path / "bb"
    write_recipe(recipe, CASES["env-list"], rpm_universe)
    layout = tmp_path / "layout"
    smith("build", str(recipe), "-o", str(layout), "--cache-dir", str(tmp_path / "cache"))
    # smith's own index names the image `latest`, as the original's did.
    skopeo = require_tool("skopeo")
    inspect = subprocess.run(
        [skopeo, "inspect", f"oci:{layout}:latest"], capture_output=True, text=True, check=False
    )
    assert inspect.returncode == 0, inspect.stderr
    add_oracle_descriptors(layout)
    proc = smith("minimize", str(layout), "-o", str(tmp_path / "small"), check=False)
    assert proc.returncode == 0, proc.stderr
    only = layout.parent / "only"
    index = json.loads((layout / "index.json").read_text())
    index["manifests"] = index["manifests"][1:]
    shutil.copytree(layout, only)
    (only / "index.json").write_text(json.dumps(index))
    bad = smith("minimize", str(only), "-o", str(tmp_path / "x"), check=False)
    assert bad.returncode != 0
    assert "lists no image manifest, only application/vnd.smith.packages" in bad.stderr
    assert len(bad.stderr.splitlines()) == 1


def test_tag_names_the_image_in_the_index(tmp_path: Path, rpm_universe: Universe) -> None:
    recipe = tmp_path / "bb"
    write_recipe(recipe, CASES["env-list"], rpm_universe)
    layout = tmp_path / "layout"
    smith(
        "build", str(recipe), "-o", str(layout), "--tag", "app:1",
        "--cache-dir", str(tmp_path / "cache"),
    )  # fmt: skip
    index = json.loads((layout / "index.json").read_text())
    names = [m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]]
    assert names == ["app:1"]


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    reg = start_registry(
        tmp_path_factory.mktemp("recipes-registry"), require_tool("docker-registry")
    )
    yield reg
    reg.stop()


def test_package_naming_an_image_in_each_form(
    tmp_path: Path, rpm_universe: Universe, registry: Registry
) -> None:
    base_recipe = tmp_path / "base"
    write_recipe(base_recipe, CASES["env-list"], rpm_universe)
    cache = str(tmp_path / "cache")
    forms = {
        "layout": ("base-layout", []),
        "oci-archive": ("base.tar", []),
        "docker-archive": ("base-docker.tar", ["--format", "docker-archive"]),
    }
    for name, extra in forms.values():
        smith("build", str(base_recipe), "-o", str(tmp_path / name), *extra, "--cache-dir", cache)
    smith(
        "upload", "-i", str(tmp_path / "base.tar"), "-r",
        f"docker://{registry.host}/recipes/base:1", "--insecure",
    )  # fmt: skip
    packages = {
        "layout": "../base-layout",
        "oci-archive": "../base.tar",
        "docker-archive": "../base-docker.tar",
        # The original's README form (Build Types), here against a plain-HTTP registry.
        "registry": f"http://{registry.host}/recipes/base:1",
    }
    for form, package in packages.items():
        recipe = tmp_path / f"from-{form}"
        recipe.mkdir()
        (recipe / "smith.yaml").write_text(
            f"package: {package}\ncmd: [/usr/bin/busybox, echo, from, {form}, 1]\nmounts: [/data]\n"
        )
        out = tmp_path / f"from-{form}-image"
        proc = smith(
            "build", str(recipe), "-o", str(out), "--json", "--insecure", "--cache-dir", cache,
            check=False,
        )  # fmt: skip
        assert proc.returncode == 0, (form, proc.stderr)
        bundle = unpack_bundle(f"{out}:latest", tmp_path / f"bundle-{form}")
        configure_bundle(bundle, readonly=True)
        result = run_bundle("runc", bundle)
        assert result.returncode == 0, result.stderr
        assert result.stdout == f"from {form} 1\n"
        assert (bundle / "rootfs" / "data").is_dir()
        assert "usr/bin/busybox" in listing(bundle / "rootfs")
