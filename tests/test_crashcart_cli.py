"""The hand-read `attach` command line agrees with the click definition it stands in for."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from crashcart.attach import AttachRequest
from crashcart.cli import parse_attach
from crashcart.record import record
from crashcart.target import DEFAULT_DOCKER_HOST
from tests.tools import PROJECT


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["web"], {"target": "web", "command": ()}),
        (["web", "--", "ls", "-l"], {"target": "web", "command": ("ls", "-l")}),
        (
            ["--toolbox", "/tb", "--force", "42", "--", "true"],
            {"toolbox": "/tb", "force": True, "target": "42", "command": ("true",)},
        ),
        (
            ["--toolbox=/tb", "-m", "web"],
            {"toolbox": "/tb", "mount_only": True, "target": "web", "command": ()},
        ),
        (
            ["-T", "--docker-host", "unix:///s", "web"],
            {"tty": False, "docker_host": "unix:///s", "target": "web", "command": ()},
        ),
        (["-u", "web"], {"unmount": True, "target": "web", "command": ()}),
    ],
)
def test_fast_path_reads_plain_attach_lines(args: list[str], expected: dict[str, object]) -> None:
    assert parse_attach(args) == expected
    AttachRequest(**expected)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "args",
    [[], ["--help"], ["-h"], ["--toolbox"], ["--bogus", "web"], ["web", "ls"], ["--", "web"][:0]],
)
def test_everything_else_goes_to_click(args: list[str]) -> None:
    assert parse_attach(args) is None


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (["attach", "--bogus", "web"], 2, "No such option '--bogus'"),
        (["attach"], 2, "Missing argument 'TARGET'"),
        (["attach", "-m", "-u", "web"], 2, "--mount-only and --unmount exclude each other"),
    ],
)
def test_usage_errors_are_one_line(args: list[str], status: int, message: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "crashcart", *args],
        capture_output=True,
        text=True,
        cwd=PROJECT,
        check=False,
    )
    assert done.returncode == status
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_record_behaves_like_a_frozen_dataclass() -> None:
    @record
    class Point:
        x: int
        y: int = 2

    p = Point(1)
    assert p == Point(x=1, y=2)
    assert hash(p) == hash(Point(1, 2))
    assert repr(p) == "Point(x=1, y=2)"
    with pytest.raises(AttributeError):
        p.x = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        Point()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Point(1, x=1)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("args", "defaults"),
    [
        (["attach", "--help"], ["$CRASHCART_TOOLBOX, else /var/lib/crashcart/toolbox"]),
        (["attach", "--help"], [f"$DOCKER_HOST, else {DEFAULT_DOCKER_HOST}"]),
        (["toolbox", "build", "--help"], ["$CRASHCART_TOOLBOX, else /var/lib/crashcart/toolbox"]),
    ],
)
def test_help_names_the_defaults(args: list[str], defaults: list[str]) -> None:
    """attach looks for the toolbox where `toolbox build` writes it; both helps say where
    (neither did)."""
    env = {k: v for k, v in os.environ.items() if k != "CRASHCART_TOOLBOX"}
    done = subprocess.run(
        [sys.executable, "-m", "crashcart", *args],
        capture_output=True,
        text=True,
        cwd=PROJECT,
        check=True,
        env=env,
    )
    text = " ".join(done.stdout.split())
    for default in defaults:
        assert default in text
    default_toolbox = subprocess.run(
        [sys.executable, "-c", "from crashcart.prefix import DEFAULT_TOOLBOX as d; print(d)"],
        capture_output=True,
        text=True,
        cwd=PROJECT,
        check=True,
        env=env,
    ).stdout.strip()
    assert default_toolbox == "/var/lib/crashcart/toolbox"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["web"], ["web"]),
        (["web", "ps", "-ef"], ["web", "--", "ps", "-ef"]),
        (["-m", "web"], ["-m", "web"]),
        (["--unmount", "web"], ["-u", "web"]),
        (["-i", "tb.oci", "web", "ls"], ["--toolbox=tb.oci", "web", "--", "ls"]),
        (["--image=tb.oci", "42"], ["--toolbox=tb.oci", "42"]),
        (["--what", "web"], None),
        (["-i"], None),
    ],
)
def test_the_original_command_lines(args: list[str], expected: list[str] | None) -> None:
    """`crashcart [-m|-u] [-i IMAGE] ID [CMD...]`, the original crashcart's form."""
    from crashcart.cli import translate_original

    assert translate_original(args) == expected


def test_the_original_exec_option_is_refused_by_name() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "crashcart", "-e", "web"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(PROJECT)},
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr == (
        "crashcart: error: -e (run through docker exec) is not supported: crashcart enters "
        "the container itself; leave -e out\n"
    )
