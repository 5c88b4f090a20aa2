"""The `smith` command line: a thin layer that parses arguments and reports errors.

Commands live in their own modules (smith/cli/commands/<command>.py) and register
themselves on `cli`. smith.cli.reporting turns a SmithError into one line on stderr and an
exit code.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import NoReturn

import click

from smith import __version__
from smith.cli.reporting import exit_reporting, handle_stop_signals, shorten
from smith.errors import UsageError


class LazyGroup(click.Group):
    """Commands live in smith/cli/commands/<command>.py and are imported only when used: `smith
    diff` should not pay for importing the whole build pipeline."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        import os

        from smith.cli import commands

        # A directory listing, not pkgutil (which imports shutil, and with it bz2 and lzma).
        # commands/verify_signature.py holds `verify-signature`: module names cannot have "-".
        names = {
            name[: -len(".py")].replace("_", "-")
            for directory in commands.__path__
            for name in os.listdir(directory)
            if name.endswith(".py") and not name.startswith("_")
        }
        return sorted(names | set(self.commands))

    summaries_only = False

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # `smith --help` lists every command: with their summaries read from the source
        # of their modules, listing them costs ~20 ms instead of importing them all (~1 s).
        self.summaries_only = True
        try:
            super().format_commands(ctx, formatter)
        finally:
            self.summaries_only = False

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if self.summaries_only and cmd_name not in self.commands:
            return summary_command(cmd_name)
        module = cmd_name.replace("-", "_")
        if cmd_name not in self.commands and module.isidentifier():
            import importlib

            try:
                importlib.import_module(f"smith.cli.commands.{module}")
            except ModuleNotFoundError as err:
                if err.name != f"smith.cli.commands.{module}":
                    raise
        return self.commands.get(cmd_name)


def summary_command(name: str) -> click.Command | None:
    """A stand-in for command `name` that only knows its help: the docstring of the function
    smith/cli/commands/<name>.py registers with `@cli.command("<name>")`, found without
    importing."""
    import ast
    import importlib.util

    spec = importlib.util.find_spec(f"smith.cli.commands.{name.replace('-', '_')}")
    if spec is None or spec.origin is None:
        return None
    with open(spec.origin, encoding="utf-8") as f:
        module = ast.parse(f.read(), spec.origin)
    for node in module.body:
        if not isinstance(node, ast.FunctionDef):
            continue
        for d in node.decorator_list:
            if not (
                isinstance(d, ast.Call)
                and isinstance(d.func, ast.Attribute)
                and d.func.attr in ("command", "group")  # `smith cache` is a group
            ):
                continue
            names = [a.value for a in d.args if isinstance(a, ast.Constant)]
            # `@cli.command()` takes the function's name (click drops a _command suffix).
            if names == [name] or (not names and node.name in (name, f"{name}_command")):
                return click.Command(name, help=ast.get_docstring(node, clean=False))
    return None


@click.group(
    cls=LazyGroup,
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(__version__, prog_name="smith")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logging.")
@click.option("-v", "--verbose", is_flag=True, help="Say what is being done.")
@click.option(
    "-i",
    "--image",
    metavar="OUTPUT",
    help="Oracle smith's form: bare `smith -i OUTPUT` is `smith build -o OUTPUT`.",
)
@click.option("-f", "--fast", is_flag=True, help="Oracle smith's form (see smith build -f).")
@click.option("-b", "--buildnumber", metavar="N", help="Oracle smith's form (see smith build -b).")
@click.pass_context
def cli(
    ctx: click.Context,
    debug: bool,
    verbose: bool,
    image: str | None,
    fast: bool,
    buildnumber: str | None,
) -> None:
    """Build and shrink container images to the bare minimum, bit for bit reproducibly.

    Bare `smith` (Oracle smith's command line) builds ./smith.yaml, as `smith build`."""
    import logging  # here, not at the top: --help and --version do not log

    ctx.obj = {"debug": debug}
    level = logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="smith: %(message)s", stream=sys.stderr)
    if ctx.invoked_subcommand is None:
        from smith.cli.commands.build import build_command
        from smith.recipe_file import DEFAULT_RECIPE

        if not os.path.exists(DEFAULT_RECIPE):
            raise UsageError(
                f"no {DEFAULT_RECIPE} here: bare `smith` builds ./{DEFAULT_RECIPE} "
                "(smith --help lists the commands)"
            )
        ctx.invoke(build_command, output=image, fast=fast, buildnumber=buildnumber)
    elif image or fast or buildnumber:
        raise UsageError(
            f"-i, -f and -b before a command are the bare `smith` form; "
            f"give them after it: smith {ctx.invoked_subcommand} -o OUTPUT"
        )


# Flags the original took after its command too (`smith build -v`): smith's group reads
# them before the command, so they are moved there.
GROUP_FLAGS = ("-v", "--verbose", "--debug")
GROUP_VALUE_OPTIONS = ("-i", "--image", "-b", "--buildnumber")


def hoist_group_flags(args: list[str]) -> list[str]:
    """`smith CMD ... -v` as `smith -v CMD ...`: only before a `--`, and only after the
    command name (the first word that is no option)."""
    command, i = None, 0
    while i < len(args) and command is None:
        if args[i] == "--":
            return args
        if args[i] in GROUP_VALUE_OPTIONS:
            i += 2
        elif args[i].startswith("-"):
            i += 1
        else:
            command = i
    if command is None:
        return args
    end = args.index("--") if "--" in args else len(args)
    moved = [a for a in args[command + 1 : end] if a in GROUP_FLAGS]
    rest = [a for a in args[command + 1 : end] if a not in GROUP_FLAGS]
    return [*args[:command], *moved, args[command], *rest, *args[end:]]


def run_cli(group: click.Group, prog: str, argv: list[str] | None = None) -> NoReturn:
    """Run a click group; turn smith's errors into one line on stderr and an exit code."""
    args = sys.argv[1:] if argv is None else argv

    def body() -> int | None:
        try:
            # A command may return its exit status (smith diff and verify exit 1 on a
            # difference). The context is made and invoked here, not by group.main(): that
            # prints an empty line to stderr on Ctrl-C (to end the terminal's ^C echo)
            # before `smith: interrupted`, a second line.
            with group.make_context(prog, list(args)) as ctx:
                status = group.invoke(ctx)
        except click.exceptions.Abort as abort:
            # click turns Ctrl-C (and our SIGTERM's Terminated) into Abort: report the original.
            cause = abort.__cause__
            raise cause if isinstance(cause, KeyboardInterrupt) else KeyboardInterrupt from None
        except click.ClickException as err:
            # click's own usage errors keep their one-line form, without the usage banner.
            print(shorten(f"{prog}: error: {err.format_message()}"), file=sys.stderr)
            return err.exit_code
        except click.exceptions.Exit as done:
            return done.exit_code
        return status if isinstance(status, int) else None

    exit_reporting(prog, "--debug" in args, body)


def main(argv: list[str] | None = None) -> NoReturn:
    # smith's commands only: crashcart (also run through run_cli) forwards SIGTERM to the
    # session it runs, with handlers of its own.
    handle_stop_signals()
    run_cli(cli, "smith", hoist_group_flags(sys.argv[1:] if argv is None else argv))


command: Callable[..., Callable[..., click.Command]] = cli.command
