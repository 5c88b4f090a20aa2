"""The shrink core on its own: one in-memory tree, each source's rules, and the one result
(kept tree, reason and owner per path) that build and minimize both report from."""

from __future__ import annotations

from pathlib import Path

import pytest

from smith.conventions import ROOT, RuntimeUser
from smith.errors import RecipeError, UsageError
from smith.oci.image import ImageConfig
from smith.shrink import (
    ConfigChanges,
    ShrinkSpec,
    SourceKind,
    image_config,
    runtime_user,
    shrink,
)
from smith.tree import FileTree, HostFile, InlineBytes
from tests.elf_builders import compile_c

PATH = ("PATH=/usr/bin:/bin",)


@pytest.fixture(scope="module")
def static_program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("shrink") / "hello"
    return compile_c(out, "int main(void) { return 0; }\n", "-static")


def package_tree(program: Path, mode: int = 0o755) -> FileTree:
    tree = FileTree()
    tree.add_file("usr/bin/hello", HostFile(str(program)), mode, origin="hello-1.0-1.x86_64")
    tree.add_file("usr/share/hello/greeting", InlineBytes(b"hi\n"), 0o644, origin="hello-1.0-1")
    tree.add_file("usr/share/doc/hello/README", InlineBytes(b"doc\n"), 0o644, origin="hello-1.0-1")
    tree.add_file(
        "etc/passwd", InlineBytes(b"app:x:1234:1235::/:/bin/sh\n"), 0o644, origin="setup-1"
    )
    tree.add_file("etc/group", InlineBytes(b"app:x:1235:\n"), 0o644, origin="setup-1")
    return tree


def test_packages_keep_the_program_what_paths_name_and_who_owns_each(
    static_program: Path,
) -> None:
    spec = ShrinkSpec(
        SourceKind.PACKAGES,
        argv=("hello",),
        env=PATH,
        user=RuntimeUser(),
        paths=("/usr/share/hello",),
    )
    shrunk = shrink(package_tree(static_program), spec)
    assert shrunk.program == "usr/bin/hello"
    assert shrunk.reasons["usr/bin/hello"] == "the program (entrypoint/cmd)"
    assert shrunk.reasons["usr/share/hello/greeting"] == "named by paths: /usr/share/hello"
    assert shrunk.owners["usr/bin/hello"] == "hello-1.0-1.x86_64"
    assert shrunk.reasons["write"] == shrunk.owners["write"] == "microcontainer conventions"
    assert "usr/share/doc/hello/README" not in shrunk.reasons  # neither needed nor named
    assert set(shrunk.reasons) == {e.path for e in shrunk.tree}  # every path explained
    assert (shrunk.before.files, shrunk.after.files) == (5, 2)


def test_an_excluded_program_is_refused_by_name(static_program: Path) -> None:
    spec = ShrinkSpec(SourceKind.PACKAGES, ("hello",), PATH, excludes=("/usr/bin/*",))
    with pytest.raises(RecipeError, match=r"excludes: '/usr/bin/\*' leaves out the program"):
        shrink(package_tree(static_program), spec)


def test_each_source_keeps_its_rule_for_the_program(static_program: Path) -> None:
    """A recipe's program may be any regular file; an image's must be executable, as its
    runtime requires."""
    tree = package_tree(static_program, mode=0o644)
    assert shrink(tree, ShrinkSpec(SourceKind.PACKAGES, ("hello",), PATH)).program
    with pytest.raises(UsageError, match="'hello' is not found on its PATH"):
        shrink(tree, ShrinkSpec(SourceKind.IMAGE, ("hello",), PATH))
    with pytest.raises(RecipeError, match="set `entrypoint` or `cmd`"):
        shrink(tree, ShrinkSpec(SourceKind.PACKAGES, (), PATH))


def test_an_image_keeps_the_files_its_command_line_names(static_program: Path) -> None:
    spec = ShrinkSpec(SourceKind.IMAGE, ("hello", "/usr/share/hello/greeting", "-v"), PATH)
    shrunk = shrink(package_tree(static_program), spec)
    assert shrunk.reasons["usr/bin/hello"] == "start"
    why = shrunk.reasons["usr/share/hello/greeting"]
    assert why == "named by the command line 'hello /usr/share/hello/greeting -v'"


def test_one_runtime_user_for_recipes_and_images(static_program: Path) -> None:
    tree = package_tree(static_program)
    assert runtime_user("") == ROOT  # an image without User ran as root
    assert runtime_user("", default=RuntimeUser()) == RuntimeUser()  # a recipe's default
    named = runtime_user("app", accounts=tree)  # an image's own /etc/passwd
    assert (named.uid, named.gid, named.name) == (1234, 1235, "app")
    assert runtime_user("1000", groups=("wheel",)).groups == ("wheel",)


def test_one_image_config_for_packages_and_images() -> None:
    base = ImageConfig(env=("PATH=/bin", "A=1"), cmd=("serve",), labels=(("a", "1"),))
    changed = image_config(
        base,
        ConfigChanges(entrypoint=("/bin/app",), env=("A=2",), labels=(("b", "2"),)),
        RuntimeUser(),
    )
    assert changed.env == ("PATH=/bin", "A=2")
    assert changed.entrypoint == ("/bin/app",) and changed.cmd is None  # as docker does
    assert changed.labels == (("a", "1"), ("b", "2"))
    assert changed.user == RuntimeUser().config_user
