"""Recipes: the original's smith.yaml unchanged, smith's additions, one-line errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from smith.build import recipe_user
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
    user = recipe_user(recipe)
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
    assert (recipe_user(recipe).uid, recipe_user(recipe).gid) == (101, 102)
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
    user = recipe_user(load_recipe(write(tmp_path, text)))
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
            r"paths: input should be a list, got '/usr/bin/cat'",
        ),
        (
            "package: x\nsource_date_epoch: -5\n",
            r"source_date_epoch: input should be greater than or equal to 0",
        ),
        ("- just\n- a list\n", r"a recipe is a mapping of keys, not a list"),
        ("package: x\nrepos: [{priority: 1}]\n", r"repos\[0\]\.baseurl: field required"),
        # Values a runtime would refuse when it runs the image (runc: "cwd must be an
        # absolute path"), refused when the recipe is read.
        ("package: x\ndir: app\n", r"dir: 'app' is not an absolute path$"),
        ("package: x\nenv: {A: b}\n", r"env: input should be a list, got dict"),
        ("package: x\nmounts: [data]\n", r"mounts\[0\]: 'data' is not an absolute"),
        ("package: x\nports: [http]\n", r"ports\[0\]: 'http' is not a port"),
        ("package: x\nports: ['80/icmp']\n", r"ports\[0\]: '80/icmp' is not a port"),
        ("package: x\nports: [70000]\n", r"ports\[0\]: '70000/tcp' is not a port"),
        (
            "package: x\nno_runtime_libraries: [jvm]\n",
            r"no_runtime_libraries: 'jvm' is not one of interpreter, openssl, "
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


# What Oracle smith's ghodss/yaml (go-yaml v2, then JSON, then a Go string) makes of a
# scalar in a string field; the Go column is what `yaml.Unmarshal` into a struct with a
# `[]string` field gives for `cmd: [x, VALUE]`.
@pytest.mark.parametrize(
    ("scalar", "go"),
    [
        ("10", "10"),
        ("true", "true"),
        ("True", "true"),
        ("yes", "true"),
        ("y", "true"),  # a boolean to go-yaml v2, text to PyYAML
        ("off", "false"),
        ("n", "false"),
        ("0x1F", "31"),
        ("010", "8"),  # octal, as Go's ParseInt(s, 0, 64) reads it
        ("0o17", "15"),
        ("0b101", "5"),
        ("1_000", "1000"),
        ("+5", "5"),
        ("-7", "-7"),
        ("1.50", "1.5"),
        ("1.0", "1"),
        ("1e3", "1000"),  # a float to go-yaml v2, text to PyYAML (no dot)
        ("1e6", "1e+06"),
        ("0.00001", "1e-05"),
        ("3.14159265358979", "3.1415927"),  # FormatFloat(v, 'g', -1, 32)
        ("1234567.0", "1.234567e+06"),
        (".5", "0.5"),
        (".inf", "+Inf"),
        ("-.inf", "-Inf"),
        (".nan", "NaN"),
        ("~", ""),
        ("null", ""),
        ("1:30", "1:30"),  # sexagesimal 90 to PyYAML
        ("2024-01-02", "2024-01-02"),  # a date to PyYAML, its text to go-yaml v2
        ("2024-01-02T03:04:05Z", "2024-01-02T03:04:05Z"),
        ("'10'", "10"),
        ('"true"', "true"),
        ("0x", "0x"),
        ("1.2.3", "1.2.3"),
        ("18446744073709551615", "18446744073709551615"),  # ParseUint's range
        ("99999999999999999999", "1e+20"),  # beyond it: a float
    ],
)
def test_scalars_in_string_fields_are_what_the_original_read(
    tmp_path: Path, scalar: str, go: str
) -> None:
    recipe = load_recipe(
        write(tmp_path, f"package: x\ncmd: [x, {scalar}]\nlabels: {{k: {scalar}}}\n")
    )
    assert recipe.cmd == ("x", go)
    assert recipe.labels == {"k": go}


def test_the_recipes_people_write_first(tmp_path: Path) -> None:
    text = """\
package: busybox
entrypoint: [/bin/busybox, true]
cmd: [sleep, 10]
user: 1000
labels: {a: true, 1: 2, build: 2024-05-01}
ports: [80, 8080/udp]
nss: y
"""
    recipe = load_recipe(write(tmp_path, text))
    assert recipe.entrypoint == ("/bin/busybox", "true")
    assert recipe.cmd == ("sleep", "10")
    assert recipe.user == "1000"
    assert recipe.labels == {"a": "true", "1": "2", "build": "2024-05-01"}
    assert recipe.ports == ("80/tcp", "8080/udp")
    assert recipe.nss is True
    user = recipe_user(recipe)
    assert (user.uid, user.gid) == (1000, 1000)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("package: x\ncmd: [x, [1]]\n", r"cmd\[1\]: input should be a valid string, got list"),
        ("package: x\nlabels: {a: {b: c}}\n", r"labels\.a: input should be a valid string"),
        ("package: x\nnss: 1\n", r"nss: input should be a valid boolean, got 1"),
        ("package: x\ncmd: [!!int abc]\n", r"YAML syntax error: 'abc' is not a valid !!int"),
    ],
)
def test_what_no_scalar_rule_makes_a_string(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(RecipeError, match=message):
        load_recipe(write(tmp_path, text))
