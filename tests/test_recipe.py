"""Recipes: the original's smith.yaml unchanged, smith's additions, one-line errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from smith.build import runtime_user
from smith.errors import RecipeError
from smith.oci.compress import Compression
from smith.recipe import Recipe, Repo, RuntimeSet, load_recipe
from smith.resolve.runtime_sets import RuntimeRule

ORIGINAL_CAT = """\
package: coreutils
paths:
- /usr/bin/cat
cmd:
- /usr/bin/cat
- /read/data
"""


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "smith.yaml"
    path.write_text(text)
    return str(path)


def test_the_originals_readme_example(tmp_path: Path) -> None:
    recipe = load_recipe(write(tmp_path, ORIGINAL_CAT))
    assert recipe.package_requests == ("coreutils",)
    assert recipe.paths == ("/usr/bin/cat",)
    assert recipe.cmd == ("/usr/bin/cat", "/read/data")
    user = runtime_user(recipe)
    assert (user.uid, user.gid) == (10, 10)  # the original's default, uid/gid 10


def test_every_original_key_and_the_additions(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    text = """\
type: mock
mock: {config: default.cfg}
package: nginx
packages: [zlib]
paths: [/usr/share/nginx]
excludes: [/usr/share/nginx/html/*.png]
parent: base.tar.gz
nss: true
root: false
user: "101:102"
groups: [www]
mounts: [/write/cache]
entrypoint: /usr/sbin/nginx
cmd: ["-g", "daemon off;"]
dir: /write
env: [A=1, B=2]
labels: {version: 1}
ports: [80, "443/tcp"]
repos:
- {id: local, baseurl: "http://127.0.0.1:8080/repo", priority: 10, gpgcheck: false}
arch: x86_64
runtime_libraries: [nss, gconv]
no_runtime_libraries: [openssl, libgcc_s]
profile: app.profile
libraries: ["/usr/lib64/nginx/modules/*.so"]
compression: zstd
source_date_epoch: 1700000000
"""
    recipe = load_recipe(write(tmp_path, text))
    assert recipe.entrypoint == ("/usr/sbin/nginx",)
    assert recipe.ports == ("80/tcp", "443/tcp")
    assert recipe.labels == {"version": "1"}
    assert (runtime_user(recipe).uid, runtime_user(recipe).gid) == (101, 102)
    assert recipe.runtime_libraries == (RuntimeSet.NSS, RuntimeSet.GCONV)
    assert recipe.no_runtime_libraries == (RuntimeRule.OPENSSL, RuntimeRule.LIBGCC_S)
    assert recipe.profile == "app.profile"
    assert recipe.repos[0].priority == 10
    assert "'type' of the original smith is ignored" in caplog.text
    assert "'mock' of the original smith is ignored" in caplog.text


def test_ports_as_a_map_like_the_later_original(tmp_path: Path) -> None:
    recipe = load_recipe(write(tmp_path, "package: x\nports: {'8080/tcp': {}}\n"))
    assert recipe.ports == ("8080/tcp",)


@pytest.mark.parametrize(
    ("user", "root", "ids"),
    [
        (None, True, (0, 0)),
        ("1000", False, (1000, 1000)),
        ("nginx", False, (10, 10)),
        ("5:6", False, (5, 6)),
    ],
)
def test_runtime_ids(tmp_path: Path, user: str | None, root: bool, ids: tuple[int, int]) -> None:
    text = "package: x\n" + (f"user: '{user}'\n" if user else "") + f"root: {str(root).lower()}\n"
    user = runtime_user(load_recipe(write(tmp_path, text)))
    assert (user.uid, user.gid) == ids


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("package: [unclosed\n", r"smith\.yaml:2:1: YAML syntax error"),
        ("package: x\n  bad: indent\n", r"smith\.yaml:2:6: YAML syntax error"),
        ("pakage: coreutils\n", r"unknown key 'pakage' \(did you mean 'package'\?\)"),
        (
            "package: x\nrepos: [{baseurl: http://x, priorty: 1}]\n",
            r"unknown key 'repos\[0\]\.priorty' \(did you mean 'priority'\?\)",
        ),
        ("package: x\nnss: maybe\n", r"nss: input should be a valid boolean, got 'maybe'"),
        (
            "package: x\npaths: /usr/bin/cat\n",
            r"paths: input should be a valid tuple, got '/usr/bin/cat'",
        ),
        (
            "package: x\nsource_date_epoch: -5\n",
            r"source_date_epoch: input should be greater than or equal to 0",
        ),
        ("- just\n- a list\n", r"a recipe is a mapping of keys, not a list"),
        ("package: x\nrepos: [{priority: 1}]\n", r"repos\[0\]\.baseurl: field required"),
        # Values a runtime would refuse when it runs the image (runc: "cwd must be an
        # absolute path"), refused when the recipe is read.
        ("package: x\ndir: app\n", r"dir: value error, 'app' is not an absolute path"),
        ("package: x\nmounts: [data]\n", r"mounts\[0\]: value error, 'data' is not an absolute"),
        ("package: x\nports: [http]\n", r"ports\[0\]: value error, 'http' is not a port"),
        ("package: x\nports: ['80/icmp']\n", r"ports\[0\]: value error, '80/icmp' is not a port"),
        ("package: x\nports: [70000]\n", r"ports\[0\]: value error, '70000/tcp' is not a port"),
        (
            "package: x\nno_runtime_libraries: [jvm]\n",
            r"no_runtime_libraries: value error, 'jvm' is not one of interpreter, openssl, "
            r"libgcc_s",
        ),
        (
            "package: x\nrepos: [{baseurl: a, baseurl: b}]\n",
            r"smith\.yaml:2:22: YAML syntax error: the key 'baseurl' is given twice",
        ),
    ],
)
def test_bad_recipes_give_one_line_that_says_where(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(RecipeError, match=message) as info:
        load_recipe(write(tmp_path, text))
    assert "\n" not in str(info.value)


def test_a_merge_key_may_be_overridden(tmp_path: Path) -> None:
    recipe = load_recipe(write(tmp_path, 'package: x\nlabels: {<<: {a: "1", b: "1"}, a: "2"}\n'))
    assert recipe.labels == {"a": "2", "b": "1"}


def test_missing_recipe(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="no recipe at"):
        load_recipe(str(tmp_path / "nope.yaml"))


def test_every_key_the_readme_names_is_a_recipe_key() -> None:
    # A key documented under another name is refused as unknown in the recipes users write.
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    paragraph = readme[readme.index("A recipe is Oracle smith's") :].split("\n\n")[0]
    named = set(re.findall(r"`([a-z_]+)`", paragraph)) - {"smith"}
    known = {*Recipe.model_fields, *Repo.model_fields, *(s.value for s in RuntimeSet)}
    known |= {r.value for r in RuntimeRule}
    known |= {c.value for c in Compression}
    assert sorted(named - known) == []
