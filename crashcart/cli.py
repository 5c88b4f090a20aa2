"""The `crashcart` command line.

`crashcart attach TARGET [-- CMD...]` is an incident tool benchmarked against `runc exec`,
and importing click alone costs more than the whole attach. So a plain attach command line
is read here by hand; anything else (help, an unknown option, other commands) goes to the
click commands in crashcart/commands.py, which define the real interface and its messages.
"""

from __future__ import annotations

import os
import sys

from smith.cli.reporting import exit_reporting

TYPE_CHECKING = False  # typing.TYPE_CHECKING; importing typing costs attach start-up time
if TYPE_CHECKING:
    from typing import NoReturn

_FLAGS = {
    "-m": "mount_only",
    "--mount-only": "mount_only",
    "-u": "unmount",
    "--unmount": "unmount",
    "--force": "force",
    "-t": "tty",
    "--tty": "tty",
    "--privileged": "privileged",
    "--target-path": "target_path",
}
_NEGATIVE_FLAGS = {"-T": "tty", "--no-tty": "tty"}
_VALUES = {
    "--toolbox": "toolbox",
    "--docker-host": "docker_host",
    "--record": "record",
    "-n": "namespace",
    "--namespace": "namespace",
    "--runtime-endpoint": "runtime_endpoint",
}
_REPEATED = {"--allow": "allow"}  # a tuple of every value given


def parse_attach(args: list[str]) -> dict[str, object] | None:
    """The options of a plain `attach` command line, or None to let click handle it."""
    options: dict[str, object] = {}
    positional: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            positional.extend(args[i + 1 :])
            break
        name, eq, value = arg.partition("=")
        if arg in _FLAGS:
            options[_FLAGS[arg]] = True
        elif arg in _NEGATIVE_FLAGS:
            options[_NEGATIVE_FLAGS[arg]] = False
        elif name in _REPEATED and (eq or i + 1 < len(args)):
            key = _REPEATED[name]
            given = value if eq else args[i + 1]
            i += 0 if eq else 1
            options[key] = (*options.get(key, ()), given)  # type: ignore[misc]
        elif name in _VALUES and eq:
            options[_VALUES[name]] = value
        elif arg in _VALUES and i + 1 < len(args):
            options[_VALUES[arg]] = args[i + 1]
            i += 1
        elif arg.startswith("-") or positional:
            return None  # help, a typo, or a command without `--`: click deals with those
        else:
            positional.append(arg)
        i += 1
    if not positional:
        return None
    options["target"] = positional[0]
    options["command"] = tuple(positional[1:])
    return options


def _join_cgroups_early(options: dict[str, object]) -> None:
    """Start the session's move into the target's cgroups before the attach code is even
    imported (see cgroups.start_joining: it waits for the kernel). Only a target found
    without a daemon, and only as a head start: the attach checks and reports everything."""
    if options.get("mount_only") or options.get("unmount") or os.geteuid() != 0:
        return
    from crashcart.target import resolve_local
    from smith.errors import SmithError

    try:
        target = resolve_local(str(options["target"]))
        if target is not None:
            from crashcart import cgroups

            cgroups.start_joining(target.pid)
    except (SmithError, OSError, ValueError):
        pass  # the attach finds the same problem and says what it is


def _fast_attach(options: dict[str, object], debug: bool) -> NoReturn:
    _join_cgroups_early(options)
    from crashcart.attach import AttachRequest, run_request

    try:
        exit_reporting("crashcart", debug, lambda: run_request(AttachRequest(**options)))  # type: ignore[arg-type]
    except SystemExit as done:
        if debug:
            raise
        code = done.code if isinstance(done.code, int) else 0 if done.code is None else 1
    # The session has already undone everything it did (mount, state files, descriptors),
    # so the interpreter's teardown, a seventh of the time of `runc exec`, is skipped.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError:
            pass
    os._exit(code)


COMMANDS = ("attach", "debug", "toolbox")
# The original crashcart's options (`crashcart [-m|-u] [-i IMAGE] ID [CMD...]`) as attach's.
_ORIGINAL_FLAGS = {"-m": "-m", "--mount-only": "-m", "-u": "-u", "--unmount": "-u"}
_ORIGINAL_IMAGE = ("-i", "--image")


def translate_original(args: list[str]) -> list[str] | None:
    """The original crashcart's command line as `attach` arguments (everything after the
    container is the command, as there), or None if it is not one.

    Its -i IMAGE named the toolbox image: here --toolbox, which takes an image (OCI layout
    or archive, registry reference) or a toolbox directory. Its -e (docker exec) has no
    counterpart: crashcart enters the container itself."""
    out: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        name, eq, value = arg.partition("=")
        if arg in _ORIGINAL_FLAGS:
            out.append(_ORIGINAL_FLAGS[arg])
        elif name in _ORIGINAL_IMAGE and eq:
            out.append(f"--toolbox={value}")
        elif arg in _ORIGINAL_IMAGE and i + 1 < len(args):
            out.append(f"--toolbox={args[i + 1]}")
            i += 1
        elif arg in ("-e", "--exec"):
            print(
                "crashcart: error: -e (run through docker exec) is not supported: crashcart "
                "enters the container itself; leave -e out",
                file=sys.stderr,
            )
            raise SystemExit(2)
        elif arg.startswith("-"):
            return None
        else:
            command = args[i + 1 :]
            return [*out, arg, "--", *command] if command else [*out, arg]
        i += 1
    return None


def main(argv: list[str] | None = None) -> NoReturn:
    args = sys.argv[1:] if argv is None else argv
    debug = bool(args) and args[0] == "--debug"
    rest = args[1:] if debug else args
    if rest and rest[0] not in COMMANDS:
        original = translate_original(rest)
        if original is not None:
            rest = ["attach", *original]
            args = ["--debug", *rest] if debug else rest
    if rest and rest[0] == "attach":
        options = parse_attach(rest[1:])
        if options is not None:
            _fast_attach(options, debug)

    from crashcart.commands import cli
    from smith.cli.main import run_cli

    run_cli(cli, "crashcart", args)
