"""The `smith` command line: a thin layer that parses arguments and reports errors.

Commands live in their own modules (smith/main_<command>.py) and register themselves on
`cli`. smith.reporting turns a SmithError into one line on stderr and an exit code.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from collections.abc import Callable
from typing import NoReturn

import click

from smith import __version__
from smith.leftovers import sweep
from smith.reporting import exit_reporting, handle_stop_signals, shorten


class LazyGroup(click.Group):
    """Commands live in smith/main_<command>.py and are imported only when used: `smith
    diff` should not pay for importing the whole build pipeline."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        import pkgutil

        import smith

        names = {
            m.name[len("main_") :]
            for m in pkgutil.iter_modules(smith.__path__)
            if m.name.startswith("main_")
        }
        return sorted(names | set(self.commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name.isidentifier():
            import importlib

            try:
                importlib.import_module(f"smith.main_{cmd_name}")
            except ModuleNotFoundError as err:
                if err.name != f"smith.main_{cmd_name}":
                    raise
        return self.commands.get(cmd_name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="smith")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logging.")
@click.option("-v", "--verbose", is_flag=True, help="Say what is being done.")
@click.pass_context
def cli(ctx: click.Context, debug: bool, verbose: bool) -> None:
    """Build and shrink container images to the bare minimum, bit for bit reproducibly."""
    ctx.obj = {"debug": debug}
    level = logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="smith: %(message)s", stream=sys.stderr)


def run_cli(group: click.Group, prog: str, argv: list[str] | None = None) -> NoReturn:
    """Run a click group; turn smith's errors into one line on stderr and an exit code."""
    args = sys.argv[1:] if argv is None else argv

    def body() -> int | None:
        try:
            # A command may return its exit status (smith diff and verify exit 1 on a
            # difference); click hands that back here, as it does a raised click Exit.
            status = group.main(args=args, prog_name=prog, standalone_mode=False)
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
    sweep(tempfile.gettempdir())  # what killed runs left in TMPDIR
    run_cli(cli, "smith", argv)


command: Callable[..., Callable[..., click.Command]] = cli.command
