"""`smith minimize` from the command line on small crafted images: the conventions, the
options, and a table of bad inputs that each give one line on stderr and leave nothing."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from smith.oci.reading import open_image
from smith.oci.unpack import apply_layers
from tests.imagekit import M, compress, layer_tar, put_blob, sha256, write_layout
from tests.tools import PROJECT, require_tool

SMITH = str(PROJECT / ".venv/bin/smith")


def busybox_layers() -> list[bytes]:
    with open(require_tool("busybox"), "rb") as f:
        busybox = f.read()
    return [
        layer_tar(
            [
                M("bin", "dir"),
                M("bin/busybox", data=busybox, mode=0o4755, uid=1000, gid=1000),
                M("bin/sh", "symlink", link="busybox"),
                M("etc", "dir"),
                M("etc/passwd", data=b"root:x:0:0::/:/bin/sh\napp:x:1234:2345::/:/bin/sh\n"),
                M("etc/group", data=b"root:x:0:\napp:x:2345:\n"),
                M("etc/motd", data=b"hello\n", mode=0o600),
                M("etc/secret", data=b"s\n"),
                M("run", "dir"),
                M("run/stale.pid", data=b"1\n"),
                M("usr", "dir"),
                M("usr/share", "dir"),
                M("usr/share/big", data=b"x" * 100_000),
            ]
        ),
        layer_tar([M("etc/.wh.secret")]),
    ]


CONFIG = {
    "Entrypoint": ["busybox"],
    "Cmd": ["cat", "/etc/motd"],
    "Env": ["PATH=/usr/bin:/bin", "A=1"],
    "User": "app",
    "WorkingDir": "/",
    "ExposedPorts": {"80/tcp": {}},
    "Volumes": {"/data": {}},
    "Labels": {"l": "v"},
    "StopSignal": "SIGTERM",
}


def run(*args: str, tmpdir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TMPDIR": str(tmpdir)}
    return subprocess.run([SMITH, *args], capture_output=True, text=True, env=env, check=False)


@pytest.fixture
def image(tmp_path: Path) -> Path:
    layout = tmp_path / "in"
    write_layout(str(layout), busybox_layers(), CONFIG)
    return layout


def output_tree(path: Path, store: Path) -> dict[str, Any]:
    with open_image(str(path)) as img:
        tree, _ = apply_layers(img, str(store))
        return {"tree": {e.path: e for e in tree}, "config": dict(img.config)}


def test_conventions_and_config_carry_over(image: Path, tmp_path: Path) -> None:
    (tmp_path / "t").mkdir()
    proc = run(
        "minimize", str(image), "-o", str(tmp_path / "out.tar"), "--path", "/etc/motd",
        "--json", tmpdir=tmp_path / "t",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["program"] == "/bin/busybox"
    assert summary["before"]["files"] == 6 and summary["after"]["files"] == 2
    out = output_tree(tmp_path / "out.tar", tmp_path / "store")
    tree, config = out["tree"], out["config"]["config"]
    assert sorted(tree) == [
        "bin", "bin/busybox", "dev", "etc", "etc/motd", "proc", "read", "run", "sys", "write",
    ]  # fmt: skip
    busybox = tree["bin/busybox"]
    assert (busybox.mode, busybox.uid, busybox.gid) == (0o755, 1234, 2345)  # no setuid
    assert (tree["etc/motd"].mode, tree["run"].mode) == (0o644, 0o755)
    assert config["User"] == "1234:2345"  # numeric: the output has no /etc/passwd
    assert config["Entrypoint"] == ["busybox"] and config["Cmd"] == ["cat", "/etc/motd"]
    assert config["Env"] == CONFIG["Env"] and config["Labels"] == {"l": "v"}
    assert config["ExposedPorts"] == {"80/tcp": {}} and config["Volumes"] == {"/data": {}}
    assert config["StopSignal"] == "SIGTERM" and config["WorkingDir"] == "/"
    assert os.listdir(tmp_path / "t") == []


def test_keep_ownership_modes_nss_and_user(image: Path, tmp_path: Path) -> None:
    proc = run(
        "minimize", str(image), "-o", str(tmp_path / "out"), "--keep-ownership",
        "--keep-modes", "--nss", "--user", "web", tmpdir=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = output_tree(tmp_path / "out", tmp_path / "store")
    tree = out["tree"]
    assert (tree["bin/busybox"].mode, tree["bin/busybox"].uid) == (0o4755, 1000)
    with tree["etc/passwd"].content.open() as f:
        passwd = f.read()
    assert passwd.endswith(b"\nweb:x:10:10:web:/write:\n")  # complete lines
    assert out["config"]["config"]["User"] == "10:10"


def test_recipe_names_the_image(image: Path, tmp_path: Path) -> None:
    recipe = tmp_path / "smith.yaml"
    recipe.write_text(
        f"package: {image}\npaths:\n- /usr/share\ncmd:\n- ls\n- /usr/share\nroot: true\n"
    )
    proc = run("minimize", "--recipe", str(recipe), "-o", str(tmp_path / "o"), "--explain",
               tmpdir=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "/usr/share/big: extra /usr/share" in lines
    assert "/bin/busybox: start" in lines
    assert "/etc/motd" not in proc.stdout
    # The recipe's directory names it too, as `smith build DIR` does.
    by_dir = run("minimize", "--recipe", str(tmp_path), "-o", str(tmp_path / "d"), "--explain",
                 tmpdir=tmp_path)  # fmt: skip
    assert by_dir.returncode == 0, by_dir.stderr
    assert by_dir.stdout.splitlines() == lines


def test_same_options_same_digest(image: Path, tmp_path: Path) -> None:
    digests = set()
    for name in ("a", "b"):
        proc = run("minimize", str(image), "-o", str(tmp_path / name), "--json", tmpdir=tmp_path)
        assert proc.returncode == 0, proc.stderr
        digests.add(json.loads(proc.stdout)["manifest"])
    assert len(digests) == 1


def layer_blob(layout: Path) -> Path:
    index = json.loads((layout / "index.json").read_text())
    manifest_digest = index["manifests"][0]["digest"].removeprefix("sha256:")
    manifest = json.loads((layout / "blobs/sha256" / manifest_digest).read_text())
    return layout / "blobs/sha256" / manifest["layers"][0]["digest"].removeprefix("sha256:")


def remove_blob(layout: Path) -> None:
    layer_blob(layout).unlink()


def flip_byte(layout: Path) -> None:
    blob = layer_blob(layout)
    data = bytearray(blob.read_bytes())
    data[100] ^= 1
    blob.write_bytes(bytes(data))


def corrupt_gzip(layout: Path) -> None:
    tar = busybox_layers()[0]
    gz = bytearray(compress(tar, "gzip"))
    gz[len(gz) // 2] ^= 0xFF
    for p in layout.iterdir():
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink()
    write_layout(str(layout), [], CONFIG, blobs=[bytes(gz)], diff_ids=[sha256(tar)])


def hostile(layout: Path) -> None:
    shutil.rmtree(layout)
    write_layout(str(layout), [layer_tar([M("../etc/shadow", data=b"x")])], CONFIG)


def no_entrypoint(layout: Path) -> None:
    shutil.rmtree(layout)
    write_layout(str(layout), busybox_layers(), {"Env": ["PATH=/bin"]})


def nothing(layout: Path) -> None:
    pass


def retyped(which: str, change: Callable[[Any], Any]) -> Callable[[Path], None]:
    """Damage: one JSON document of the layout (index, manifest or config) replaced by what
    `change` makes of it, every digest on the way up fixed, so only the types are wrong."""

    def damage(layout: Path) -> None:
        index = json.loads((layout / "index.json").read_text())
        if which == "index":
            (layout / "index.json").write_text(json.dumps(change(index)))
            return
        blobs = layout / "blobs/sha256"
        manifest = json.loads((blobs / index["manifests"][0]["digest"][7:]).read_text())
        if which == "config":
            config = json.loads((blobs / manifest["config"]["digest"][7:]).read_text())
            data = json.dumps(change(config)).encode()
            manifest["config"].update(digest=put_blob(str(layout), data), size=len(data))
        else:
            manifest = change(manifest)
        data = json.dumps(manifest).encode()
        index["manifests"][0].update(digest=put_blob(str(layout), data), size=len(data))
        (layout / "index.json").write_text(json.dumps(index))

    return damage


def inner(**fields: Any) -> Callable[[Any], Any]:
    return lambda config: {**config, "config": {**config["config"], **fields}}


BAD: list[tuple[str, Callable[[Path], None], list[str], str]] = [
    ("missing blob", remove_blob, [], "is missing"),
    ("digest mismatch", flip_byte, [], "is corrupt: its content has digest"),
    ("corrupt gzip", corrupt_gzip, [], "not a valid gzip stream"),
    ("hostile layer", hostile, [], "'../etc/shadow' climbs out of the root"),
    ("no entrypoint", no_entrypoint, [], "no Entrypoint or Cmd"),
    ("not on PATH", nothing, ["--entrypoint", "nosuch"], "'nosuch' is not found on its PATH"),
    ("glob matches nothing", nothing, ["--path", "/opt/*.so"], "matches nothing"),
    ("exclude climbs", nothing, ["--exclude", "../x"], "climbs out of its root"),
    ("platform absent", nothing, ["--platform", "linux/s390x"], "no image for platform"),
    ("platform syntax", nothing, ["--platform", "s390x"], "platform must be OS/ARCH"),
    (
        "compression",
        nothing,
        ["--compression", "lz4"],
        "'lz4' is not one of 'gzip', 'zstd', 'none'",
    ),
    ("format", nothing, ["--format", "qcow2"], "unknown output format 'qcow2'"),
    ("zstd docker", nothing, ["--format=docker-archive", "--compression=zstd"], "hold zstd"),
    ("entrypoint json", nothing, ["--entrypoint", "[1"], "--entrypoint is not a JSON list"),
    ("tag", nothing, ["--tag", "My App"], "the tag 'My App' is not an image name"),
    # Documents of the wrong JSON type: named, never a traceback.
    ("config a list", retyped("config", lambda c: [c]), [], "not an object"),
    ("inner config a list", retyped("config", lambda c: {**c, "config": [1]}), [], "config is [1]"),
    ("Env a string", retyped("config", inner(Env="PATH=/bin")), [], 'Env is "PATH=/bin"'),
    ("Cmd numbers", retyped("config", inner(Cmd=[1])), [], "Cmd is [1], not a list of strings"),
    ("Labels a list", retyped("config", inner(Labels=["a"])), [], 'Labels is ["a"]'),
    ("rootfs a string", retyped("config", lambda c: {**c, "rootfs": "x"}), [], "rootfs.diff_ids"),
    ("layers a string", retyped("manifest", lambda m: {**m, "layers": "x"}), [], "descriptor is"),
    ("config desc a string", retyped("manifest", lambda m: {**m, "config": "x"}), [], "malformed"),
    (
        "annotations a list",
        retyped("index", lambda i: {**i, "manifests": [{**i["manifests"][0], "annotations": [1]}]}),
        [],
        "annotations are [1]",
    ),
]


@pytest.mark.parametrize(
    ("damage", "extra", "message"), [b[1:] for b in BAD], ids=[b[0] for b in BAD]
)
def test_bad_input_is_one_line_and_leaves_nothing(
    image: Path, tmp_path: Path, damage: Callable[[Path], None], extra: list[str], message: str
) -> None:
    damage(image)
    outdir = tmp_path / "outdir"
    tmpdir = tmp_path / "tmp"
    outdir.mkdir()
    tmpdir.mkdir()
    proc = run("minimize", str(image), "-o", str(outdir / "image.tar.gz"), *extra, tmpdir=tmpdir)
    assert proc.returncode != 0
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("smith: error: ")
    assert message in proc.stderr
    assert os.listdir(outdir) == [] and os.listdir(tmpdir) == []


def test_missing_image_and_unwritable_output(image: Path, tmp_path: Path) -> None:
    proc = run("minimize", str(tmp_path / "nope"), "-o", str(tmp_path / "o"), tmpdir=tmp_path)
    assert proc.returncode != 0 and "no image at" in proc.stderr
    assert "docker://" not in proc.stderr  # a path: no registry hint
    # A registry reference without its docker:// is a path that does not exist: say so.
    proc = run("minimize", "127.0.0.1:5000/team/app:1", "-o", str(tmp_path / "o"), tmpdir=tmp_path)
    assert proc.returncode != 0 and proc.stderr.count("\n") == 1
    assert "(a registry image is named docker://127.0.0.1:5000/team/app:1)" in proc.stderr
    proc = run("minimize", str(image), "-o", str(tmp_path / "no/such/dir/o"), tmpdir=tmp_path)
    assert proc.returncode != 0 and "does not exist" in proc.stderr
    assert proc.stderr.count("\n") == 1
    assert sorted(os.listdir(tmp_path)) == ["in"]


def test_platform_picks_from_a_multi_platform_index(tmp_path: Path) -> None:
    """An index of two images: --platform chooses; by default every platform is
    minimized, into an index of them in the source's order."""
    layers = busybox_layers()
    write_layout(str(tmp_path / "amd"), layers, CONFIG)
    arm_layers = [layer_tar([M("bin/busybox", data=b"an arm64 program", mode=0o755)])]
    write_layout(str(tmp_path / "arm"), arm_layers, CONFIG)
    merged = tmp_path / "multi"
    shutil.copytree(tmp_path / "amd", merged)
    shutil.copytree(tmp_path / "arm" / "blobs", merged / "blobs", dirs_exist_ok=True)
    manifests = []
    for name, arch in (("arm", "arm64"), ("amd", "amd64")):
        desc = json.loads((tmp_path / name / "index.json").read_text())["manifests"][0]
        desc["platform"] = {"os": "linux", "architecture": arch}
        manifests.append(desc)
    # The arm64 config must say arm64 too: rewrite it and its manifest.
    arm = manifests[0]
    mpath = merged / "blobs/sha256" / arm["digest"].removeprefix("sha256:")
    manifest = json.loads(mpath.read_text())
    cpath = merged / "blobs/sha256" / manifest["config"]["digest"].removeprefix("sha256:")
    config = json.loads(cpath.read_text())
    config["architecture"] = "arm64"
    cdata = json.dumps(config).encode()
    manifest["config"].update(digest=put_blob(str(merged), cdata), size=len(cdata))
    mdata = json.dumps(manifest).encode()
    arm.update(digest=put_blob(str(merged), mdata), size=len(mdata))
    index = json.loads((merged / "index.json").read_text())
    index["manifests"] = manifests
    (merged / "index.json").write_text(json.dumps(index))

    proc = run("minimize", str(merged), "-o", str(tmp_path / "o1"), "--platform", "linux/arm64",
               "--json", tmpdir=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["platform"] == "linux/arm64"
    proc = run("minimize", str(merged), "-o", str(tmp_path / "o2"), "--json", tmpdir=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert list(summary["platforms"]) == ["linux/amd64", "linux/arm64"]  # sorted keys
    assert summary["platforms"]["linux/amd64"]["after"]["files"] == 2
    top = json.loads((tmp_path / "o2" / "index.json").read_text())["manifests"]
    nested = merged_blob(tmp_path / "o2", top[0]["digest"])
    assert [m["platform"]["architecture"] for m in nested["manifests"]] == ["arm64", "amd64"]
    # Each platform as --platform names it alone.
    proc = run("minimize", str(merged), "-o", str(tmp_path / "o3"), "--platform", "linux/amd64",
               tmpdir=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    alone = json.loads((tmp_path / "o3" / "index.json").read_text())["manifests"][0]
    assert nested["manifests"][1]["digest"] == alone["digest"]
    # A single image is minimized as before: one image, not an index.
    proc = run("minimize", str(tmp_path / "arm"), "-o", str(tmp_path / "o4"), "--json",
               tmpdir=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "platforms" not in json.loads(proc.stdout)


def merged_blob(layout: Path, digest: str) -> Any:
    return json.loads((layout / "blobs/sha256" / digest.removeprefix("sha256:")).read_text())


def test_hard_link_without_its_first_name_carries_the_content(tmp_path: Path) -> None:
    layers = busybox_layers()
    layers.append(layer_tar([M("bin/cat", "hardlink", link="bin/busybox")]))
    write_layout(str(tmp_path / "in"), layers, {**CONFIG, "Entrypoint": ["/bin/cat"]})
    proc = run("minimize", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--exclude",
               "/bin/busybox", "--explain", tmpdir=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    tree = output_tree(tmp_path / "out", tmp_path / "store")["tree"]
    assert "bin/busybox" not in tree
    cat = tree["bin/cat"]
    assert cat.kind.value == "file" and cat.size > 100_000


def test_the_deepest_accepted_tree_is_minimized(tmp_path: Path) -> None:
    """256 levels (unpack's limit) pass every tree walk of minimize: the whiteout and
    replacement of a deep directory, and --path keeping one with its symlink."""
    deep = "/".join(["a"] * 255)
    busybox = busybox_layers()[0]
    layers = [
        busybox,
        layer_tar([M(deep + "/f", data=b"x"), M("b/" + deep[:-2] + "/l", "symlink", link="/a")]),
        layer_tar([M("b", data=b"now a file"), M("c/" + deep[:-2] + "/f", data=b"y")]),
        layer_tar([M(".wh.c")]),
    ]
    write_layout(str(tmp_path / "in"), layers, CONFIG)
    proc = run("minimize", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--path", "/a",
               tmpdir=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    tree = output_tree(tmp_path / "out", tmp_path / "store")["tree"]
    assert deep + "/f" in tree and "b" not in tree and "c" not in tree


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stopped_minimize_leaves_nothing(tmp_path: Path, signum: int) -> None:
    """Ctrl-C, or SIGTERM from `timeout`, `docker stop` or a CI runner, while the layers
    are read: no output, no temporary output beside it, nothing left in TMPDIR."""
    layers = [*busybox_layers(), layer_tar([M("big", data=os.urandom(1 << 20) * 150)])]
    write_layout(str(tmp_path / "in"), layers, CONFIG, how="none")
    outdir, tmpdir = tmp_path / "outdir", tmp_path / "tmp"
    outdir.mkdir()
    tmpdir.mkdir()
    args = ["minimize", str(tmp_path / "in"), "--path", "/big", "-o", str(outdir / "o.tar.gz")]
    proc = subprocess.Popen(
        [SMITH, *args], env={**os.environ, "TMPDIR": str(tmpdir)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        packs = list(tmpdir.glob("smith-minimize-*/layer-2.pack"))
        if packs and packs[0].stat().st_size > 0:
            break  # mid-way through the big layer
        time.sleep(0.01)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=60)
    expected = (
        (130, "smith: interrupted") if signum == signal.SIGINT else (143, "smith: terminated")
    )
    assert (proc.returncode, stderr.strip()) == expected
    assert os.listdir(outdir) == [] and os.listdir(tmpdir) == []


def test_a_layout_of_several_images_needs_a_name(tmp_path: Path) -> None:
    """Two named images for one platform in one layout: the first is not taken silently
    (minimize, diff and upload would read the wrong one); LAYOUT:NAME picks one."""
    layout = tmp_path / "two"
    write_layout(str(layout), busybox_layers(), CONFIG)
    first = json.loads((layout / "index.json").read_text())["manifests"][0]
    write_layout(str(layout), busybox_layers(), {**CONFIG, "Cmd": ["cat", "/etc/group"]})
    second = json.loads((layout / "index.json").read_text())["manifests"][0]
    first["annotations"]["org.opencontainers.image.ref.name"] = "one"
    second["annotations"]["org.opencontainers.image.ref.name"] = "two"
    index = {"schemaVersion": 2, "manifests": [first, second]}
    (layout / "index.json").write_text(json.dumps(index))
    proc = run("minimize", str(layout), "-o", str(tmp_path / "o"), tmpdir=tmp_path)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
    assert f"holds 2 images for linux/amd64 (one, two): name one as {layout}:NAME" in proc.stderr
    proc = run("minimize", f"{layout}:two", "-o", str(tmp_path / "o"), "--json", tmpdir=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["source_manifest"] == second["digest"]
    proc = run("minimize", f"{layout}:three", "-o", str(tmp_path / "o"), tmpdir=tmp_path)
    assert "no image is named 'three'" in proc.stderr
